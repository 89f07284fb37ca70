package queue

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrEnvelopeState is returned by Retry and Drop for an envelope the
// action does not apply to (acknowledged, expired, dropped, or for Retry
// not yet published).
var ErrEnvelopeState = errors.New("queue: the action does not apply to the envelope in its state")

// ReasonDropped is the reason of a request failed by [Spool.Drop].
const ReasonDropped = "dropped"

// Actions an admin takes on a request envelope, as [Action.Action] names
// them.
const (
	ActionRetry = "retry"
	ActionDrop  = "drop"
)

// Backoff is the re-send schedule of a published request envelope that the
// intranet has not acknowledged: it falls due After its first publication,
// and each later publication doubles the wait, up to Max.
type Backoff struct {
	After time.Duration
	Max   time.Duration
}

// Delay returns how long after its attempts-th publication an envelope
// falls due to be published again: After * 2^(attempts-1), at most Max.
func (b Backoff) Delay(attempts int) time.Duration {
	d := b.After
	for i := 1; i < attempts && d < b.Max; i++ {
		if d > b.Max/2 {
			return b.Max // doubling would pass the cap (or overflow)
		}
		d *= 2
	}
	return min(d, b.Max)
}

func (b Backoff) validate() error {
	if b.After <= 0 || b.Max < b.After {
		return fmt.Errorf("invalid backoff: after %s, max %s", b.After, b.Max)
	}
	return nil
}

// Action is an admin's action on a request envelope, as the spool records
// it in the action's own transaction.
type Action struct {
	ID       int64 // the order of the actions
	At       time.Time
	Actor    string
	Action   string // ActionRetry or ActionDrop
	Envelope string
	// Requests is how many requests the action concerns: those the
	// envelope carries for a retry, those it failed for a drop.
	Requests int
	Reason   string // the admin's message, for a drop
}

// Retry makes envelope id, dead or published, due for publication at now
// with its attempts reset to zero; the agent publishes it again at its
// next look at the due envelopes, and the backoff starts over. It records
// the action (by actor, at now) in the same transaction and returns it.
// It fails with an error wrapping ErrNotFound for an unknown envelope and
// ErrEnvelopeState for one in any other state.
func (s *Spool) Retry(ctx context.Context, id, actor string, now time.Time) (*Action, error) {
	if actor == "" {
		return nil, fmt.Errorf("retry envelope %s: no actor", id)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("retry envelope %s: %w", id, err)
	}
	defer tx.Rollback()
	a, err := retry(ctx, tx, id, actor, now)
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("retry envelope %s: commit: %w", id, err)
	}
	return a, nil
}

