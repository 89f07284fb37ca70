package replica

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ferrybridge/ferry/internal/policy"
)

// Rate limit scopes, as stored in ferry_rates.scope.
const (
	ScopeSubject = "subject"
	ScopeClient  = "client"
)

// rateStore is what the limiter needs of a transaction.
type rateStore interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// take applies the generic cell rate algorithm (GCRA) to one bucket: n
// requests per period, with a burst of n. It reports whether a request at
// now may go ahead; if not, retry is how long until one may. An allowed
// request is recorded in tx, so that it counts only if the transaction
// that applies it commits; a refused one changes nothing.
func take(ctx context.Context, tx rateStore, scope, op, key string, n int, per time.Duration, now time.Time) (ok bool, retry time.Duration, err error) {
	if n <= 0 || per <= 0 {
		return true, 0, nil
	}
	h := sha256.Sum256([]byte(key))
	interval := per.Nanoseconds() / int64(n)
	nowNS := now.UnixNano()
	var tat int64
	err = tx.QueryRowContext(ctx, `SELECT tat FROM ferry_rates WHERE scope = ? AND operation = ? AND key = ?`,
		scope, op, h[:]).Scan(&tat)
	switch {
	case errors.Is(err, sql.ErrNoRows), err == nil && tat < nowNS:
		tat = nowNS
	case err != nil:
		return false, 0, fmt.Errorf("rate limit %s: %w", scope, err)
	}
	next := tat + interval
	if allowAt := next - per.Nanoseconds(); allowAt > nowNS {
		return false, time.Duration(allowAt - nowNS), nil
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO ferry_rates (scope, operation, key, tat) VALUES (?, ?, ?, ?)
		ON CONFLICT (scope, operation, key) DO UPDATE SET tat = excluded.tat`, scope, op, h[:], next); err != nil {
		return false, 0, fmt.Errorf("rate limit %s: %w", scope, err)
	}
	return true, 0, nil
}

// purgeRates deletes the buckets that are full again; they count the same
// as no row.
func purgeRates(ctx context.Context, tx rateStore, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM ferry_rates WHERE tat < ?`, now.UnixNano()); err != nil {
		return fmt.Errorf("purge rate limits: %w", err)
	}
	return nil
}

// purgeEvery is how many Apply calls pass between purges of the rate
// table.
const purgeEvery = 1000

// limit applies the operation's rate limits to one request, per subject
// first, then per client, inside a savepoint so that a request refused by
// the second limit does not count against the first. It returns the scope
// that refused the request ("" if none did) and the wait until it would
// not.
func limit(ctx context.Context, tx *sql.Tx, op *policy.Operation, client, subject string, now time.Time) (string, time.Duration, error) {
	ps, pc := op.Limits.PerSubject, op.Limits.PerClient
	if ps.IsZero() && pc.IsZero() {
		return "", 0, nil
	}
	if _, err := tx.ExecContext(ctx, `SAVEPOINT ferry_rate`); err != nil {
		return "", 0, err
	}
	scope, retry, err := func() (string, time.Duration, error) {
		if !ps.IsZero() {
			// The policy refuses a request without a subject on an
			// operation limited per subject; "" is never a bucket.
			if subject == "" {
				return ScopeSubject, ps.Per, nil
			}
			ok, retry, err := take(ctx, tx, ScopeSubject, op.Name, subject, ps.N, ps.Per, now)
			if err != nil || !ok {
				return ScopeSubject, retry, err
			}
		}
		if !pc.IsZero() {
			ok, retry, err := take(ctx, tx, ScopeClient, op.Name, client, pc.N, pc.Per, now)
			if err != nil || !ok {
				return ScopeClient, retry, err
			}
		}
		return "", 0, nil
	}()
	if err == nil && scope != "" {
		_, err = tx.ExecContext(ctx, `ROLLBACK TO ferry_rate`)
	}
	if _, rerr := tx.ExecContext(ctx, `RELEASE ferry_rate`); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return "", 0, fmt.Errorf("rate limit: %w", err)
	}
	return scope, retry, nil
}

// rateCount renders the limit of a scope for a refusal message.
func rateCount(op *policy.Operation, scope string) string {
	r := op.Limits.PerClient
	if scope == ScopeSubject {
		r = op.Limits.PerSubject
	}
	return r.String()
}

// retryText rounds a wait up to whole seconds.
func retryText(d time.Duration) string {
	return (d + time.Second - 1).Truncate(time.Second).String()
}
