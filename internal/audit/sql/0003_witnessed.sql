-- Checkpoints of the other zone's audit log that this zone verified
-- (signature, and consistency with the one before) and countersigned:
-- the copy that catches the other zone should it rewrite its history.
-- note holds both signatures.
CREATE TABLE audit_witnessed (
	origin TEXT NOT NULL,
	size   INTEGER NOT NULL,
	time   INTEGER NOT NULL,
	note   BLOB NOT NULL,
	PRIMARY KEY (origin, size)
);
