-- Write requests held for an admin's approval (an operation with
-- `approval:` in the policy). A held request is recorded in ferry_requests
-- with status 'held' in the transaction that applies its envelope, and
-- here with what is needed to run it later. Once decided (approved,
-- denied, or expired unapproved) its final result replaces the held one in
-- ferry_requests, the personal data here is dropped, and result_id records
-- the result envelope that carried the final result across.
CREATE TABLE ferry_held (
    request_id  TEXT PRIMARY KEY REFERENCES ferry_requests (id) DEFERRABLE INITIALLY DEFERRED,
    envelope_id TEXT NOT NULL REFERENCES ferry_envelopes (id),
    client      TEXT NOT NULL,
    subject     TEXT NOT NULL,             -- personal data: '' once decided
    operation   TEXT NOT NULL,
    params      BLOB,                      -- JSON object; NULL once decided
    held_at     INTEGER NOT NULL,          -- unix milliseconds
    expires     INTEGER NOT NULL,          -- unix milliseconds
    state       TEXT NOT NULL CHECK (state IN ('held', 'approved', 'denied', 'expired')),
    decided_by  TEXT NOT NULL DEFAULT '',  -- the approving or denying admin's key name
    decided_at  INTEGER NOT NULL DEFAULT 0,
    approval    BLOB,                      -- the signed approval note, as received
    result_id   TEXT REFERENCES ferry_outbox (id) -- the result envelope with the final result
) STRICT;

CREATE INDEX ferry_held_open ON ferry_held (expires) WHERE state = 'held';
CREATE INDEX ferry_held_unsent ON ferry_held (decided_at) WHERE state <> 'held' AND result_id IS NULL;
