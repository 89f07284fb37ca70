package queue

import (
	"context"
	"fmt"
	"time"
)

// Health is what the spool holds that an operator watches: the request
// envelopes not yet acknowledged by state, when the oldest of those sent
// was sealed, and the held requests. Backlog has the request counts.
type Health struct {
	// Envelopes counts the open request envelopes by state: sealed (not
	// yet published), published (not yet acknowledged), dead.
	Envelopes map[string]int
	// OldestUnacked is when the oldest sealed or published envelope was
	// sealed; zero for none.
	OldestUnacked time.Time
	// Held counts requests held for an admin's approval.
	Held int
}

// Health reads the spool's Health from the read-only pool, with the
// partial indexes envelopes_open and requests_held: its cost grows with
// what is open, not with the spool.
func (s *Spool) Health(ctx context.Context) (Health, error) {
	h := Health{Envelopes: map[string]int{EnvSealed: 0, EnvPublished: 0, EnvDead: 0}}
	rows, err := s.r.QueryContext(ctx, `SELECT state, count(*), min(created) FROM envelopes
		WHERE state IN `+openStates+` GROUP BY state`)
	if err != nil {
		return h, fmt.Errorf("spool health: %w", err)
	}
	defer rows.Close()
	var oldest int64
	for rows.Next() {
		var (
			state   string
			n       int
			created int64
		)
		if err := rows.Scan(&state, &n, &created); err != nil {
			return h, fmt.Errorf("spool health: %w", err)
		}
		h.Envelopes[state] = n
		if state != EnvDead && (oldest == 0 || created < oldest) {
			oldest = created
		}
	}
	if err := rows.Err(); err != nil {
		return h, fmt.Errorf("spool health: %w", err)
	}
	if oldest > 0 {
		h.OldestUnacked = time.UnixMilli(oldest)
	}
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM requests WHERE status = 'held'`).Scan(&h.Held); err != nil {
		return h, fmt.Errorf("spool health: %w", err)
	}
	return h, nil
}

// RequestState is a request's id and status, without its content.
type RequestState struct {
	ID     string
	Client string
	Op     string
	Status string
	Reason string // of a rejection or failure, "" otherwise
}

// EnvelopeRequests returns the requests envelope id carried, in the order
// they were accepted, with their status: no parameter, subject or result.
// It reads the index requests_envelope, from the read-only pool.
func (s *Spool) EnvelopeRequests(ctx context.Context, id string) ([]RequestState, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, client, operation, status, coalesce(reason, '') FROM requests
		WHERE envelope_id = ? ORDER BY rid`, id)
	if err != nil {
		return nil, fmt.Errorf("requests of envelope %s: %w", id, err)
	}
	defer rows.Close()
	var out []RequestState
	for rows.Next() {
		var r RequestState
		if err := rows.Scan(&r.ID, &r.Client, &r.Op, &r.Status, &r.Reason); err != nil {
			return nil, fmt.Errorf("requests of envelope %s: %w", id, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("requests of envelope %s: %w", id, err)
	}
	return out, nil
}
