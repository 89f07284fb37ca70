-- The citizen identity a client asserted with a request (issue 4), or ''
-- for none. Requests stored before this migration had none. Like params,
-- it is personal data and is emptied once the request is final; the
-- idempotency check uses body_hash, which covers it (see queue.BodyHash).
ALTER TABLE requests ADD COLUMN subject TEXT NOT NULL DEFAULT '';
