-- The operation catalogue the intranet sent last (issue 4): the JSON of
-- policy.Catalogue as it arrived in a results envelope, the sequence
-- number of that envelope on the results channel, and when it was
-- stored (unix milliseconds). One row at most: a catalogue replaces the
-- stored one only when its envelope's sequence number is higher.
CREATE TABLE catalogue (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    data     BLOB NOT NULL,
    seq      INTEGER NOT NULL CHECK (seq >= 1),
    received INTEGER NOT NULL
) STRICT;
