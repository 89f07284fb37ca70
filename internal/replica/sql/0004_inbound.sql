-- The receiving side of each incoming channel. highest is the largest
-- sequence number applied; ferry_gaps holds the ranges below it that have
-- not arrived, each [first, last], forgotten once they fall more than the
-- agent's max_seq_jump below highest (such an envelope is then most
-- likely expired, or dropped by the sender). The applied envelopes
-- themselves, with their prev and header hashes, are in ferry_envelopes.
CREATE TABLE ferry_inbound (
    sender  TEXT NOT NULL,
    channel TEXT NOT NULL,
    highest INTEGER NOT NULL CHECK (highest >= 0),
    PRIMARY KEY (sender, channel)
) STRICT;

CREATE TABLE ferry_gaps (
    sender  TEXT NOT NULL,
    channel TEXT NOT NULL,
    first   INTEGER NOT NULL CHECK (first >= 1),
    last    INTEGER NOT NULL CHECK (last >= first),
    PRIMARY KEY (sender, channel, first)
) STRICT;

-- A ledger from before these tables has no record of what was missing:
-- start from the highest sequence number applied, with no gaps.
INSERT INTO ferry_inbound (sender, channel, highest)
    SELECT sender, channel, max(seq) FROM ferry_envelopes GROUP BY sender, channel;
