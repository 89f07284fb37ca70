package audit

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"time"

	"github.com/ferrybridge/ferry/internal/sqlitedb"
)

// The outbox: a component records an audit entry in its own database, in
// the transaction of the decision the entry records ([Stage]), so the
// decision and its record commit together or not at all, and the request
// path pays one insert, no hashing and no second fsync. The zone's log
// takes staged entries in batches ([Log.Drain], [Log.Run]): it appends
// them and notes the last staged id it took, in one transaction of
// audit.db, and only then deletes them from the component's database. A
// drain interrupted between the two finds the watermark and takes nothing
// twice.

//go:embed outbox/*.sql
var outboxMigrations embed.FS

// outboxComponent names the outbox schema in a component's ferry_schema.
const outboxComponent = "audit_outbox"

// MigrateOutbox adds the audit outbox table to db, a component's own
// database (the DMZ spool, the intranet's ledger), if it is not there.
func MigrateOutbox(ctx context.Context, db *sql.DB) error {
	sub, err := fs.Sub(outboxMigrations, "outbox")
	if err != nil {
		return err
	}
	if err := sqlitedb.Migrate(ctx, db, outboxComponent, sub); err != nil {
		return fmt.Errorf("audit outbox: %w", err)
	}
	return nil
}

// Execer is a transaction or a database handle: what [Stage] writes with.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// Stage records entries in the outbox of the database x writes to (whose
// schema [MigrateOutbox] added). Pass the transaction of the decision the
// entries record: they reach the log if and only if it commits.
func Stage(ctx context.Context, x Execer, entries ...Entry) error {
	for len(entries) > 0 {
		chunk := entries[:min(len(entries), insertChunk)]
		entries = entries[len(chunk):]
		args := make([]any, 0, 2*len(chunk))
		for _, e := range chunk {
			body, err := e.Encode()
			if err != nil {
				return err
			}
			args = append(args, e.Time.UnixMilli(), body)
		}
		if _, err := x.ExecContext(ctx, `INSERT INTO audit_outbox (time, body) VALUES `+valueTuples(len(chunk), 2), args...); err != nil {
			return fmt.Errorf("audit stage: %w", err)
		}
	}
	return nil
}

// insertChunk is the most rows one INSERT statement carries: a batch in
// one statement is one call into SQLite instead of one per row, and
// three values a row stay far below SQLite's limit of bound variables.
const insertChunk = 500

// valueTuples returns "(?, ?), (?, ?)" for n rows of k values.
func valueTuples(n, k int) string {
	tuple := "(?" + strings.Repeat(", ?", k-1) + ")"
	var b strings.Builder
	b.Grow(n * (len(tuple) + 2))
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(tuple)
	}
	return b.String()
}

// DrainBatch is the most entries one drain takes from one outbox.
const DrainBatch = 4096

// Drain takes up to DrainBatch staged entries from the outbox of src,
// named source in the log (a stable name: the log keeps its watermark
// under it), appends them in staging order, and deletes them from src. It
// returns how many it appended.
func (l *Log) Drain(ctx context.Context, source string, src *sql.DB) (int, error) {
	return l.drain(ctx, source, src, src)
}

