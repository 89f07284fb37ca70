package queue

import (
	"context"
	"fmt"
)

// Backlog is what the spool holds for the intranet at one moment: the
// figures the DMZ agent's backpressure compares with its limits.
type Backlog struct {
	// Requests counts the requests accepted and not yet final, held or
	// orphaned (status queued or sent, in no envelope or an open one),
	// those of dead envelopes included. An orphaned request (its envelope
	// expired or was dropped) is not: it is never sent again, has no
	// parameters left, and only waits for the intranet's answer to a
	// query.
	Requests int
	// Unacked counts the request envelopes stored and not yet
	// acknowledged (state sealed or published). Dead envelopes are not
	// counted: they are no longer sent, and wait for an admin or expiry.
	Unacked int
	// LastRow is the highest request row number the count saw (0 for
	// none): a request stored later has a higher [Accepted.Row], one
	// stored earlier a row up to LastRow, so a caller can tell which of
	// the requests it stored the count already holds.
	LastRow int64
}

// backlogQuery reads both figures of a Backlog in one statement, so from
// one snapshot, without a scan of the requests or envelopes table (which
// keep every request and envelope ever stored). It relies on an invariant
// of the spool: a queued or sent request is either not yet sealed
// (envelope_id IS NULL), in an open envelope ([openStates]), or orphaned,
// because acknowledging an envelope ends its requests that are still
// queued or sent, and expiring or dropping one orphans them. So:
//
//   - unsealed requests come from the partial index requests_unsealed;
//   - sealed ones from the partial index envelopes_open, joined through
//     requests_envelope (one row look-up per request in an open envelope,
//     to leave out those already held or final);
//   - unacknowledged envelopes from envelopes_open alone;
//   - the last row from the end of the requests table.
//
// "state IN openStates" repeats the WHERE of envelopes_open word for
// word: SQLite uses a partial index only for a query whose WHERE contains
// the index's own terms. The cost grows with the backlog, not with the
// spool. A partial index "requests (status) WHERE status IN ('queued',
// 'sent')" would make the request count a read of that index alone and
// drop the invariant; it needs a migration.
const backlogQuery = `SELECT
	(SELECT count(*) FROM requests WHERE envelope_id IS NULL AND status IN ('queued', 'sent'))
	+ (SELECT count(*) FROM envelopes e JOIN requests r ON r.envelope_id = e.id
		WHERE e.state IN ` + openStates + ` AND r.status IN ('queued', 'sent')),
	(SELECT count(*) FROM envelopes WHERE state IN ` + openStates + ` AND state IN ('sealed', 'published')),
	(SELECT coalesce(max(rid), 0) FROM requests)`

// Backlog counts the requests and request envelopes the spool holds for
// the intranet (see [Backlog]). It reads from the read-only pool, so it
// never waits behind a commit; its cost grows with the backlog, not with
// the number of requests the spool keeps. Callers on a hot path should
// cache it: the DMZ agent counts a few times a second.
func (s *Spool) Backlog(ctx context.Context) (Backlog, error) {
	var b Backlog
	if err := s.r.QueryRowContext(ctx, backlogQuery).Scan(&b.Requests, &b.Unacked, &b.LastRow); err != nil {
		return Backlog{}, fmt.Errorf("count backlog: %w", err)
	}
	return b, nil
}
