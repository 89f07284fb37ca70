-- The receiving side of each incoming channel: every sequence number from
-- 1 to contiguous has been applied, and highest is the largest applied.
-- The sequence numbers in between that are missing are the gaps the agent
-- reports back (batch.Received). The applied envelopes themselves, with
-- their prev and header hashes, are in ferry_envelopes.
CREATE TABLE ferry_inbound (
    sender     TEXT NOT NULL,
    channel    TEXT NOT NULL,
    contiguous INTEGER NOT NULL CHECK (contiguous >= 0),
    highest    INTEGER NOT NULL CHECK (highest >= contiguous),
    PRIMARY KEY (sender, channel)
) STRICT;

-- A ledger from before this table has no record of what was missing:
-- count everything up to the highest sequence number applied as received.
INSERT INTO ferry_inbound (sender, channel, contiguous, highest)
    SELECT sender, channel, max(seq), max(seq) FROM ferry_envelopes GROUP BY sender, channel;
