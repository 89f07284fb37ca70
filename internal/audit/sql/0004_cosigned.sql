-- Checkpoints of this zone's own log that the other zone verified and
-- countersigned, as it sent them back: note holds both signatures. The
-- largest size is where the next consistency proof sent starts.
CREATE TABLE audit_cosigned (
	size INTEGER PRIMARY KEY,
	time INTEGER NOT NULL,
	note BLOB NOT NULL
);
