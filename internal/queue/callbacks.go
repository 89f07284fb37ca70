package queue

import (
	"context"
	"fmt"
	"time"
)

// Result callbacks: the spool is their durable outbox. A request of a
// client named by SetCallbackClients becomes due for a callback whenever
// its status becomes held or final (a trigger does it, in the transaction
// that changes the status; migration 0011). The agent delivers what
// CallbacksDue lists and records each outcome with SettleCallbacks. A
// request whose status changes again before its callback is delivered is
// delivered once, in its newest state.

// SetCallbackClients makes names the clients whose requests get result
// callbacks, from now on. Requests already final are not marked.
func (s *Spool) SetCallbackClients(ctx context.Context, names []string) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("set callback clients: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM callback_clients`); err != nil {
		return fmt.Errorf("set callback clients: %w", err)
	}
	for _, n := range names {
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO callback_clients (name) VALUES (?)`, n); err != nil {
			return fmt.Errorf("set callback clients: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("set callback clients: commit: %w", err)
	}
	return nil
}

// DueCallback is a request whose callback is due.
type DueCallback struct {
	ID       string
	Client   string
	Status   string
	Attempts int // failed deliveries of this state so far
	// Since is when the request reached this state: a callback that
	// keeps failing is abandoned some time after it.
	Since time.Time
}

// CallbacksDue returns up to limit requests whose callback is due at
// now, the longest due first.
func (s *Spool) CallbacksDue(ctx context.Context, now time.Time, limit int) ([]DueCallback, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, client, status, callback_attempts, updated FROM requests
		WHERE callback_due IS NOT NULL AND callback_due <= ? ORDER BY callback_due LIMIT ?`, ms(now), limit)
	if err != nil {
		return nil, fmt.Errorf("callbacks due: %w", err)
	}
	defer rows.Close()
	var out []DueCallback
	for rows.Next() {
		var (
			d     DueCallback
			since int64
		)
		if err := rows.Scan(&d.ID, &d.Client, &d.Status, &d.Attempts, &since); err != nil {
			return nil, fmt.Errorf("callbacks due: %w", err)
		}
		d.Since = time.UnixMilli(since).UTC()
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("callbacks due: %w", err)
	}
	return out, nil
}

// CountCallbacksDue returns how many callbacks wait for delivery, due now
// or later.
func (s *Spool) CountCallbacksDue(ctx context.Context) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM requests WHERE callback_due IS NOT NULL`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count callbacks: %w", err)
	}
	return n, nil
}

// CallbackOutcome is what became of one delivery of a request's
// callback in state Status.
type CallbackOutcome struct {
	ID     string
	Status string
	// Retry, when not zero, is when to try again; zero means the callback
	// is settled: delivered, or abandoned.
	Retry time.Time
}

// SettleCallbacks records outcomes in one transaction. An outcome applies
// only if the request is still in the state delivered: one that moved on
// meanwhile stays due, for its new state.
func (s *Spool) SettleCallbacks(ctx context.Context, outcomes []CallbackOutcome) error {
	if len(outcomes) == 0 {
		return nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("settle callbacks: %w", err)
	}
	defer tx.Rollback()
	settle, err := tx.PrepareContext(ctx, `UPDATE requests SET callback_due = NULL, callback_attempts = 0
		WHERE id = ? AND status = ? AND callback_due IS NOT NULL`)
	if err != nil {
		return fmt.Errorf("settle callbacks: %w", err)
	}
	defer settle.Close()
	retry, err := tx.PrepareContext(ctx, `UPDATE requests SET callback_due = ?, callback_attempts = callback_attempts + 1
		WHERE id = ? AND status = ? AND callback_due IS NOT NULL`)
	if err != nil {
		return fmt.Errorf("settle callbacks: %w", err)
	}
	defer retry.Close()
	for _, o := range outcomes {
		var err error
		if o.Retry.IsZero() {
			_, err = settle.ExecContext(ctx, o.ID, o.Status)
		} else {
			_, err = retry.ExecContext(ctx, ms(o.Retry), o.ID, o.Status)
		}
		if err != nil {
			return fmt.Errorf("settle callback %s: %w", o.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("settle callbacks: commit: %w", err)
	}
	return nil
}
