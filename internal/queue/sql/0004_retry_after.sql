-- For a request refused with rate_limited (issue 4): how many seconds the
-- intranet said to wait before trying again, or 0.
ALTER TABLE requests ADD COLUMN retry_after INTEGER NOT NULL DEFAULT 0;
