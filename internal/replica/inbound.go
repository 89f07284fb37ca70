package replica

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/ferrybridge/ferry/internal/batch"
)

// DefaultMaxSeqJump is how far past the last contiguous sequence number
// of a channel an envelope may be, unless SetMaxSeqJump says otherwise.
const DefaultMaxSeqJump = 100000

// Sentinel errors of Apply for an envelope out of its channel's order.
// Like ErrReplay they describe the envelope: the caller quarantines it.
var (
	// ErrSeqJump means the envelope's sequence number is further past the
	// channel's last contiguous one than the configured bound: a forged
	// or runaway sender, or more envelopes lost than the bound allows.
	ErrSeqJump = errors.New("replica: sequence number too far ahead")
	// ErrChainBroken means the envelope's prev is not the header hash of
	// the envelope before it on the channel, or the next envelope's prev
	// is not its header hash: two envelopes claim the same place in the
	// sender's chain.
	ErrChainBroken = errors.New("replica: hash chain broken")
)

// SetMaxSeqJump sets the bound ErrSeqJump enforces; 0 means
// DefaultMaxSeqJump. Call it
// before the first Apply.
func (db *DB) SetMaxSeqJump(n uint64) {
	if n == 0 {
		n = DefaultMaxSeqJump
	}
	db.maxJump = n
}

// inbound is the receiving state of one channel.
type inbound struct {
	contiguous, highest uint64
}

func loadInbound(ctx context.Context, q queryer, sender, channel string) (inbound, error) {
	var c, h int64
	err := q.QueryRowContext(ctx, `SELECT contiguous, highest FROM ferry_inbound WHERE sender = ? AND channel = ?`,
		sender, channel).Scan(&c, &h)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return inbound{}, nil
	case err != nil:
		return inbound{}, fmt.Errorf("inbound channel %s/%s: %w", sender, channel, err)
	}
	return inbound{uint64(c), uint64(h)}, nil
}

// checkOrder refuses an envelope that jumps too far ahead of its channel
// or does not fit the hash chain of the envelopes beside it. It runs in
// Apply's transaction, after the replay check, so env.Seq is not yet
// taken.
func (db *DB) checkOrder(ctx context.Context, tx *sql.Tx, env Envelope) error {
	in, err := loadInbound(ctx, tx, env.From, env.Channel)
	if err != nil {
		return err
	}
	if env.Seq > in.contiguous && env.Seq-in.contiguous > db.maxJump {
		return fmt.Errorf("apply envelope %s: %w: seq %d of channel %q, %d past the last contiguous %d (bound %d)",
			env.ID, ErrSeqJump, env.Seq, env.Channel, env.Seq-in.contiguous, in.contiguous, db.maxJump)
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

// advanceInbound records env.Seq as applied: it raises the channel's
// highest sequence number and moves its contiguous mark past every
// applied envelope that now follows without a gap.
func advanceInbound(ctx context.Context, tx *sql.Tx, env Envelope) error {
	in, err := loadInbound(ctx, tx, env.From, env.Channel)
	if err != nil {
		return err
	}
	in.highest = max(in.highest, env.Seq)
	if env.Seq == in.contiguous+1 {
		seqs, err := seqsAbove(ctx, tx, env.From, env.Channel, in.contiguous, in.highest)
		if err != nil {
			return err
		}
		for _, s := range seqs {
			if s != in.contiguous+1 {
				break
			}
			in.contiguous = s
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO ferry_inbound (sender, channel, contiguous, highest) VALUES (?, ?, ?, ?)
		ON CONFLICT (sender, channel) DO UPDATE SET contiguous = excluded.contiguous, highest = excluded.highest`,
		env.From, env.Channel, int64(in.contiguous), int64(in.highest)); err != nil {
		return fmt.Errorf("record inbound seq %d: %w", env.Seq, err)
	}
	return nil
}

// seqsAbove returns the applied sequence numbers of a channel in (from,
// to], in order. The channel's bound on jumps keeps the list short.
func seqsAbove(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, sender, channel string, from, to uint64) ([]uint64, error) {
	rows, err := q.QueryContext(ctx, `SELECT seq FROM ferry_envelopes
		WHERE sender = ? AND channel = ? AND seq > ? AND seq <= ? ORDER BY seq`, sender, channel, int64(from), int64(to))
	if err != nil {
		return nil, fmt.Errorf("inbound seqs: %w", err)
	}
	defer rows.Close()
	var out []uint64
	for rows.Next() {
		var s int64
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("inbound seqs: %w", err)
		}
		out = append(out, uint64(s))
	}
	return out, rows.Err()
}

// Received reports what has been applied of a sender's channel: the
// highest sequence number and the ranges below it that never arrived,
// at most batch.MaxMissing of them (with Through lowered to keep the
// report true when there are more).
func (db *DB) Received(ctx context.Context, sender, channel string) (*batch.Received, error) {
	in, err := loadInbound(ctx, db.w, sender, channel)
	if err != nil {
		return nil, err
	}
	r := &batch.Received{Through: in.highest}
	if in.highest == in.contiguous {
		return r, nil
	}
	seqs, err := seqsAbove(ctx, db.w, sender, channel, in.contiguous, in.highest)
	if err != nil {
		return nil, err
	}
	next := in.contiguous + 1 // the lowest sequence number not yet accounted for
	for _, s := range seqs {
		if s > next {
			if len(r.Missing) == batch.MaxMissing {
				r.Through = next - 1
				return r, nil
			}
			r.Missing = append(r.Missing, [2]uint64{next, s - 1})
		}
		next = s + 1
	}
	return r, nil
}
