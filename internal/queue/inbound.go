package queue

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

// DefaultMaxSeqJump is the bound ErrSeqJump enforces unless SetMaxSeqJump
// says otherwise.
const DefaultMaxSeqJump = 100000

// SetMaxSeqJump sets the bound ErrSeqJump enforces, which is also how far
// below the highest sequence number received a gap is still waited for;
// 0 means DefaultMaxSeqJump. Call it before the first ApplyResults.
func (s *Spool) SetMaxSeqJump(n uint64) {
	if n == 0 {
		n = DefaultMaxSeqJump
	}
	s.maxJump = n
}

// jumpBound returns the bound set by SetMaxSeqJump, DefaultMaxSeqJump if
// it was never called (Open leaves it 0).
func (s *Spool) jumpBound() uint64 {
	if s.maxJump == 0 {
		return DefaultMaxSeqJump
	}
	return s.maxJump
}

// receivedHighest returns the highest sequence number received on a
// results channel, 0 for none.
func receivedHighest(ctx context.Context, tx *sql.Tx, channel string) (uint64, error) {
	var h int64
	err := tx.QueryRowContext(ctx, `SELECT highest FROM received_channels WHERE channel = ?`, channel).Scan(&h)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("results channel %q: %w", channel, err)
	}
	return uint64(h), nil
}

// receivedHash returns column col (prev or header_hash) of the envelope
// received as seq of channel, and false if there is none or it was
// received before migration 0008 stored hashes.
func receivedHash(ctx context.Context, tx *sql.Tx, col, channel string, seq uint64) ([]byte, bool, error) {
	var h []byte
	err := tx.QueryRowContext(ctx, `SELECT `+col+` FROM received WHERE channel = ? AND seq = ?`,
		channel, int64(seq)).Scan(&h)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("look up seq %d of results channel %q: %w", seq, channel, err)
	}
	return h, h != nil, nil
}

