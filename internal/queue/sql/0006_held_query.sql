-- Asking again about held requests (issue 4). A held request's final
-- result travels in a results envelope that acknowledges nothing, so if
-- that envelope is lost nobody sends it again; the DMZ therefore asks the
-- intranet about requests held for a while, in the "query" list of a
-- requests envelope (internal/batch). queried is when the request was last
-- asked about (unix milliseconds, 0 never) and query_envelope the request
-- envelope that asked (NULL never): a request is not asked again while
-- that envelope is still open (sealed or published), since re-sending it
-- asks again already. Both stay as they are once the request is final.
ALTER TABLE requests ADD COLUMN queried INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN query_envelope TEXT;

-- Held requests are few next to all the requests the spool keeps; the
-- search for the ones due to be asked about reads only them.
CREATE INDEX requests_held ON requests (rid) WHERE status = 'held';
