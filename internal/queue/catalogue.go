package queue

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrNoCatalogue is returned by Spool.Catalogue when no catalogue is
// stored.
var ErrNoCatalogue = errors.New("queue: no catalogue stored")

// Catalogue is the intranet's operation catalogue as the spool keeps it.
// The spool does not interpret Data; the DMZ parses it before storing it.
type Catalogue struct {
	Data json.RawMessage // the JSON of policy.Catalogue, as it arrived
	// Seq is the sequence number, on the results channel, of the envelope
	// that carried it; a catalogue replaces the stored one only with a
	// higher Seq.
	Seq      uint64
	Received time.Time // when it was stored
}

// Catalogue returns the stored catalogue, or ErrNoCatalogue.
func (s *Spool) Catalogue(ctx context.Context) (*Catalogue, error) {
	var (
		c             Catalogue
		data          []byte
		seq, received int64
	)
	err := s.r.QueryRowContext(ctx, `SELECT data, seq, received FROM catalogue WHERE id = 1`).Scan(&data, &seq, &received)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, ErrNoCatalogue
	case err != nil:
		return nil, fmt.Errorf("read catalogue: %w", err)
	}
	c.Data, c.Seq, c.Received = json.RawMessage(data), uint64(seq), time.UnixMilli(received).UTC()
	return &c, nil
}

// StoreCatalogue stores c unless the stored catalogue has the same or a
// higher Seq; it reports whether it stored c. ApplyResults does the same
// in the transaction of a results envelope (ReceivedEnvelope.Catalogue).
func (s *Spool) StoreCatalogue(ctx context.Context, c *Catalogue) (bool, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("store catalogue: %w", err)
	}
	defer tx.Rollback()
	stored, err := storeCatalogue(ctx, tx, c)
	if err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("store catalogue: commit: %w", err)
	}
	return stored, nil
}

// storeCatalogue is StoreCatalogue within tx.
func storeCatalogue(ctx context.Context, tx *sql.Tx, c *Catalogue) (bool, error) {
	if c.Seq < 1 || c.Seq >= math.MaxInt64 {
		return false, fmt.Errorf("store catalogue: sequence number %d out of range", c.Seq)
	}
	if len(c.Data) == 0 {
		return false, errors.New("store catalogue: no data")
	}
	// The upsert's WHERE leaves a stored catalogue with the same or a
	// higher seq in place; then no row changes.
	n, err := affected(tx.ExecContext(ctx, `INSERT INTO catalogue (id, data, seq, received) VALUES (1, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET data = excluded.data, seq = excluded.seq, received = excluded.received
		WHERE excluded.seq > catalogue.seq`, []byte(c.Data), int64(c.Seq), ms(c.Received)))
	if err != nil {
		return false, fmt.Errorf("store catalogue: %w", err)
	}
	return n == 1, nil
}
