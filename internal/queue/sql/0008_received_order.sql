-- Order checks on the results channel (issue 5), as the intranet's ledger
-- makes them on the requests channel (internal/replica, its migration
-- 0004): see "Channel order" in docs/envelope.md.
--
-- received gains, for each result envelope taken in, its prev (the header
-- hash it names as the one before it on the channel) and its own header
-- hash, 32 bytes each, so that a later neighbour can be checked against
-- it. Rows received before this migration have neither (NULL): the spool
-- does not check the chain against them.
ALTER TABLE received ADD COLUMN prev BLOB CHECK (prev IS NULL OR length(prev) = 32);
ALTER TABLE received ADD COLUMN header_hash BLOB CHECK (header_hash IS NULL OR length(header_hash) = 32);

-- The receiving side of each results channel. highest is the largest
-- sequence number received; received_gaps holds the ranges below it that
-- have not arrived, each [first, last], forgotten once they fall more than
-- the agent's max_seq_jump below highest (such an envelope has most likely
-- expired, or its sender gave up on it).
CREATE TABLE received_channels (
    channel TEXT PRIMARY KEY,
    highest INTEGER NOT NULL CHECK (highest >= 0)
) STRICT;

CREATE TABLE received_gaps (
    channel TEXT NOT NULL,
    first   INTEGER NOT NULL CHECK (first >= 1),
    last    INTEGER NOT NULL CHECK (last >= first),
    PRIMARY KEY (channel, first)
) STRICT;

-- A spool from before these tables has no record of what was missing:
-- start from the highest sequence number received, with no gaps, so that
-- the next envelope is not taken for a jump.
INSERT INTO received_channels (channel, highest)
    SELECT channel, max(seq) FROM received GROUP BY channel;
