package replica

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/ferrybridge/ferry/internal/audit"
)

// ErrSeqConflict is returned by StoreSealed when the channel's next
// sequence number is not the one the envelope was sealed with.
var ErrSeqConflict = errors.New("replica: channel sequence number moved")

// Pending returns the applied envelopes whose results are not sealed yet,
// oldest first, with their stored results.
func (db *DB) Pending(ctx context.Context) ([]Pending, error) {
	rows, err := db.w.QueryContext(ctx, `SELECT id, file, requests FROM ferry_envelopes
		WHERE state = 'applied' ORDER BY applied_at, rowid`)
	if err != nil {
		return nil, fmt.Errorf("pending envelopes: %w", err)
	}
	type row struct{ id, file, ids string }
	var list []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.file, &r.ids); err != nil {
			rows.Close()
			return nil, fmt.Errorf("pending envelopes: %w", err)
		}
		list = append(list, r)
	}
	// Close before the next query: the writer has a single connection.
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, fmt.Errorf("pending envelopes: %w", err)
	}
	out := make([]Pending, 0, len(list))
	for _, r := range list {
		results, err := storedResults(ctx, db.w, r.ids)
		if err != nil {
			return nil, fmt.Errorf("pending envelope %s: %w", r.id, err)
		}
		out = append(out, Pending{ID: r.id, File: r.file, Results: results})
	}
	return out, nil
}

// Channel returns the next sequence number of an outgoing channel and the
// header hash of the last envelope sealed on it. A channel never used
// starts at sequence 1 with a zero hash.
func (db *DB) Channel(ctx context.Context, name string) (uint64, [32]byte, error) {
	var (
		next int64
		prev []byte
		hash [32]byte
	)
	err := db.w.QueryRowContext(ctx, `SELECT next_seq, prev FROM ferry_channels WHERE channel = ?`, name).Scan(&next, &prev)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 1, hash, nil
	case err != nil:
		return 0, hash, fmt.Errorf("channel %s: %w", name, err)
	case next < 1 || len(prev) != len(hash):
		return 0, hash, fmt.Errorf("channel %s: corrupt state", name)
	}
	copy(hash[:], prev)
	return uint64(next), hash, nil
}

