-- Result callbacks (issue 9): a client configured with a callback URL is
-- POSTed each of its requests' results. callback_clients names those
-- clients (the agent rewrites it at start and on reload); a trigger marks
-- a request of one of them due for delivery (callback_due, unix
-- milliseconds) whenever its status becomes held or final, in the same
-- transaction that changes the status, whichever code path changes it.
-- callback_attempts counts failed deliveries of the current state. A
-- delivered or abandoned callback has callback_due NULL.
ALTER TABLE requests ADD COLUMN callback_due INTEGER;
ALTER TABLE requests ADD COLUMN callback_attempts INTEGER NOT NULL DEFAULT 0;

CREATE TABLE callback_clients (name TEXT PRIMARY KEY) WITHOUT ROWID;

-- Spool.CallbacksDue's WHERE clause repeats this expression exactly, so
-- that SQLite uses the index.
CREATE INDEX requests_callback ON requests (callback_due) WHERE callback_due IS NOT NULL;

CREATE TRIGGER requests_callback AFTER UPDATE OF status ON requests
WHEN NEW.status <> OLD.status
	AND NEW.status IN ('held', 'done', 'rejected', 'failed', 'expired')
	AND NEW.client IN (SELECT name FROM callback_clients)
BEGIN
	UPDATE requests SET callback_due = NEW.updated, callback_attempts = 0 WHERE rid = NEW.rid;
END;
