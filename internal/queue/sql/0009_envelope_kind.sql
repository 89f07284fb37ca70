-- What a request envelope carries, so that a re-send knows what to send
-- again (issue 5): 'requests' (requests accepted by the API), 'query' (no
-- requests, the ids of held requests asked about again) or 'heartbeat'
-- (nothing: sealed when the channel has been quiet, so that the intranet
-- hears the DMZ). Envelopes stored before this migration carried requests
-- or a query; one that carried neither was a query whose requests all
-- became final, which the re-send treats the same as a 'requests' one with
-- nothing left to send.
ALTER TABLE envelopes ADD COLUMN kind TEXT NOT NULL DEFAULT 'requests'
    CHECK (kind IN ('requests', 'query', 'heartbeat'));

UPDATE envelopes SET kind = 'query'
WHERE requests = 0 AND id IN (SELECT query_envelope FROM requests WHERE query_envelope IS NOT NULL);
