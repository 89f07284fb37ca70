-- The zone's audit log: a Merkle tree log in the style of RFC 6962 and
-- the Go checksum database (golang.org/x/mod/sumdb/tlog).

-- One row per entry, idx from 0 without gaps. body is the entry's
-- canonical JSON, the exact bytes its record hash covers; it is NULL once
-- pruned (the hashes stay). time is the entry's time in Unix ms, for
-- pruning and searching.
CREATE TABLE audit_entries (
	idx  INTEGER PRIMARY KEY,
	time INTEGER NOT NULL,
	body BLOB
);
CREATE INDEX audit_entries_time ON audit_entries(time);

-- The tree's stored hashes, by tlog.StoredHashIndex: the record hash of
-- every entry and every complete interior node.
CREATE TABLE audit_hashes (
	id   INTEGER PRIMARY KEY,
	hash BLOB NOT NULL
);

-- Signed checkpoints (C2SP tlog-checkpoint), one per tree size the log
-- committed to.
CREATE TABLE audit_checkpoints (
	size INTEGER PRIMARY KEY,
	time INTEGER NOT NULL,
	note BLOB NOT NULL
);