// RetryDead retries every dead envelope as Retry does, in one transaction,
// recording one action for each, and returns the actions in sequence
// order (none if no envelope is dead).
func (s *Spool) RetryDead(ctx context.Context, actor string, now time.Time) ([]*Action, error) {
	if actor == "" {
		return nil, errors.New("retry dead envelopes: no actor")
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("retry dead envelopes: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT id FROM envelopes WHERE state IN `+openStates+` AND state = 'dead'
		ORDER BY channel, seq`)
	if err != nil {
		return nil, fmt.Errorf("retry dead envelopes: %w", err)
	}
	ids, err := scanStrings(rows)
	if err != nil {
		return nil, fmt.Errorf("retry dead envelopes: %w", err)
	}
	var out []*Action
	for _, id := range ids {
		a, err := retry(ctx, tx, id, actor, now)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("retry dead envelopes: commit: %w", err)
	}
	return out, nil
}

func retry(ctx context.Context, tx *sql.Tx, id, actor string, now time.Time) (*Action, error) {
	state, requests, err := envelopeState(ctx, tx, id)
	if err != nil {
		return nil, fmt.Errorf("retry envelope %s: %w", id, err)
	}
	if state != EnvDead && state != EnvPublished {
		return nil, fmt.Errorf("retry envelope %s: it is %s, and only a dead or published envelope can be retried: %w",
			id, state, ErrEnvelopeState)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE envelopes SET state = 'published', attempts = 0, resend_at = ?
		WHERE id = ?`, ms(now), id); err != nil {
		return nil, fmt.Errorf("retry envelope %s: %w", id, err)
	}
	a := &Action{At: now, Actor: actor, Action: ActionRetry, Envelope: id, Requests: requests}
	if err := recordAction(ctx, tx, a); err != nil {
		return nil, fmt.Errorf("retry envelope %s: %w", id, err)
	}
	return a, nil
}

// Drop takes envelope id, sealed, published or dead, out of the re-send
// cycle for good: its requests still queued or sent become failed with
// ReasonDropped and message, its bytes go, and it is never published
// again. Held requests stay held: the intranet holds them and answers
// them. Drop cannot take back an envelope already on the medium; if the
// intranet takes it in, its requests take effect there, and their results
// are stale here. Drop records the action (by actor, at now) in the same
// transaction and returns it. It fails with an error wrapping ErrNotFound
// for an unknown envelope and ErrEnvelopeState for one in any other state.
func (s *Spool) Drop(ctx context.Context, id, actor, message string, now time.Time) (*Action, error) {
	switch {
	case actor == "":
		return nil, fmt.Errorf("drop envelope %s: no actor", id)
	case strings.TrimSpace(message) == "":
		return nil, fmt.Errorf("drop envelope %s: no reason given", id)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("drop envelope %s: %w", id, err)
	}
	defer tx.Rollback()
	state, _, err := envelopeState(ctx, tx, id)
	if err != nil {
		return nil, fmt.Errorf("drop envelope %s: %w", id, err)
	}
	if state != EnvSealed && state != EnvPublished && state != EnvDead {
		return nil, fmt.Errorf("drop envelope %s: it is %s, and only an unacknowledged envelope can be dropped: %w",
			id, state, ErrEnvelopeState)
	}
	n, err := affected(tx.ExecContext(ctx, `UPDATE requests SET status = 'failed', reason = ?, message = ?,
		params = NULL, subject = '', updated = ? WHERE envelope_id = ? AND status IN ('queued', 'sent')`,
		ReasonDropped, message, ms(now), id))
	if err != nil {
		return nil, fmt.Errorf("drop envelope %s: fail requests: %w", id, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE envelopes SET state = 'dropped', data = X'', resend_at = NULL
		WHERE id = ?`, id); err != nil {
		return nil, fmt.Errorf("drop envelope %s: %w", id, err)
	}
	a := &Action{At: now, Actor: actor, Action: ActionDrop, Envelope: id, Requests: int(n), Reason: message}
	if err := recordAction(ctx, tx, a); err != nil {
		return nil, fmt.Errorf("drop envelope %s: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("drop envelope %s: commit: %w", id, err)
	}
	return a, nil
}

// envelopeState reads an envelope's state and request count inside tx.
func envelopeState(ctx context.Context, tx *sql.Tx, id string) (string, int, error) {
	var (
		state    string
		requests int
	)
	err := tx.QueryRowContext(ctx, `SELECT state, requests FROM envelopes WHERE id = ?`, id).Scan(&state, &requests)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", 0, fmt.Errorf("no such envelope: %w", ErrNotFound)
	case err != nil:
		return "", 0, err
	}
	return state, requests, nil
}

func recordAction(ctx context.Context, tx *sql.Tx, a *Action) error {
	err := tx.QueryRowContext(ctx, `INSERT INTO queue_actions (at, actor, action, envelope, requests, reason)
		VALUES (?, ?, ?, ?, ?, ?) RETURNING id`, ms(a.At), a.Actor, a.Action, a.Envelope, a.Requests, a.Reason).Scan(&a.ID)
	if err != nil {
		return fmt.Errorf("record action: %w", err)
	}
	return nil
}

// Actions returns the last limit admin actions, oldest first. It reads
// from the read-only pool.
func (s *Spool) Actions(ctx context.Context, limit int) ([]*Action, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, at, actor, action, envelope, requests, reason FROM
		(SELECT * FROM queue_actions ORDER BY id DESC LIMIT ?) ORDER BY id`, limit)
	if err != nil {
		return nil, fmt.Errorf("list actions: %w", err)
	}
	defer rows.Close()
	var out []*Action
	for rows.Next() {
		var (
			a  Action
			at int64
		)
		if err := rows.Scan(&a.ID, &at, &a.Actor, &a.Action, &a.Envelope, &a.Requests, &a.Reason); err != nil {
			return nil, fmt.Errorf("list actions: %w", err)
		}
		a.At = time.UnixMilli(at).UTC()
		out = append(out, &a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list actions: %w", err)
	}
	return out, nil
}

// ListEnvelopes returns the envelopes in any of states (every envelope if
// states is empty), in sequence order and without their bytes. It reads
// from the read-only pool.
func (s *Spool) ListEnvelopes(ctx context.Context, states ...string) ([]*Envelope, error) {
	where, args := "", []any{}
	if len(states) > 0 {
		where = "WHERE state IN (?" + strings.Repeat(", ?", len(states)-1) + ")"
		for _, st := range states {
			args = append(args, st)
		}
	}
	return selectEnvelopes(ctx, s.r, false, where+` ORDER BY channel, seq`, args...)
}

// CountRequests returns how many requests the spool holds in each status
// (statuses with none are absent). It reads from the read-only pool.
func (s *Spool) CountRequests(ctx context.Context) (map[string]int, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT status, count(*) FROM requests GROUP BY status`)
	if err != nil {
		return nil, fmt.Errorf("count requests: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var (
			st string
			n  int
		)
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("count requests: %w", err)
		}
		out[st] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count requests: %w", err)
	}
	return out, nil
}
