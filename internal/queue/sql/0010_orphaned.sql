-- A request whose envelope expires, or is dropped by an admin, before its
-- result came back is not final (issue 5): the intranet may have applied
-- it and lost only the answer. The DMZ asks the intranet about it, in the
-- "query" list of a requests envelope, as it asks about held requests;
-- the intranet answers the stored result, or settles a request it never
-- received as expired so that it is never applied. orphaned is when the
-- request's envelope closed without its result (unix milliseconds, 0
-- while it is open or since the request got its result through it); the
-- request keeps its status (queued or sent) until the answer comes.
ALTER TABLE requests ADD COLUMN orphaned INTEGER NOT NULL DEFAULT 0;

-- The requests to ask about: held ones, and orphaned ones without a
-- result. Spool.AskDue's WHERE clause repeats this expression exactly, so
-- that SQLite uses the index.
DROP INDEX requests_held;
CREATE INDEX requests_ask ON requests (rid) WHERE (status = 'held' OR (status IN ('queued', 'sent') AND orphaned > 0));