// StoreSealed records a sealed result envelope in one transaction: it
// stores out in the outbox, advances out.Channel past out.Seq with
// out.HeaderHash as the new previous hash, marks the envelopes in
// out.Covers sealed by it and the decisions in out.Decided sent. If the channel's next sequence number is not
// out.Seq it returns ErrSeqConflict and changes nothing.
func (db *DB) StoreSealed(ctx context.Context, out *Outgoing) error {
	if out.Seq == 0 || out.Seq >= math.MaxInt64 {
		return fmt.Errorf("store result envelope %s: sequence number %d out of range", out.ID, out.Seq)
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store result envelope %s: %w", out.ID, err)
	}
	defer tx.Rollback()
	var next int64 = 1
	err = tx.QueryRowContext(ctx, `SELECT next_seq FROM ferry_channels WHERE channel = ?`, out.Channel).Scan(&next)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("store result envelope %s: %w", out.ID, err)
	}
	if uint64(next) != out.Seq {
		return fmt.Errorf("store result envelope %s: %w: sealed as %d, channel %s is at %d", out.ID, ErrSeqConflict, out.Seq, out.Channel, next)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO ferry_channels (channel, next_seq, prev) VALUES (?, ?, ?)
		ON CONFLICT (channel) DO UPDATE SET next_seq = excluded.next_seq, prev = excluded.prev`,
		out.Channel, int64(out.Seq)+1, out.HeaderHash[:]); err != nil {
		return fmt.Errorf("store result envelope %s: advance channel: %w", out.ID, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO ferry_outbox (id, channel, seq, header_hash, name, data, state, created_at)
		VALUES (?, ?, ?, ?, ?, ?, 'sealed', ?)`,
		out.ID, out.Channel, int64(out.Seq), out.HeaderHash[:], out.Name, out.Data, time.Now().UnixMilli()); err != nil {
		return fmt.Errorf("store result envelope %s: %w", out.ID, err)
	}
	sent, err := tx.PrepareContext(ctx, `UPDATE ferry_held SET result_id = ? WHERE request_id = ? AND state <> 'held' AND result_id IS NULL`)
	if err != nil {
		return fmt.Errorf("store result envelope %s: %w", out.ID, err)
	}
	defer sent.Close()
	for _, id := range out.Decided {
		n, err := affected(sent.ExecContext(ctx, out.ID, id))
		if err != nil {
			return fmt.Errorf("store result envelope %s: mark decision %s sent: %w", out.ID, id, err)
		}
		if n != 1 {
			return fmt.Errorf("store result envelope %s: held request %s has no decision awaiting an envelope", out.ID, id)
		}
	}
	mark, err := tx.PrepareContext(ctx, `UPDATE ferry_envelopes SET state = 'sealed', result_id = ? WHERE id = ? AND state = 'applied'`)
	if err != nil {
		return fmt.Errorf("store result envelope %s: %w", out.ID, err)
	}
	defer mark.Close()
	for _, id := range out.Covers {
		res, err := mark.ExecContext(ctx, out.ID, id)
		if err != nil {
			return fmt.Errorf("store result envelope %s: mark %s sealed: %w", out.ID, id, err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return fmt.Errorf("store result envelope %s: request envelope %s is not awaiting its results", out.ID, id)
		}
	}
	if err := db.audit.Stage(ctx, tx, audit.Entry{Event: audit.EventEnvelopeSealed, Envelope: out.ID, Channel: out.Channel, Seq: out.Seq,
		Count: int64(len(out.Covers) + len(out.Decided)), Detail: fmt.Sprintf("answers %d request envelopes", len(out.Covers))}); err != nil {
		return fmt.Errorf("store result envelope %s: %w", out.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store result envelope %s: commit: %w", out.ID, err)
	}
	return nil
}

// Unpublished returns the sealed result envelopes not yet published, in
// sequence order, with the ids and inbox files of the request envelopes
// they answer.
func (db *DB) Unpublished(ctx context.Context) ([]*Outgoing, error) {
	rows, err := db.w.QueryContext(ctx, `SELECT id, channel, seq, header_hash, name, data FROM ferry_outbox
		WHERE state = 'sealed' ORDER BY channel, seq`)
	if err != nil {
		return nil, fmt.Errorf("unpublished result envelopes: %w", err)
	}
	var list []*Outgoing
	for rows.Next() {
		var (
			o    Outgoing
			seq  int64
			hash []byte
		)
		if err := rows.Scan(&o.ID, &o.Channel, &seq, &hash, &o.Name, &o.Data); err != nil {
			rows.Close()
			return nil, fmt.Errorf("unpublished result envelopes: %w", err)
		}
		o.Seq = uint64(seq)
		copy(o.HeaderHash[:], hash)
		list = append(list, &o)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, fmt.Errorf("unpublished result envelopes: %w", err)
	}
	for _, o := range list {
		covers, files, err := db.covered(ctx, o.ID)
		if err != nil {
			return nil, err
		}
		o.Covers, o.Files = covers, files
	}
	return list, nil
}

// covered returns the ids and inbox files of the request envelopes the
// result envelope id answers.
func (db *DB) covered(ctx context.Context, id string) (ids, files []string, err error) {
	rows, err := db.w.QueryContext(ctx, `SELECT id, file FROM ferry_envelopes WHERE result_id = ? ORDER BY rowid`, id)
	if err != nil {
		return nil, nil, fmt.Errorf("envelopes answered by %s: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var eid, file string
		if err := rows.Scan(&eid, &file); err != nil {
			return nil, nil, fmt.Errorf("envelopes answered by %s: %w", id, err)
		}
		ids, files = append(ids, eid), append(files, file)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("envelopes answered by %s: %w", id, err)
	}
	return ids, files, nil
}

// MarkPublished records that the result envelope id is on the medium: it
// drops its stored bytes and marks the request envelopes it answers
// published. It returns the inbox files of those envelopes, which the
// caller may now remove.
func (db *DB) MarkPublished(ctx context.Context, id string) ([]string, error) {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("mark result envelope %s published: %w", id, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `UPDATE ferry_outbox SET state = 'published', data = X'' WHERE id = ?`, id); err != nil {
		return nil, fmt.Errorf("mark result envelope %s published: %w", id, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE ferry_envelopes SET state = 'published' WHERE result_id = ? AND state = 'sealed'`, id); err != nil {
		return nil, fmt.Errorf("mark result envelope %s published: %w", id, err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT file FROM ferry_envelopes WHERE result_id = ?`, id)
	if err != nil {
		return nil, fmt.Errorf("mark result envelope %s published: %w", id, err)
	}
	var files []string
	for rows.Next() {
		var f string
		if err := rows.Scan(&f); err != nil {
			rows.Close()
			return nil, fmt.Errorf("mark result envelope %s published: %w", id, err)
		}
		files = append(files, f)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, fmt.Errorf("mark result envelope %s published: %w", id, err)
	}
	if err := db.audit.Stage(ctx, tx, audit.Entry{Event: audit.EventEnvelopePublished, Envelope: id, Count: int64(len(files))}); err != nil {
		return nil, fmt.Errorf("mark result envelope %s published: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("mark result envelope %s published: commit: %w", id, err)
	}
	return files, nil
}

// Stats counts ledger rows, for logs and tests.
type Stats struct {
	Envelopes   int // request envelopes applied
	Requests    int // request ids recorded
	Unsealed    int // envelopes applied but not sealed
	Unpublished int // result envelopes sealed but not published
	Held        int // write requests waiting for approval
	Undelivered int // decided held requests whose results are not sealed yet
}

// Stats returns the ledger's counts.
func (db *DB) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	err := db.w.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM ferry_envelopes),
		(SELECT count(*) FROM ferry_requests),
		(SELECT count(*) FROM ferry_envelopes WHERE state = 'applied'),
		(SELECT count(*) FROM ferry_outbox WHERE state = 'sealed'),
		(SELECT count(*) FROM ferry_held WHERE state = 'held'),
		(SELECT count(*) FROM ferry_held WHERE state <> 'held' AND result_id IS NULL)`).Scan(
		&s.Envelopes, &s.Requests, &s.Unsealed, &s.Unpublished, &s.Held, &s.Undelivered)
	if err != nil {
		return s, fmt.Errorf("ledger stats: %w", err)
	}
	return s, nil
}

// Health is what the ledger holds that an operator watches. Unlike
// Stats, it reads only partial indexes, so its cost grows with what is
// pending, not with the ledger.
type Health struct {
	Unsealed    int // envelopes applied, results not sealed
	Unpublished int // result envelopes sealed, not published
	Held        int // write requests waiting for approval
}

// Health returns the ledger's Health.
func (db *DB) Health(ctx context.Context) (Health, error) {
	var h Health
	// Each WHERE repeats its partial index's terms, so SQLite uses it.
	// It reads from the read-only pool: it never waits behind an apply.
	err := db.ro.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM ferry_envelopes WHERE state <> 'published' AND state = 'applied'),
		(SELECT count(*) FROM ferry_outbox WHERE state = 'sealed'),
		(SELECT count(*) FROM ferry_held WHERE state = 'held')`).Scan(&h.Unsealed, &h.Unpublished, &h.Held)
	if err != nil {
		return h, fmt.Errorf("ledger health: %w", err)
	}
	return h, nil
}
