package audit

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/ferrybridge/ferry/internal/sqlitedb"
)

//go:embed sql/*.sql
var migrations embed.FS

// component names the log's schema in ferry_schema.
const component = "audit"

// applicationID marks an audit database (PRAGMA application_id: "FYAU").
const applicationID = 0x46594155

// FileName is the audit database's name in a zone's state directory.
const FileName = "audit.db"

// MinRetention is the shortest time entry bodies are kept: the operating
// rules ask for six months.
const MinRetention = 180 * 24 * time.Hour

// Log is a zone's audit log, open for appending. It is safe for
// concurrent use; appends are serialized.
type Log struct {
	db     *sql.DB
	zone   string
	origin string
	signer note.Signer

	mu     sync.Mutex
	size   int64  // entries in the log
	latest []byte // the newest checkpoint, nil before the first
}

// OpenLog opens (creating if needed) the audit database at file for the
// zone, signing checkpoints with signer, whose name must be the log's
// origin ([Origin] of zone): a checkpoint names its log twice, in its
// first line and in its signature.
func OpenLog(ctx context.Context, file, zone string, signer note.Signer) (*Log, error) {
	origin := Origin(zone)
	if signer == nil || signer.Name() != origin {
		return nil, fmt.Errorf("open audit log: the audit key must be named %q", origin)
	}
	sub, err := fs.Sub(migrations, "sql")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	db, err := sqlitedb.Open(ctx, file, sqlitedb.Options{ApplicationID: applicationID, Component: component, Migrations: sub})
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	l := &Log{db: db, zone: zone, origin: origin, signer: signer}
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_entries`).Scan(&l.size); err != nil {
		db.Close()
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	err = db.QueryRowContext(ctx, `SELECT note FROM audit_checkpoints ORDER BY size DESC LIMIT 1`).Scan(&l.latest)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		db.Close()
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	return l, nil
}

// Close closes the database.
func (l *Log) Close() error { return l.db.Close() }

// Origin returns the log's origin.
func (l *Log) Origin() string { return l.origin }

// Size returns the number of entries in the log.
func (l *Log) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}

// Append appends entries to the log in one transaction and returns the
// index of the first. Either all are appended, durably, or none.
func (l *Log) Append(ctx context.Context, entries ...Entry) (int64, error) {
	bodies := make([][]byte, len(entries))
	times := make([]int64, len(entries))
	for i, e := range entries {
		b, err := e.Encode()
		if err != nil {
			return 0, err
		}
		bodies[i], times[i] = b, e.Time.UnixMilli()
	}
	return l.appendBodies(ctx, bodies, times, nil)
}

// appendBodies appends encoded entries in one transaction, running also
// (if not nil) in it, and returns the index of the first.
func (l *Log) appendBodies(ctx context.Context, bodies [][]byte, times []int64, also func(*sql.Tx) error) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	first := l.size
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("audit append: %w", err)
	}
	defer tx.Rollback()
	if err := l.appendTx(ctx, tx, bodies, times); err != nil {
		return 0, err
	}
	if also != nil {
		if err := also(tx); err != nil {
			return 0, fmt.Errorf("audit append: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("audit append: %w", err)
	}
	l.size += int64(len(bodies))
	return first, nil
}

// appendTx writes encoded entries after the l.size already in the log,
// in tx; the caller holds l.mu and adds them to l.size once tx commits.
func (l *Log) appendTx(ctx context.Context, tx *sql.Tx, bodies [][]byte, times []int64) error {
	first := l.size
	// The hashes a new entry builds on are mostly ones this batch just
	// made: kept here, they are not read back. Only the first entries of
	// a batch read the tree's frontier from the database.
	written := make(map[int64]tlog.Hash, 2*len(bodies))
	stored := hashReader{ctx: ctx, q: tx}
	r := tlog.HashReaderFunc(func(ids []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(ids))
		for i, id := range ids {
			h, ok := written[id]
			if !ok {
				hs, err := stored.ReadHashes([]int64{id})
				if err != nil {
					return nil, err
				}
				h = hs[0]
			}
			out[i] = h
		}
		return out, nil
	})
	// Compute every hash first, then write the batch in a few
	// multi-row statements.
	var hashArgs, entryArgs []any
	for i, body := range bodies {
		idx := first + int64(i)
		hashes, err := tlog.StoredHashes(idx, body, r)
		if err != nil {
			return fmt.Errorf("audit append: entry %d: %w", idx, err)
		}
		base := tlog.StoredHashIndex(0, idx)
		for j, h := range hashes {
			written[base+int64(j)] = h
			hashArgs = append(hashArgs, base+int64(j), h[:])
		}
		entryArgs = append(entryArgs, idx, times[i], body)
	}
	if err := insertRows(ctx, tx, `INSERT INTO audit_hashes (id, hash) VALUES `, 2, hashArgs); err != nil {
		return fmt.Errorf("audit append: %w", err)
	}
	if err := insertRows(ctx, tx, `INSERT INTO audit_entries (idx, time, body) VALUES `, 3, entryArgs); err != nil {
		return fmt.Errorf("audit append: %w", err)
	}
	return nil
}

// Checkpoint signs the tree as it stands and stores the checkpoint,
// unless one for this size exists; it returns the signed note.
func (l *Log) Checkpoint(ctx context.Context) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var stored []byte
	err := l.db.QueryRowContext(ctx, `SELECT note FROM audit_checkpoints WHERE size = ?`, l.size).Scan(&stored)
	if err == nil {
		return stored, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("audit checkpoint: %w", err)
	}
	root, err := tlog.TreeHash(l.size, hashReader{ctx: ctx, q: l.db})
	if err != nil {
		return nil, fmt.Errorf("audit checkpoint: %w", err)
	}
	msg, err := signCheckpoint(Checkpoint{Origin: l.origin, Size: l.size, Root: root}, l.signer)
	if err != nil {
		return nil, err
	}
	if _, err := l.db.ExecContext(ctx, `INSERT INTO audit_checkpoints (size, time, note) VALUES (?, ?, ?)`,
		l.size, time.Now().UnixMilli(), msg); err != nil {
		return nil, fmt.Errorf("audit checkpoint: %w", err)
	}
	l.latest = msg
	return msg, nil
}

// LatestCheckpoint returns the newest stored checkpoint note, or nil if
// there is none. The log keeps it in memory: an agent asks at every
// envelope it seals. The caller must not change it.
func (l *Log) LatestCheckpoint() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.latest
}

// Prune drops the bodies of entries older than before, keeping their
// hashes, so the tree and every checkpoint stay verifiable. before must
// be at least MinRetention ago. When it drops any, it appends an
// audit.pruned entry saying how many and up to when, in the same
// transaction. It returns how many bodies it dropped.
func (l *Log) Prune(ctx context.Context, before time.Time) (int64, error) {
	if time.Since(before) < MinRetention {
		return 0, fmt.Errorf("audit prune: entries must be kept at least %v; %v is too recent", MinRetention, before.UTC().Format(time.RFC3339))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("audit prune: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE audit_entries SET body = NULL WHERE time < ? AND body IS NOT NULL`, before.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("audit prune: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil || n == 0 {
		return 0, err
	}
	now := time.Now()
	body, err := Entry{Time: now, Zone: l.zone, Event: EventPruned, Actor: "agent", Count: n,
		Detail: "bodies of entries before " + before.UTC().Format(time.RFC3339) + " dropped; their hashes remain"}.Encode()
	if err != nil {
		return 0, err
	}
	if err := l.appendTx(ctx, tx, [][]byte{body}, []int64{now.UnixMilli()}); err != nil {
		return 0, fmt.Errorf("audit prune: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("audit prune: %w", err)
	}
	l.size++
	return n, nil
}

// insertRows runs insert (ending in "VALUES ") over args, k values a row,
// insertChunk rows a statement.
func insertRows(ctx context.Context, tx *sql.Tx, insert string, k int, args []any) error {
	for len(args) > 0 {
		n := min(len(args)/k, insertChunk)
		if _, err := tx.ExecContext(ctx, insert+valueTuples(n, k), args[:n*k]...); err != nil {
			return err
		}
		args = args[n*k:]
	}
	return nil
}

// queryRower is a database or a transaction: what stored hashes are read
// through.
type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// hashReader reads stored hashes through q, one query each.
type hashReader struct {
	ctx context.Context
	q   queryRower
}

func (r hashReader) ReadHashes(ids []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(ids))
	for i, id := range ids {
		var b []byte
		if err := r.q.QueryRowContext(r.ctx, `SELECT hash FROM audit_hashes WHERE id = ?`, id).Scan(&b); err != nil {
			return nil, fmt.Errorf("read stored hash %d: %w", id, err)
		}
		if len(b) != tlog.HashSize {
			return nil, fmt.Errorf("stored hash %d has %d bytes", id, len(b))
		}
		copy(out[i][:], b)
	}
	return out, nil
}

// OpenZone opens a zone's audit log as an agent does: it makes the Hasher
// of the zone's HMAC key, hands it to enable (which turns on the staging
// of the component whose outbox the log drains, such as
// queue.Spool.EnableAudit), and opens the log at file, signing with
// signer.
func OpenZone(ctx context.Context, file, zone string, signer note.Signer, hmacKey []byte,
	enable func(ctx context.Context, zone string, h *Hasher) error) (*Log, error) {
	h, err := NewHasher(hmacKey)
	if err != nil {
		return nil, err
	}
	if err := enable(ctx, zone, h); err != nil {
		return nil, err
	}
	return OpenLog(ctx, file, zone, signer)
}
