-- ferry sample replica: a traffic-management service's read replica.
-- Synthetic data only; see internal/sample and docs/policy.md.
-- Dates are TEXT in ISO 8601 (YYYY-MM-DD, or YYYY-MM-DD HH:MM for times).

-- People known to the service: licence holders and exam candidates.
CREATE TABLE drivers (
    id_number   TEXT PRIMARY KEY CHECK (length(id_number) = 18), -- GB 11643 resident ID number
    name        TEXT NOT NULL,
    gender      TEXT NOT NULL CHECK (gender IN ('M', 'F')),
    birth_date  TEXT NOT NULL,
    mobile      TEXT NOT NULL,
    region_code TEXT NOT NULL CHECK (length(region_code) = 6)
);

-- Driving licences; a licence's number is its holder's ID number.
CREATE TABLE licences (
    id_number   TEXT PRIMARY KEY REFERENCES drivers (id_number),
    file_no     TEXT NOT NULL UNIQUE,                     -- 12-digit archive number
    class       TEXT NOT NULL,                            -- permitted classes, e.g. C1 or A2D
    status      TEXT NOT NULL CHECK (status IN ('normal', 'suspended', 'expired')),
    points      INTEGER NOT NULL CHECK (points BETWEEN 0 AND 12), -- points in the current cycle
    issued_on   TEXT NOT NULL,
    valid_until TEXT NOT NULL
);

-- Registered motor vehicles.
CREATE TABLE vehicles (
    plate         TEXT PRIMARY KEY,
    plate_kind    TEXT NOT NULL CHECK (plate_kind IN ('small', 'large', 'new_energy')),
    owner         TEXT NOT NULL REFERENCES drivers (id_number),
    vehicle_type  TEXT NOT NULL,
    brand         TEXT NOT NULL,
    colour        TEXT NOT NULL,
    registered_on TEXT NOT NULL,
    inspect_by    TEXT NOT NULL                           -- next periodic inspection due
);
CREATE INDEX vehicles_owner ON vehicles (owner);

-- Traffic violations recorded against a vehicle.
CREATE TABLE violations (
    id          INTEGER PRIMARY KEY,
    plate       TEXT NOT NULL REFERENCES vehicles (plate),
    occurred_at TEXT NOT NULL,
    place       TEXT NOT NULL,
    code        TEXT NOT NULL,                            -- violation code
    description TEXT NOT NULL,
    fine_yuan   INTEGER NOT NULL CHECK (fine_yuan >= 0),
    points      INTEGER NOT NULL CHECK (points BETWEEN 0 AND 12),
    paid        INTEGER NOT NULL CHECK (paid IN (0, 1))
);
CREATE INDEX violations_plate ON violations (plate, occurred_at);

-- Driving-test sessions open for booking.
CREATE TABLE exam_slots (
    id         INTEGER PRIMARY KEY,
    exam_date  TEXT NOT NULL,
    start_time TEXT NOT NULL,                             -- HH:MM
    centre     TEXT NOT NULL,
    subject    INTEGER NOT NULL CHECK (subject BETWEEN 1 AND 4),
    capacity   INTEGER NOT NULL CHECK (capacity > 0)
);
CREATE INDEX exam_slots_subject ON exam_slots (subject, exam_date);

-- Exam bookings: the one table the sample policy writes.
CREATE TABLE appointments (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    slot_id    INTEGER NOT NULL REFERENCES exam_slots (id),
    id_number  TEXT NOT NULL REFERENCES drivers (id_number),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    UNIQUE (slot_id, id_number)
);