// recordReceived checks env against the envelopes already received on its
// channel and records it, at now, in ApplyResults' transaction, after the
// duplicate and replay checks (so env.Seq is not yet taken). It refuses
// seq 0 (ErrBadSeq), a seq more than the jump bound above the highest
// received (ErrSeqJump), and an envelope that does not fit the hash chain
// of the envelopes received beside it (ErrChainBroken); envelopes received
// before migration 0008 have no hashes and are not checked against.
//
// Received above the highest, env opens a gap for the sequence numbers it
// skips; below, it closes its place in the gap that held it. Gaps that
// fall more than the jump bound below the highest are forgotten, which
// keeps the table small whatever is lost. It returns the audit entries of
// what became of the gaps (see audit.GapEntry), for the caller to stage
// in the same transaction.
func (s *Spool) recordReceived(ctx context.Context, tx *sql.Tx, env ReceivedEnvelope, now time.Time) ([]audit.Entry, error) {
	if env.Seq == 0 {
		return nil, fmt.Errorf("%w: seq 0 of results channel %q", ErrBadSeq, env.Channel)
	}
	bound := s.jumpBound()
	h, err := receivedHighest(ctx, tx, env.Channel)
	if err != nil {
		return nil, err
	}
	if env.Seq > h && env.Seq-h > bound {
		return nil, fmt.Errorf("%w: seq %d of results channel %q is %d above the highest received, %d (bound %d)",
			ErrSeqJump, env.Seq, env.Channel, env.Seq-h, h, bound)
	}
	if env.Seq == 1 && env.Prev != ([32]byte{}) {
		return nil, fmt.Errorf("%w: seq 1 of results channel %q names a previous envelope", ErrChainBroken, env.Channel)
	}
	if env.Seq > 1 {
		hash, ok, err := receivedHash(ctx, tx, "header_hash", env.Channel, env.Seq-1)
		if err != nil {
			return nil, err
		}
		if ok && string(hash) != string(env.Prev[:]) {
			return nil, fmt.Errorf("%w: prev of seq %d of results channel %q is not the header hash of seq %d",
				ErrChainBroken, env.Seq, env.Channel, env.Seq-1)
		}
	}
	next, ok, err := receivedHash(ctx, tx, "prev", env.Channel, env.Seq+1)
	if err != nil {
		return nil, err
	}
	if ok && string(next) != string(env.HeaderHash[:]) {
		return nil, fmt.Errorf("%w: seq %d of results channel %q does not name seq %d as previous",
			ErrChainBroken, env.Seq+1, env.Channel, env.Seq)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO received (id, channel, seq, applied, prev, header_hash)
		VALUES (?, ?, ?, ?, ?, ?)`,
		env.ID, env.Channel, int64(env.Seq), ms(now), env.Prev[:], env.HeaderHash[:]); err != nil {
		return nil, fmt.Errorf("record seq %d of results channel %q: %w", env.Seq, env.Channel, err)
	}
	gaps, err := recordGaps(ctx, tx, env.Channel, env.Seq, h, bound)
	if err != nil {
		return nil, err
	}
	for i := range gaps {
		gaps[i].Time, gaps[i].Envelope = now, env.ID
	}
	return gaps, nil
}

// recordGaps records seq as received on channel, whose highest sequence
// number so far is h, and returns the audit entries of the gaps it
// opened, filled or abandoned (without time or envelope).
func recordGaps(ctx context.Context, tx *sql.Tx, channel string, seq, h, bound uint64) ([]audit.Entry, error) {
	var trail []audit.Entry
	if seq > h {
		if seq > h+1 {
			if _, err := tx.ExecContext(ctx, `INSERT INTO received_gaps (channel, first, last) VALUES (?, ?, ?)`,
				channel, int64(h+1), int64(seq-1)); err != nil {
				return nil, fmt.Errorf("record gap before seq %d of results channel %q: %w", seq, channel, err)
			}
			trail = append(trail, audit.GapEntry(channel, seq, audit.GapOpened, h+1, seq-1, ""))
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO received_channels (channel, highest) VALUES (?, ?)
			ON CONFLICT (channel) DO UPDATE SET highest = excluded.highest`, channel, int64(seq)); err != nil {
			return nil, fmt.Errorf("record seq %d of results channel %q: %w", seq, channel, err)
		}
		if seq > bound {
			rows, err := tx.QueryContext(ctx, `DELETE FROM received_gaps WHERE channel = ? AND last < ? RETURNING first, last`,
				channel, int64(seq-bound))
			if err != nil {
				return nil, fmt.Errorf("forget old gaps of results channel %q: %w", channel, err)
			}
			gone, err := audit.AbandonedGaps(rows, channel, seq, bound)
			if err != nil {
				return nil, fmt.Errorf("forget old gaps of results channel %q: %w", channel, err)
			}
			trail = append(trail, gone...)
		}
		return trail, nil
	}
	var first, last int64
	err := tx.QueryRowContext(ctx, `SELECT first, last FROM received_gaps WHERE channel = ? AND first <= ? AND last >= ?`,
		channel, int64(seq), int64(seq)).Scan(&first, &last)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil // a gap forgotten, or one from before migration 0008
	case err != nil:
		return nil, fmt.Errorf("look up gap of seq %d of results channel %q: %w", seq, channel, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM received_gaps WHERE channel = ? AND first = ?`, channel, first); err != nil {
		return nil, fmt.Errorf("close gap of seq %d of results channel %q: %w", seq, channel, err)
	}
	for _, r := range [][2]int64{{first, int64(seq) - 1}, {int64(seq) + 1, last}} {
		if r[0] > r[1] {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO received_gaps (channel, first, last) VALUES (?, ?, ?)`,
			channel, r[0], r[1]); err != nil {
			return nil, fmt.Errorf("split gap of seq %d of results channel %q: %w", seq, channel, err)
		}
	}
	return []audit.Entry{audit.GapEntry(channel, seq, audit.GapFilled, seq, seq, "received late")}, nil
}

// Received reports what has been received of a results channel: the
// highest sequence number, the highest below which nothing is awaited,
// and the most recent batch.MaxMissing gaps between them (see "Received
// reports" in docs/envelope.md). A channel never received from reports
// zeros. One statement reads it all, so the report is consistent while
// ApplyResults runs: reading the highest and the gaps apart could pair a
// highest with gaps from before it moved. It reads from the read-only
// pool, which sees every committed transaction.
func (s *Spool) Received(ctx context.Context, channel string) (*batch.Received, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT c.highest, g.first, g.last, min(g.first) OVER ()
		FROM received_channels c LEFT JOIN received_gaps g ON g.channel = c.channel
		WHERE c.channel = ? ORDER BY g.first DESC LIMIT ?`, channel, batch.MaxMissing)
	if err != nil {
		return nil, fmt.Errorf("results channel %q: %w", channel, err)
	}
	defer rows.Close()
	r := &batch.Received{}
	for rows.Next() {
		var (
			h                   int64
			first, last, lowest sql.NullInt64
		)
		if err := rows.Scan(&h, &first, &last, &lowest); err != nil {
			return nil, fmt.Errorf("results channel %q: %w", channel, err)
		}
		r.Through, r.Contiguous = uint64(h), uint64(h)
		if first.Valid {
			r.Missing = append(r.Missing, [2]uint64{uint64(first.Int64), uint64(last.Int64)})
			r.Contiguous = uint64(lowest.Int64) - 1
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("results channel %q: %w", channel, err)
	}
	slices.Reverse(r.Missing)
	return r, nil
}
