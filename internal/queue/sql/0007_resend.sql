-- Re-send backoff and dead letters (issue 5).
--
-- envelopes gains:
--   attempts   how many times the envelope was published (0 until first)
--   resend_at  when a published envelope is next due to be published
--              again (unix milliseconds), NULL in any other state
-- and two states:
--   dead       published attempts times and still unacknowledged when its
--              next re-send fell due: not published again, but a late
--              acknowledgement or late results still apply, and it expires
--              like a published one
--   dropped    taken out of the re-send cycle by an admin (ferryctl queue
--              drop), its unanswered requests failed; final
-- and queue_actions records every admin action on an envelope.
--
-- SQLite cannot change a CHECK constraint in place, so envelopes is rebuilt
-- as https://www.sqlite.org/lang_altertable.html#otheralter describes.
-- Unlike 0005, a table references the one rebuilt: requests.envelope_id.
-- sqlitedb runs this file in one transaction with foreign_keys ON, which
-- cannot be switched off inside it, so dropping envelopes while requests
-- refers to its rows fails (and PRAGMA defer_foreign_keys only moves the
-- failure to COMMIT: renaming does not clear the violations the drop
-- counted). requests is therefore rebuilt with it, its new copy referring
-- to the new envelopes table from the start:
--
--   1. create envelopes_new and copy envelopes into it;
--   2. create requests_new referring to envelopes_new and copy requests
--      into it (each copied row's reference is checked against
--      envelopes_new, which holds every envelope);
--   3. drop requests (no table refers to it), then envelopes (requests_new
--      does not refer to it);
--   4. rename envelopes_new to envelopes, which also rewrites
--      requests_new's REFERENCES clause, then requests_new to requests;
--   5. create the indexes again.
--
-- There are no triggers or views on either table.

-- Columns in the order 0001 left them; 0001 documents each one.
CREATE TABLE envelopes_new (
    id          TEXT PRIMARY KEY,
    channel     TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    header_hash BLOB NOT NULL,
    name        TEXT NOT NULL,
    data        BLOB NOT NULL,             -- emptied once acked, expired or dropped
    requests    INTEGER NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('sealed', 'published', 'dead', 'dropped', 'acked', 'expired')),
    created     INTEGER NOT NULL,
    expires     INTEGER NOT NULL,
    published   INTEGER NOT NULL DEFAULT 0,
    attempts    INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    resend_at   INTEGER,                   -- set exactly when state = 'published'
    UNIQUE (channel, seq),
    CHECK ((state = 'published') = (resend_at IS NOT NULL))
) STRICT;

-- An envelope published before this migration was published at least
-- once; it falls due again at once (the spool does not know resend_after),
-- which costs one early re-publication of the same bytes.
INSERT INTO envelopes_new (id, channel, seq, header_hash, name, data, requests, state, created, expires,
    published, attempts, resend_at)
SELECT id, channel, seq, header_hash, name, data, requests, state, created, expires,
    published,
    CASE WHEN published > 0 THEN 1 ELSE 0 END,
    CASE WHEN state = 'published' THEN published END
FROM envelopes;

-- Columns in the order 0005 and 0006 left them; 0001, 0005 and 0006
-- document each one.
CREATE TABLE requests_new (
    rid            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT NOT NULL UNIQUE,
    client         TEXT NOT NULL,
    idem_key       TEXT,
    body_hash      BLOB NOT NULL,
    operation      TEXT NOT NULL,
    params         BLOB,
    received       INTEGER NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'held', 'done', 'rejected', 'failed', 'expired')),
    envelope_id    TEXT REFERENCES envelopes_new (id),
    result         BLOB,
    rows_affected  INTEGER NOT NULL DEFAULT 0,
    reason         TEXT NOT NULL DEFAULT '',
    message        TEXT NOT NULL DEFAULT '',
    updated        INTEGER NOT NULL,
    subject        TEXT NOT NULL DEFAULT '',
    retry_after    INTEGER NOT NULL DEFAULT 0,
    queried        INTEGER NOT NULL DEFAULT 0,
    query_envelope TEXT,
    UNIQUE (client, idem_key)
) STRICT;

INSERT INTO requests_new (rid, id, client, idem_key, body_hash, operation, params, received, status,
    envelope_id, result, rows_affected, reason, message, updated, subject, retry_after, queried, query_envelope)
SELECT rid, id, client, idem_key, body_hash, operation, params, received, status,
    envelope_id, result, rows_affected, reason, message, updated, subject, retry_after, queried, query_envelope
FROM requests;

-- Carry the AUTOINCREMENT counter over, as 0005 does and for the same
-- reason: a row number is never reused.
UPDATE sqlite_sequence
SET seq = (SELECT max(seq) FROM sqlite_sequence WHERE name IN ('requests', 'requests_new'))
WHERE name = 'requests_new';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'requests_new', seq FROM sqlite_sequence
WHERE name = 'requests' AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'requests_new');

DROP TABLE requests;
DROP TABLE envelopes;
ALTER TABLE envelopes_new RENAME TO envelopes;
ALTER TABLE requests_new RENAME TO requests;

-- Envelopes still to publish or expire (Unpublished, Expire), and the
-- published ones by the time they fall due (Spool.Due, Spool.MarkDead).
CREATE INDEX envelopes_open ON envelopes (state) WHERE state IN ('sealed', 'published', 'dead');
CREATE INDEX envelopes_due ON envelopes (resend_at) WHERE state = 'published';

-- Every index 0001-0006 created on requests.
CREATE INDEX requests_unsealed ON requests (rid) WHERE envelope_id IS NULL;
CREATE INDEX requests_envelope ON requests (envelope_id);
CREATE INDEX requests_held ON requests (rid) WHERE status = 'held';

-- Admin actions on request envelopes (ferryctl queue retry and drop), one
-- row per envelope acted on, written in the action's transaction.
CREATE TABLE queue_actions (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,             -- unix milliseconds
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL CHECK (action IN ('retry', 'drop')),
    envelope TEXT NOT NULL,
    requests INTEGER NOT NULL,             -- requests the action changed or re-sends
    reason   TEXT NOT NULL DEFAULT ''      -- the admin's message
) STRICT;
