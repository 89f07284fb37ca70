-- Sequence numbers a sender withdrew: when the DMZ re-sends the requests
-- of an envelope that was not acknowledged, it seals them into a new
-- envelope whose body names the one it replaces (batch.Requests.Replaces).
-- If the replaced envelope has not been applied, its place in the channel
-- counts as filled (its gap closes) and the envelope itself is refused as a
-- replay should it arrive later: its requests came in the new one.
CREATE TABLE ferry_withdrawn (
    sender  TEXT NOT NULL,
    channel TEXT NOT NULL,
    seq     INTEGER NOT NULL CHECK (seq >= 1),
    by_id   TEXT NOT NULL,    -- the envelope that replaced it
    PRIMARY KEY (sender, channel, seq)
) STRICT;
