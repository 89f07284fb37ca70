package replica

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/batch"
)

// DefaultMaxSeqJump is how far past the highest sequence number of a
// channel an envelope may be, unless SetMaxSeqJump says otherwise.
const DefaultMaxSeqJump = 100000

// Sentinel errors of Apply for an envelope out of its channel's order.
// Like ErrReplay they describe the envelope: the caller quarantines it.
var (
	// ErrSeqJump means the envelope's sequence number is further past the
	// highest one received on its channel than the configured bound: a
	// forged or runaway sender, or more envelopes lost than the bound
	// allows.
	ErrSeqJump = errors.New("replica: sequence number too far ahead")
	// ErrChainBroken means the envelope's prev is not the header hash of
	// the envelope before it on the channel, or the next envelope's prev
	// is not its header hash: two envelopes claim the same place in the
	// sender's chain.
	ErrChainBroken = errors.New("replica: hash chain broken")
)

// SetMaxSeqJump sets the bound ErrSeqJump enforces, which is also how far
// below the highest sequence number a gap is still waited for; 0 means
// DefaultMaxSeqJump. Call it before the first Apply.
func (db *DB) SetMaxSeqJump(n uint64) {
	if n == 0 {
		n = DefaultMaxSeqJump
	}
	db.maxJump = n
}

func highest(ctx context.Context, q queryer, sender, channel string) (uint64, error) {
	var h int64
	err := q.QueryRowContext(ctx, `SELECT highest FROM ferry_inbound WHERE sender = ? AND channel = ?`,
		sender, channel).Scan(&h)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("inbound channel %s/%s: %w", sender, channel, err)
	}
	return uint64(h), nil
}

// checkOrder refuses an envelope that jumps too far ahead of its channel
// or does not fit the hash chain of the envelopes beside it. It runs in
// Apply's transaction, after the replay check, so env.Seq is not yet
// taken.
func (db *DB) checkOrder(ctx context.Context, tx *sql.Tx, env Envelope) error {
	h, err := highest(ctx, tx, env.From, env.Channel)
	if err != nil {
		return err
	}
	if env.Seq > h && env.Seq-h > db.maxJump {
		return fmt.Errorf("apply envelope %s: %w: seq %d of channel %q is %d past the highest received, %d (bound %d)",
			env.ID, ErrSeqJump, env.Seq, env.Channel, env.Seq-h, h, db.maxJump)
	}
	if env.Seq == 1 && env.Prev != ([32]byte{}) {
		return fmt.Errorf("apply envelope %s: %w: the first envelope of channel %q names a previous one", env.ID, ErrChainBroken, env.Channel)
	}
	var hash []byte
	err = tx.QueryRowContext(ctx, `SELECT header_hash FROM ferry_envelopes WHERE sender = ? AND channel = ? AND seq = ?`,
		env.From, env.Channel, int64(env.Seq)-1).Scan(&hash)
	switch {
	case err == nil:
		if string(hash) != string(env.Prev[:]) {
			return fmt.Errorf("apply envelope %s: %w: its prev is not the header hash of seq %d of channel %q", env.ID, ErrChainBroken, env.Seq-1, env.Channel)
		}
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("apply envelope %s: look up seq %d: %w", env.ID, env.Seq-1, err)
	}
	var prev []byte
	err = tx.QueryRowContext(ctx, `SELECT prev FROM ferry_envelopes WHERE sender = ? AND channel = ? AND seq = ?`,
		env.From, env.Channel, int64(env.Seq)+1).Scan(&prev)
	switch {
	case err == nil:
		if string(prev) != string(env.HeaderHash[:]) {
			return fmt.Errorf("apply envelope %s: %w: seq %d of channel %q does not name it as previous", env.ID, ErrChainBroken, env.Seq+1, env.Channel)
		}
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("apply envelope %s: look up seq %d: %w", env.ID, env.Seq+1, err)
	}
	return nil
}

