package queue

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
)

// ErrEnvelopeState is returned by Retry and Drop for an envelope the
// action does not apply to (acknowledged, expired, dropped, or for Retry
// not yet published).
var ErrEnvelopeState = errors.New("queue: the action does not apply to the envelope in its state")

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

// Retry makes envelope id, dead or published, due at now with its
// attempts reset to zero; at its next look at the due envelopes the agent
// sends again what it carried, in a new envelope, and the backoff starts
// over. It records
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
	if err := s.stageAction(ctx, tx, a); err != nil {
		return nil, fmt.Errorf("retry envelope %s: %w", id, err)
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
		if err := s.stageAction(ctx, tx, a); err != nil {
			return nil, fmt.Errorf("retry dead envelopes: %w", err)
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
// cycle for good: its bytes go and it is never published again. Its
// requests still queued or sent are orphaned, as [Spool.Expire] orphans
// them: Drop cannot take back an envelope already on the medium, and the
// intranet may have applied it, so the DMZ asks the intranet about them
// and the answer is their final result (expired with
// batch.ReasonNotReceived for those the intranet never received; it will
// never apply them after that). Held requests stay held: the intranet
// holds them and answers them. Drop records the action (by actor, at now,
// with message as its reason) in the same transaction and returns it. It
// fails with an error wrapping ErrNotFound for an unknown envelope and
// ErrEnvelopeState for one in any other state.
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
	ids, err := orphan(ctx, tx, `?`, now, id)
	if err != nil {
		return nil, fmt.Errorf("drop envelope %s: %w", id, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE envelopes SET state = 'dropped', data = X'', resend_at = NULL
		WHERE id = ?`, id); err != nil {
		return nil, fmt.Errorf("drop envelope %s: %w", id, err)
	}
	a := &Action{At: now, Actor: actor, Action: ActionDrop, Envelope: id, Requests: len(ids), Reason: message}
	if err := recordAction(ctx, tx, a); err != nil {
		return nil, fmt.Errorf("drop envelope %s: %w", id, err)
	}
	if err := s.stageAction(ctx, tx, a); err != nil {
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

// CountOrphaned returns how many requests are orphaned and still without
// a result: queued or sent, their envelope expired or dropped, waiting for
// the intranet's answer (see "Asking the intranet" in the package
// documentation). It reads the partial index requests_ask, from the
// read-only pool.
func (s *Spool) CountOrphaned(ctx context.Context) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM requests WHERE `+askable+` AND orphaned > 0`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count orphaned requests: %w", err)
	}
	return n, nil
}

// OpenRequests returns the requests of envelope id that are still queued
// or sent, in the order they were accepted, as a re-send carries them.
// Orphaned requests are never sent again, so it returns none of an
// expired or dropped envelope.
func (s *Spool) OpenRequests(ctx context.Context, id string) ([]batch.Request, error) {
	rows, err := s.w.QueryContext(ctx, `SELECT id, client, operation, params, received, subject FROM requests
		WHERE envelope_id = ? AND status IN ('queued', 'sent') AND orphaned = 0 ORDER BY rid`, id)
	if err != nil {
		return nil, fmt.Errorf("open requests of envelope %s: %w", id, err)
	}
	out, err := scanRequests(rows)
	if err != nil {
		return nil, fmt.Errorf("open requests of envelope %s: %w", id, err)
	}
	return out, nil
}

// StoreResend stores env, a new request envelope sealed to re-send the
// open requests of the published envelope old (or, for a query, the
// requests it asked about, query; for a heartbeat, nothing), in its
// place, of the same kind: like
// StoreSealed it fails with ErrSeqConflict, storing nothing, unless
// env.Seq is the channel's next sequence number, and in the same
// transaction it moves every request of old to env, takes over old's
// publication count (so the backoff and max_resends go on counting), and
// deletes old. env.Requests becomes the number of requests moved that are
// still queued or sent. It fails with ErrEnvelopeState, storing nothing,
// if old is no longer published (acknowledged, expired, dead or dropped
// meanwhile), and with ErrNotFound if it is gone.
func (s *Spool) StoreResend(ctx context.Context, env *Envelope, old string, query []string, at time.Time) error {
	return s.store(ctx, env, storeOpts{replaces: old, query: query, at: at})
}

// Queried returns the ids of the requests still to be asked about (held,
// or orphaned without a result) that query envelope id asked about, in the
// order they were accepted.
func (s *Spool) Queried(ctx context.Context, id string) ([]string, error) {
	rows, err := s.w.QueryContext(ctx, `SELECT id FROM requests WHERE query_envelope = ? AND `+askable+`
		ORDER BY rid`, id)
	if err != nil {
		return nil, fmt.Errorf("requests queried by envelope %s: %w", id, err)
	}
	ids, err := scanStrings(rows)
	if err != nil {
		return nil, fmt.Errorf("requests queried by envelope %s: %w", id, err)
	}
	return ids, nil
}

// HeartbeatOpen reports whether a heartbeat envelope is sealed or
// published and not yet acknowledged: the batcher seals another only when
// none is, and re-sends that one instead, so that a silent intranet does
// not pile up heartbeats.
func (s *Spool) HeartbeatOpen(ctx context.Context) (bool, error) {
	var n int
	err := s.w.QueryRowContext(ctx, `SELECT count(*) FROM envelopes WHERE state IN `+openStates+`
		AND state IN ('sealed', 'published') AND kind = 'heartbeat'`).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("open heartbeat: %w", err)
	}
	return n > 0, nil
}

// replace does StoreResend's work on old inside tx, once env is stored.
func replace(ctx context.Context, tx *sql.Tx, env *Envelope, old string) error {
	state, _, err := envelopeState(ctx, tx, old)
	if err != nil {
		return fmt.Errorf("replace envelope %s: %w", old, err)
	}
	if state != EnvPublished {
		return fmt.Errorf("replace envelope %s: it is %s: %w", old, state, ErrEnvelopeState)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE requests SET envelope_id = ? WHERE envelope_id = ?`, env.ID, old); err != nil {
		return fmt.Errorf("replace envelope %s: move requests: %w", old, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE requests SET query_envelope = ? WHERE query_envelope = ?`, env.ID, old); err != nil {
		return fmt.Errorf("replace envelope %s: move queries: %w", old, err)
	}
	err = tx.QueryRowContext(ctx, `UPDATE envelopes SET
			attempts = (SELECT attempts FROM envelopes WHERE id = ?),
			kind = (SELECT kind FROM envelopes WHERE id = ?),
			requests = (SELECT count(*) FROM requests WHERE envelope_id = ? AND status IN ('queued', 'sent'))
		WHERE id = ? RETURNING kind, requests`, old, old, env.ID, env.ID).Scan(&env.Kind, &env.Requests)
	if err != nil {
		return fmt.Errorf("replace envelope %s: %w", old, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM envelopes WHERE id = ?`, old); err != nil {
		return fmt.Errorf("replace envelope %s: %w", old, err)
	}
	return nil
}

// Retire takes envelope id, published and due with nothing left to re-send
// (a heartbeat, a query whose requests will be asked about again, or
// an envelope whose requests were all answered), out of the re-send cycle.
// An envelope no request belongs to is deleted; one whose requests were
// all answered counts as acknowledged, which it is in all but name. It
// reports whether the envelope was retired; one no longer published is
// left as it is.
func (s *Spool) Retire(ctx context.Context, id string) (bool, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("retire envelope %s: %w", id, err)
	}
	defer tx.Rollback()
	var open, all int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE status IN ('queued', 'sent')), count(*)
		FROM requests WHERE envelope_id = ?`, id).Scan(&open, &all); err != nil {
		return false, fmt.Errorf("retire envelope %s: %w", id, err)
	}
	if open > 0 {
		return false, fmt.Errorf("retire envelope %s: %d of its requests are unanswered: %w", id, open, ErrEnvelopeState)
	}
	q := `DELETE FROM envelopes WHERE id = ? AND state = 'published'`
	if all > 0 {
		q = `UPDATE envelopes SET state = 'acked', data = X'', resend_at = NULL WHERE id = ? AND state = 'published'`
	}
	n, err := affected(tx.ExecContext(ctx, q, id))
	if err != nil {
		return false, fmt.Errorf("retire envelope %s: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("retire envelope %s: commit: %w", id, err)
	}
	return n > 0, nil
}

// ResendMissing makes due at now the envelopes of channel that the
// receiver reports missing (ranges of sequence numbers, as
// batch.Received.Missing gives them), that were published once only, no
// later than publishedBefore, and are not due yet, so that a lost envelope
// is re-sent as soon as a later one is known to have arrived rather than
// after resend_after. Each envelope gets at most one such early re-send:
// its re-send is its second publication. It returns how many it made due,
// and if any, signals DueSignal.
func (s *Spool) ResendMissing(ctx context.Context, channel string, missing [][2]uint64, now, publishedBefore time.Time) (int, error) {
	if len(missing) == 0 {
		return 0, nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("resend missing: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `UPDATE envelopes SET resend_at = ?
		WHERE state = 'published' AND channel = ? AND seq BETWEEN ? AND ?
			AND attempts = 1 AND resend_at > ? AND published <= ?`)
	if err != nil {
		return 0, fmt.Errorf("resend missing: %w", err)
	}
	defer stmt.Close()
	total := 0
	for _, m := range missing {
		if m[0] > m[1] || m[1] >= 1<<63 {
			continue // batch.Received.check refuses these; never trust a caller
		}
		n, err := affected(stmt.ExecContext(ctx, ms(now), channel, int64(m[0]), int64(m[1]), ms(now), ms(publishedBefore)))
		if err != nil {
			return 0, fmt.Errorf("resend missing: %w", err)
		}
		total += int(n)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("resend missing: commit: %w", err)
	}
	if total > 0 {
		select {
		case s.due <- struct{}{}:
		default:
		}
	}
	return total, nil
}

// DueSignal fires after ResendMissing made envelopes due early, so that
// the re-sender need not wait for its next look.
func (s *Spool) DueSignal() <-chan struct{} { return s.due }
