-- A request may be held on the intranet for an admin's approval (issue 4):
-- requests.status gains 'held', the one status a result sets that is not
-- final. SQLite cannot change a CHECK constraint in place, so the table is
-- rebuilt the way https://www.sqlite.org/lang_altertable.html#otheralter
-- describes: create the new table, copy the rows, drop the old one, rename
-- the new one, and create its indexes again.
--
-- sqlitedb runs this file in one transaction (BEGIN IMMEDIATE) with
-- foreign_keys ON, which cannot be switched off inside a transaction. That
-- is safe here: no table references requests, so dropping it deletes no
-- parent row and renaming requests_new rewrites no other table's foreign
-- key; requests' own reference to envelopes is checked for each copied
-- row, and every stored row satisfies it (the spool always enforced it).
-- There are no triggers or views on requests.

-- Columns in the order 0001, 0002 (subject) and 0004 (retry_after) left
-- them; 0001 documents each one.
CREATE TABLE requests_new (
    rid           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    client        TEXT NOT NULL,
    idem_key      TEXT,
    body_hash     BLOB NOT NULL,
    operation     TEXT NOT NULL,
    params        BLOB,                    -- JSON object; NULL once final or held
    received      INTEGER NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'held', 'done', 'rejected', 'failed', 'expired')),
    envelope_id   TEXT REFERENCES envelopes (id),
    result        BLOB,
    rows_affected INTEGER NOT NULL DEFAULT 0,
    reason        TEXT NOT NULL DEFAULT '',
    message       TEXT NOT NULL DEFAULT '',
    updated       INTEGER NOT NULL,
    subject       TEXT NOT NULL DEFAULT '', -- '' once final or held
    retry_after   INTEGER NOT NULL DEFAULT 0,
    UNIQUE (client, idem_key)
) STRICT;

INSERT INTO requests_new (rid, id, client, idem_key, body_hash, operation, params, received, status,
    envelope_id, result, rows_affected, reason, message, updated, subject, retry_after)
SELECT rid, id, client, idem_key, body_hash, operation, params, received, status,
    envelope_id, result, rows_affected, reason, message, updated, subject, retry_after
FROM requests;

-- rid is AUTOINCREMENT so that a row number is never reused, even after
-- the row with the highest rid is gone. The copy above set requests_new's
-- counter to the highest rid copied, which may be below the old table's
-- counter, and DROP TABLE deletes the old counter: carry the higher of the
-- two over first. sqlite_sequence has no unique key on name, hence an
-- UPDATE for a counter the copy made and an INSERT when it made none (no
-- rows to copy).
UPDATE sqlite_sequence
SET seq = (SELECT max(seq) FROM sqlite_sequence WHERE name IN ('requests', 'requests_new'))
WHERE name = 'requests_new';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'requests_new', seq FROM sqlite_sequence
WHERE name = 'requests' AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'requests_new');

DROP TABLE requests;
-- Renaming also renames the table's row in sqlite_sequence.
ALTER TABLE requests_new RENAME TO requests;

-- Every index 0001-0004 created on requests (the UNIQUE constraints bring
-- their own).
CREATE INDEX requests_unsealed ON requests (rid) WHERE envelope_id IS NULL;
CREATE INDEX requests_envelope ON requests (envelope_id);