// recordInbound records env.Seq as received: above the highest it opens
// a gap for the sequence numbers skipped; below, it closes its place in
// the gap that held it. Gaps that fall more than the jump bound below the
// highest are forgotten, which keeps the table small whatever is lost.
// It returns the audit entries, at now, of what became of the gaps (see
// audit.GapEntry), for the caller to stage in the same transaction.
func (db *DB) recordInbound(ctx context.Context, tx *sql.Tx, env Envelope, now time.Time) ([]audit.Entry, error) {
	h, err := highest(ctx, tx, env.From, env.Channel)
	if err != nil {
		return nil, err
	}
	s := env.Seq
	var trail []audit.Entry
	switch {
	case s > h:
		if s > h+1 {
			if _, err := tx.ExecContext(ctx, `INSERT INTO ferry_gaps (sender, channel, first, last) VALUES (?, ?, ?, ?)`,
				env.From, env.Channel, int64(h+1), int64(s-1)); err != nil {
				return nil, fmt.Errorf("record gap before seq %d: %w", s, err)
			}
			trail = append(trail, audit.GapEntry(env.Channel, s, audit.GapOpened, h+1, s-1, ""))
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO ferry_inbound (sender, channel, highest) VALUES (?, ?, ?)
			ON CONFLICT (sender, channel) DO UPDATE SET highest = excluded.highest`, env.From, env.Channel, int64(s)); err != nil {
			return nil, fmt.Errorf("record seq %d: %w", s, err)
		}
		if s > db.maxJump {
			rows, err := tx.QueryContext(ctx, `DELETE FROM ferry_gaps WHERE sender = ? AND channel = ? AND last < ?
				RETURNING first, last`, env.From, env.Channel, int64(s-db.maxJump))
			if err != nil {
				return nil, fmt.Errorf("forget old gaps: %w", err)
			}
			gone, err := audit.AbandonedGaps(rows, env.Channel, s, db.maxJump)
			if err != nil {
				return nil, fmt.Errorf("forget old gaps: %w", err)
			}
			trail = append(trail, gone...)
		}
	default:
		trail, err = fillGap(ctx, tx, env.From, env.Channel, s, s, "received late")
		if err != nil {
			return nil, err
		}
	}
	for i := range trail {
		trail[i].Time, trail[i].Envelope = now, env.ID
	}
	return trail, nil
}

// fillGap takes seq, below the highest received, out of the gap that
// holds it, if any: the gap closes, shrinks or splits in two. It returns
// the audit entry of the filled seq (none if no gap held it), naming the
// envelope at by as what filled it, with detail (without time or
// envelope id).
func fillGap(ctx context.Context, tx *sql.Tx, sender, channel string, seq, by uint64, detail string) ([]audit.Entry, error) {
	var first, last int64
	err := tx.QueryRowContext(ctx, `SELECT first, last FROM ferry_gaps WHERE sender = ? AND channel = ? AND first <= ? AND last >= ?`,
		sender, channel, int64(seq), int64(seq)).Scan(&first, &last)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil // a gap forgotten, or a migrated ledger's
	case err != nil:
		return nil, fmt.Errorf("look up gap of seq %d: %w", seq, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM ferry_gaps WHERE sender = ? AND channel = ? AND first = ?`,
		sender, channel, first); err != nil {
		return nil, fmt.Errorf("close gap of seq %d: %w", seq, err)
	}
	for _, r := range [][2]int64{{first, int64(seq) - 1}, {int64(seq) + 1, last}} {
		if r[0] > r[1] {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO ferry_gaps (sender, channel, first, last) VALUES (?, ?, ?, ?)`,
			sender, channel, r[0], r[1]); err != nil {
			return nil, fmt.Errorf("split gap of seq %d: %w", seq, err)
		}
	}
	return []audit.Entry{audit.GapEntry(channel, by, audit.GapFilled, seq, seq, detail)}, nil
}

// withdrawn refuses, with ErrReplay, an envelope whose place in its
// channel a later envelope withdrew by replacing it (see withdraw).
func withdrawn(ctx context.Context, tx *sql.Tx, env Envelope) error {
	var by string
	err := tx.QueryRowContext(ctx, `SELECT by_id FROM ferry_withdrawn WHERE sender = ? AND channel = ? AND seq = ?`,
		env.From, env.Channel, int64(env.Seq)).Scan(&by)
	switch {
	case err == nil:
		return fmt.Errorf("apply envelope %s: %w: seq %d of channel %q was withdrawn: envelope %s re-sent its requests",
			env.ID, ErrReplay, env.Seq, env.Channel, by)
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("apply envelope %s: look up withdrawn seq: %w", env.ID, err)
	}
	return nil
}

// withdraw records that env, a re-send, replaces the envelope at
// env.Replaces: unless that envelope was applied, its place is withdrawn
// and its gap filled, so the channel does not wait for it, and it is
// refused should it arrive later. Its requests came in env. It returns
// the audit entry, at now, of the gap filled, if any.
func withdraw(ctx context.Context, tx *sql.Tx, env Envelope, now time.Time) ([]audit.Entry, error) {
	if env.Replaces == 0 {
		return nil, nil
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM ferry_envelopes WHERE sender = ? AND channel = ? AND seq = ?`,
		env.From, env.Channel, int64(env.Replaces)).Scan(&n); err != nil {
		return nil, fmt.Errorf("look up replaced seq %d: %w", env.Replaces, err)
	}
	if n > 0 {
		return nil, nil // it came first; env only asks again
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO ferry_withdrawn (sender, channel, seq, by_id) VALUES (?, ?, ?, ?)
		ON CONFLICT DO NOTHING`, env.From, env.Channel, int64(env.Replaces), env.ID)
	if err != nil {
		return nil, fmt.Errorf("withdraw seq %d: %w", env.Replaces, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return nil, err // withdrawn before: a forged or repeated claim changes nothing
	}
	trail, err := fillGap(ctx, tx, env.From, env.Channel, env.Replaces, env.Seq,
		fmt.Sprintf("withdrawn by the re-send at seq %d", env.Seq))
	if err != nil {
		return nil, err
	}
	for i := range trail {
		trail[i].Time, trail[i].Envelope = now, env.ID
	}
	return trail, nil
}

// Received reports what has been applied of a sender's channel: the
// highest sequence number, the highest below which nothing is awaited,
// and the most recent batch.MaxMissing gaps between them. One statement
// reads it all, so the report is consistent while envelopes are applied.
func (db *DB) Received(ctx context.Context, sender, channel string) (*batch.Received, error) {
	rows, err := db.w.QueryContext(ctx, `SELECT i.highest, g.first, g.last, min(g.first) OVER ()
		FROM ferry_inbound i LEFT JOIN ferry_gaps g ON g.sender = i.sender AND g.channel = i.channel
		WHERE i.sender = ? AND i.channel = ? ORDER BY g.first DESC LIMIT ?`, sender, channel, batch.MaxMissing)
	if err != nil {
		return nil, fmt.Errorf("inbound channel %s/%s: %w", sender, channel, err)
	}
	defer rows.Close()
	r := &batch.Received{}
	for rows.Next() {
		var (
			h                   int64
			first, last, lowest sql.NullInt64
		)
		if err := rows.Scan(&h, &first, &last, &lowest); err != nil {
			return nil, fmt.Errorf("inbound channel %s/%s: %w", sender, channel, err)
		}
		r.Through, r.Contiguous = uint64(h), uint64(h)
		if first.Valid {
			r.Missing = append(r.Missing, [2]uint64{uint64(first.Int64), uint64(last.Int64)})
			r.Contiguous = uint64(lowest.Int64) - 1
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("inbound channel %s/%s: %w", sender, channel, err)
	}
	slices.Reverse(r.Missing)
	return r, nil
}
