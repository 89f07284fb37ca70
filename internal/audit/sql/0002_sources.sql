-- For each database whose outbox the log drains, the id of the last
-- staged entry it took in, written in the same transaction as the
-- entries: a drain interrupted after its commit takes nothing twice.
CREATE TABLE audit_sources (
	source  TEXT PRIMARY KEY,
	last_id INTEGER NOT NULL
);
