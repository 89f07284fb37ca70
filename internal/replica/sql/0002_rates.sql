-- Rate limit state, kept inside the replica file so that a limit holds
-- across restarts and is updated in the transaction that applies the
-- request it counts.
--
-- One row per (scope, operation, key) in the GCRA form: tat is the
-- "theoretical arrival time" in unix nanoseconds, the moment the bucket
-- is empty again. A row whose tat has passed is the same as no row and is
-- purged from time to time. key is the SHA-256 of the subject or client
-- name, never the name itself.
CREATE TABLE ferry_rates (
    scope     TEXT NOT NULL CHECK (scope IN ('subject', 'client')),
    operation TEXT NOT NULL,
    key       BLOB NOT NULL,
    tat       INTEGER NOT NULL,
    PRIMARY KEY (scope, operation, key)
) STRICT, WITHOUT ROWID;

CREATE INDEX ferry_rates_tat ON ferry_rates (tat);
