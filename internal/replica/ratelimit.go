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

// bucket is one rate-limit bucket as a request finds it.
type bucket struct {
	scope, op string
	key       [32]byte // SHA-256 of the subject or client name
	next      int64    // the bucket's tat if the request is allowed
}

// peek applies the generic cell rate algorithm (GCRA) to one bucket: n
// requests per period, with a burst of n. It reports whether a request at
// now may go ahead and, if not, how long until one may. It changes
// nothing; store records an allowed request.
func peek(ctx context.Context, tx rateStore, scope, op, key string, n int, per time.Duration, now time.Time) (b bucket, ok bool, retry time.Duration, err error) {
	b = bucket{scope: scope, op: op, key: sha256.Sum256([]byte(key))}
	interval := per.Nanoseconds() / int64(n)
	nowNS := now.UnixNano()
	var tat int64
	err = tx.QueryRowContext(ctx, `SELECT tat FROM ferry_rates WHERE scope = ? AND operation = ? AND key = ?`,
		scope, op, b.key[:]).Scan(&tat)
	switch {
	case errors.Is(err, sql.ErrNoRows), err == nil && tat < nowNS:
		tat = nowNS
	case err != nil:
		return b, false, 0, fmt.Errorf("rate limit %s: %w", scope, err)
	}
	b.next = tat + interval
	if allowAt := b.next - per.Nanoseconds(); allowAt > nowNS {
		return b, false, time.Duration(allowAt - nowNS), nil
	}
	return b, true, 0, nil
}

// store records an allowed request in its bucket, inside tx, so that it
// counts only if the transaction that applies it commits.
func store(ctx context.Context, tx rateStore, b bucket) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO ferry_rates (scope, operation, key, tat) VALUES (?, ?, ?, ?)
		ON CONFLICT (scope, operation, key) DO UPDATE SET tat = excluded.tat`, b.scope, b.op, b.key[:], b.next); err != nil {
		return fmt.Errorf("rate limit %s: %w", b.scope, err)
	}
	return nil
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
// first, then per client. Both buckets are read before either is written,
// so a request refused by one limit counts against neither. It returns the
// scope that refused the request ("" if none did), its rate, and the wait
// until it would not.
func limit(ctx context.Context, tx *sql.Tx, op *policy.Operation, client, subject string, now time.Time) (string, policy.Rate, time.Duration, error) {
	ps, pc := op.Limits.PerSubject, op.Limits.PerClient
	var take [2]bucket
	n := 0
	if !ps.IsZero() {
		// The policy refuses a request without a subject on an operation
		// limited per subject; "" is never a bucket.
		if subject == "" {
			return ScopeSubject, ps, ps.Per, nil
		}
		b, ok, retry, err := peek(ctx, tx, ScopeSubject, op.Name, subject, ps.N, ps.Per, now)
		if err != nil || !ok {
			return ScopeSubject, ps, retry, err
		}
		take[n], n = b, n+1
	}
	if !pc.IsZero() {
		b, ok, retry, err := peek(ctx, tx, ScopeClient, op.Name, client, pc.N, pc.Per, now)
		if err != nil || !ok {
			return ScopeClient, pc, retry, err
		}
		take[n], n = b, n+1
	}
	for _, b := range take[:n] {
		if err := store(ctx, tx, b); err != nil {
			return "", policy.Rate{}, 0, err
		}
	}
	return "", policy.Rate{}, 0, nil
}

// retrySeconds rounds a wait up to whole seconds, at least 1.
func retrySeconds(d time.Duration) int64 {
	return max(int64((d+time.Second-1)/time.Second), 1)
}
