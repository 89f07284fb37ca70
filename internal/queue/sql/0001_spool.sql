-- The DMZ spool: accepted requests, the request envelopes that carry them,
-- the sending state of the request channel, and the result envelopes
-- already taken in. Times are unix milliseconds.

-- Request envelopes, stored (with their bytes) in the transaction that
-- advances the channel, before they are published.
CREATE TABLE envelopes (
    id          TEXT PRIMARY KEY,          -- envelope id, 32 hex digits
    channel     TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    header_hash BLOB NOT NULL,             -- SHA-256 of the signed note
    name        TEXT NOT NULL,             -- file name on the medium
    data        BLOB NOT NULL,             -- the whole file; emptied once acked or expired
    requests    INTEGER NOT NULL,          -- how many requests it carries
    state       TEXT NOT NULL CHECK (state IN ('sealed', 'published', 'acked', 'expired')),
    created     INTEGER NOT NULL,
    expires     INTEGER NOT NULL,
    published   INTEGER NOT NULL DEFAULT 0, -- last publish, 0 if never
    UNIQUE (channel, seq)
) STRICT;

CREATE INDEX envelopes_open ON envelopes (state) WHERE state IN ('sealed', 'published');

-- Accepted requests. rid orders them for batching (AUTOINCREMENT: never
-- reused). params is emptied once the request is final; body_hash stays so
-- that an Idempotency-Key can still be checked against the body.
CREATE TABLE requests (
    rid           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,    -- request id, 32 hex digits
    client        TEXT NOT NULL,
    idem_key      TEXT,                    -- NULL when the client sent none
    body_hash     BLOB NOT NULL,           -- SHA-256 over operation and params
    operation     TEXT NOT NULL,
    params        BLOB,                    -- JSON object; NULL once final
    received      INTEGER NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'done', 'rejected', 'failed', 'expired')),
    envelope_id   TEXT REFERENCES envelopes (id),
    result        BLOB,                    -- JSON array of result rows, when done
    rows_affected INTEGER NOT NULL DEFAULT 0,
    reason        TEXT NOT NULL DEFAULT '',
    message       TEXT NOT NULL DEFAULT '',
    updated       INTEGER NOT NULL,
    UNIQUE (client, idem_key)
) STRICT;

CREATE INDEX requests_unsealed ON requests (rid) WHERE envelope_id IS NULL;
CREATE INDEX requests_envelope ON requests (envelope_id);

-- The sending side of each outgoing channel.
CREATE TABLE channels (
    channel  TEXT PRIMARY KEY,
    next_seq INTEGER NOT NULL,
    prev     BLOB NOT NULL                 -- header hash of the last envelope sealed on it
) STRICT;

-- Result envelopes already applied: a copy arriving again is dropped.
CREATE TABLE received (
    id       TEXT PRIMARY KEY,
    channel  TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    applied  INTEGER NOT NULL,
    UNIQUE (channel, seq)
) STRICT;
