-- ferry's exactly-once ledger, kept inside the replica database file so that
-- applying a request envelope and recording it commit in one transaction.

-- Request envelopes that have been applied, and how far their answer got.
CREATE TABLE ferry_envelopes (
    id          TEXT PRIMARY KEY,          -- envelope id, 32 hex digits
    sender      TEXT NOT NULL,             -- header From
    channel     TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    prev        BLOB NOT NULL,             -- header Prev, 32 bytes
    header_hash BLOB NOT NULL,             -- SHA-256 of the signed note
    file        TEXT NOT NULL,             -- inbox file to remove once answered
    requests    TEXT NOT NULL,             -- JSON array of its request ids, in order
    state       TEXT NOT NULL CHECK (state IN ('applied', 'sealed', 'published')),
    result_id   TEXT REFERENCES ferry_outbox (id), -- the result envelope answering it
    applied_at  INTEGER NOT NULL           -- unix milliseconds
) STRICT;

CREATE UNIQUE INDEX ferry_envelopes_seq ON ferry_envelopes (sender, channel, seq);
CREATE INDEX ferry_envelopes_pending ON ferry_envelopes (state) WHERE state <> 'published';
CREATE INDEX ferry_envelopes_result ON ferry_envelopes (result_id);

-- One row per request id ever applied: the exactly-once record and its
-- stored result, returned again if the id arrives again.
CREATE TABLE ferry_requests (
    id          TEXT PRIMARY KEY,          -- request id, 32 hex digits
    envelope_id TEXT NOT NULL REFERENCES ferry_envelopes (id),
    operation   TEXT NOT NULL,
    status      TEXT NOT NULL,             -- done, rejected or failed
    reason      TEXT NOT NULL,
    message     TEXT NOT NULL,
    result      BLOB NOT NULL,             -- JSON of the batch.Result
    applied_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX ferry_requests_envelope ON ferry_requests (envelope_id);

-- Result envelopes, sealed before they are published. data is emptied once
-- the envelope is published.
CREATE TABLE ferry_outbox (
    id          TEXT PRIMARY KEY,
    channel     TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    header_hash BLOB NOT NULL,
    name        TEXT NOT NULL,
    data        BLOB NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('sealed', 'published')),
    created_at  INTEGER NOT NULL,
    UNIQUE (channel, seq)
) STRICT;

CREATE INDEX ferry_outbox_pending ON ferry_outbox (state) WHERE state = 'sealed';

-- The sending side of each outgoing channel: the next sequence number and
-- the header hash of the last envelope sealed on it.
CREATE TABLE ferry_channels (
    channel  TEXT PRIMARY KEY,
    next_seq INTEGER NOT NULL,
    prev     BLOB NOT NULL
) STRICT;