// drain is Drain reading the outbox through read, a handle on the same
// database as src that sees every committed transaction.
func (l *Log) drain(ctx context.Context, source string, src, read *sql.DB) (int, error) {
	var last int64
	err := l.db.QueryRowContext(ctx, `SELECT last_id FROM audit_sources WHERE source = ?`, source).Scan(&last)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("audit drain %s: %w", source, err)
	}
	// What an interrupted drain appended but did not delete.
	if _, err := src.ExecContext(ctx, `DELETE FROM audit_outbox WHERE id <= ?`, last); err != nil {
		return 0, fmt.Errorf("audit drain %s: %w", source, err)
	}
	rows, err := read.QueryContext(ctx, `SELECT id, time, body FROM audit_outbox WHERE id > ? ORDER BY id LIMIT ?`, last, DrainBatch)
	if err != nil {
		return 0, fmt.Errorf("audit drain %s: %w", source, err)
	}
	var bodies [][]byte
	var times []int64
	for rows.Next() {
		var body []byte
		var t int64
		if err := rows.Scan(&last, &t, &body); err != nil {
			rows.Close()
			return 0, fmt.Errorf("audit drain %s: %w", source, err)
		}
		bodies, times = append(bodies, body), append(times, t)
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("audit drain %s: %w", source, err)
	}
	rows.Close()
	if len(bodies) == 0 {
		return 0, nil
	}
	_, err = l.appendBodies(ctx, bodies, times, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO audit_sources (source, last_id) VALUES (?, ?)
			ON CONFLICT (source) DO UPDATE SET last_id = excluded.last_id`, source, last)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("audit drain %s: %w", source, err)
	}
	if _, err := src.ExecContext(ctx, `DELETE FROM audit_outbox WHERE id <= ?`, last); err != nil {
		// Appended all the same; the next drain deletes them.
		return len(bodies), fmt.Errorf("audit drain %s: delete what was taken: %w", source, err)
	}
	return len(bodies), nil
}

// Source is a database whose outbox a Log drains.
type Source struct {
	Name string // stable across restarts: the log's watermark is kept under it
	DB   *sql.DB
	// Read, if set, is a read-only handle on the same database: the
	// drain reads the outbox through it, so that reading thousands of
	// entries does not hold DB's writer from the transactions that
	// stage them. Only the deletes go through DB.
	Read *sql.DB
}

// RunConfig says how often Run drains and signs.
type RunConfig struct {
	Sources    []Source
	Drain      time.Duration // how often to drain every source; 0: 1s
	Checkpoint time.Duration // how often to sign a checkpoint if the log grew; 0: 10s
	// Journal is the zone's admin journal (JournalFile in its key
	// directory), taken in at every drain; "" for none.
	Journal string
	// Retention is how long entry bodies are kept: Run prunes older ones
	// at start and once a day. 0 keeps them forever; otherwise it must be
	// at least MinRetention.
	Retention time.Duration
	Logger    *slog.Logger // nil: slog.Default()
}

// Run drains the sources (and takes in the admin journal) and signs a
// checkpoint at once, then drains every cfg.Drain, signs every
// cfg.Checkpoint and prunes daily until ctx ends; then it
// drains and signs once more (with a few seconds' grace) and returns
// ctx.Err(). Failures are logged and retried at the next tick: an outbox
// keeps its entries until they are in the log.
func (l *Log) Run(ctx context.Context, cfg RunConfig) error {
	if cfg.Retention != 0 && cfg.Retention < MinRetention {
		return fmt.Errorf("audit log: retention %v, less than the %v the rules demand", cfg.Retention, MinRetention)
	}
	if cfg.Drain <= 0 {
		cfg.Drain = time.Second
	}
	if cfg.Checkpoint <= 0 {
		cfg.Checkpoint = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	var journalErr string
	drainAll := func(ctx context.Context) {
		for _, s := range cfg.Sources {
			for {
				read := s.Read
				if read == nil {
					read = s.DB
				}
				n, err := l.drain(ctx, s.Name, s.DB, read)
				if err != nil {
					log.Error("audit drain failed", slog.String("source", s.Name), slog.String("error", err.Error()))
					break
				}
				if n < DrainBatch {
					break
				}
			}
		}
		if cfg.Journal != "" {
			// Said once for as long as the same error lasts: the journal
			// is read every drain.
			_, err := l.IngestJournal(ctx, cfg.Journal)
			switch {
			case err != nil && err.Error() != journalErr:
				log.Error("audit admin journal failed", slog.String("error", err.Error()))
				journalErr = err.Error()
			case err == nil && journalErr != "":
				log.Info("audit admin journal read again")
				journalErr = ""
			}
		}
	}
	prune := func(ctx context.Context) {
		if cfg.Retention == 0 {
			return
		}
		n, err := l.Prune(ctx, time.Now().Add(-cfg.Retention))
		if err != nil {
			log.Error("audit prune failed", slog.String("error", err.Error()))
		} else if n > 0 {
			log.Info("audit entries pruned", slog.Int64("entries", n), slog.Duration("retention", cfg.Retention))
		}
	}
	sign := func(ctx context.Context) {
		if _, err := l.Checkpoint(ctx); err != nil {
			log.Error("audit checkpoint failed", slog.String("error", err.Error()))
		}
	}
	// A checkpoint at start commits to what the log holds, and is what
	// the first envelope carries to the other zone to countersign.
	drainAll(ctx)
	sign(ctx)
	prune(ctx)
	drain := time.NewTicker(cfg.Drain)
	defer drain.Stop()
	daily := time.NewTicker(24 * time.Hour)
	defer daily.Stop()
	checkpoint := time.NewTicker(cfg.Checkpoint)
	defer checkpoint.Stop()
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			drainAll(final)
			sign(final)
			cancel()
			return ctx.Err()
		case <-drain.C:
			drainAll(ctx)
		case <-checkpoint.C:
			sign(ctx)
		case <-daily.C:
			prune(ctx)
		}
	}
}

// Stager is how a component records its decisions: entries of one zone,
// staged in the component's own database, subjects and parameters hashed
// with the zone's key. A nil *Stager stages nothing and hashes nothing,
// so a component without auditing needs no other test.
type Stager struct {
	zone string
	hash *Hasher
	db   *sql.DB
}

// NewStager adds the outbox to db (see [MigrateOutbox]) and returns a
// Stager for zone.
func NewStager(ctx context.Context, db *sql.DB, zone string, h *Hasher) (*Stager, error) {
	if err := MigrateOutbox(ctx, db); err != nil {
		return nil, err
	}
	return &Stager{zone: zone, hash: h, db: db}, nil
}

// Stage stages entries with x, the transaction of the decision they
// record, filling in the zone and, where missing, the time.
func (s *Stager) Stage(ctx context.Context, x Execer, entries ...Entry) error {
	if s == nil || len(entries) == 0 {
		return nil
	}
	now := time.Now()
	for i := range entries {
		entries[i].Zone = s.zone
		if entries[i].Time.IsZero() {
			entries[i].Time = now
		}
	}
	return Stage(ctx, x, entries...)
}

// Record stages entries that no other transaction of the component
// carries, in one transaction of their own.
func (s *Stager) Record(ctx context.Context, entries ...Entry) error {
	if s == nil || len(entries) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("audit record: %w", err)
	}
	defer tx.Rollback()
	if err := s.Stage(ctx, tx, entries...); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("audit record: %w", err)
	}
	return nil
}

// Subject returns the keyed hash of a subject; "" from a nil Stager.
func (s *Stager) Subject(id string) string {
	if s == nil || s.hash == nil {
		return ""
	}
	return s.hash.Subject(id)
}

// Params returns the keyed hash of parameters; "" from a nil Stager.
func (s *Stager) Params(canonical []byte) string {
	if s == nil || s.hash == nil {
		return ""
	}
	return s.hash.Params(canonical)
}
