-- Audit entries staged in a component's own database, in the transaction
-- of the decision they record, until the zone's audit log takes them in
-- (audit.Log.Drain). AUTOINCREMENT: an id is never reused after a drain
-- deletes its row, so the log's watermark of the last id it took stays
-- meaningful.
CREATE TABLE audit_outbox (
	id   INTEGER PRIMARY KEY AUTOINCREMENT,
	time INTEGER NOT NULL,
	body BLOB NOT NULL
);
