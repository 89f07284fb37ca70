package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ferrybridge/ferry/internal/sqlitedb"
)

// Reader reads a zone's audit database without changing it and without
// any key: to list its entries and checkpoints and to prove entries. It
// opens the file read-only, so it may read the live log of a running
// agent or an auditor's copy. A Reader is safe for concurrent use.
//
// A Reader checks nothing: what it returns is what the file holds. Only
// [Verify], with the audit public key, says whether that is the log the
// zone wrote.
type Reader struct {
	db   *sql.DB
	file string
}

// BodyError reports an entry whose stored body is not an audit entry: the
// file was altered, or written by something else. [Reader.Entries] stops
// at it; the caller may go on from Index+1.
type BodyError struct {
	Index int64  // the entry's index
	Body  []byte // the stored body, as it is
	Err   error  // why it does not decode
}

func (e *BodyError) Error() string {
	return fmt.Sprintf("entry %d: not an audit entry: %v", e.Index, e.Err)
}

func (e *BodyError) Unwrap() error { return e.Err }

// OpenReader opens the audit database at file read-only. The file must
// exist and be an audit database (its application_id says so).
func OpenReader(ctx context.Context, file string) (*Reader, error) {
	db, err := sqlitedb.Open(ctx, file, sqlitedb.Options{ReadOnly: true, ApplicationID: applicationID})
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	// A database with the audit application id but no log tables (one
	// that failed its first migration) is not readable as a log: say so
	// now rather than at the first query.
	ok, err := hasTables(ctx, db, "audit_entries", "audit_hashes", "audit_checkpoints")
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open audit log %s: %w", file, err)
	}
	if !ok {
		db.Close()
		return nil, fmt.Errorf("open audit log %s: the log's tables are missing", file)
	}
	return &Reader{db: db, file: file}, nil
}

// Close closes the database.
func (r *Reader) Close() error { return r.db.Close() }

// Entries calls fn for each entry from index from on, in index order, at
// most limit of them (limit <= 0: all). An entry whose body was pruned is
// passed with pruned true and only its Time set. Entries stops at the
// first error fn returns and returns it; at a body that does not decode
// it stops with a *[BodyError]. It returns when ctx is done, with ctx's
// error.
func (r *Reader) Entries(ctx context.Context, from, limit int64, fn func(idx int64, e Entry, pruned bool) error) error {
	if from < 0 {
		return fmt.Errorf("audit entries: from %d: must not be negative", from)
	}
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	rows, err := r.db.QueryContext(ctx, `SELECT idx, time, body FROM audit_entries WHERE idx >= ? ORDER BY idx LIMIT ?`, from, limit)
	if err != nil {
		return fmt.Errorf("audit entries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var idx, ms int64
		var body []byte
		if err := rows.Scan(&idx, &ms, &body); err != nil {
			return fmt.Errorf("audit entries: %w", err)
		}
		var e Entry
		pruned := body == nil
		if pruned {
			e.Time = time.UnixMilli(ms).UTC()
		} else if e, err = DecodeEntry(body); err != nil {
			return &BodyError{Index: idx, Body: body, Err: err}
		}
		if err := fn(idx, e, pruned); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit entries: %w", err)
	}
	return nil
}

// Checkpoints returns the stored checkpoint notes, smallest tree first,
// as stored: their signatures are not checked.
func (r *Reader) Checkpoints(ctx context.Context) ([][]byte, error) {
	return readNotes(ctx, r.db, `SELECT note FROM audit_checkpoints ORDER BY size`)
}

// Witnessed returns the checkpoints of the log named origin (the other
// zone's) that this zone countersigned and kept, smallest first, as
// stored: for `audit verify` of that log as known checkpoints. A log
// from before cross-zone witnessing has none.
func (r *Reader) Witnessed(ctx context.Context, origin string) ([][]byte, error) {
	ok, err := hasTables(ctx, r.db, "audit_witnessed")
	if err != nil || !ok {
		return nil, err
	}
	return readNotes(ctx, r.db, witnessedQuery, origin)
}

// Prove returns the inclusion proof of entry idx, as [Log.Prove] does,
// without the signing key: the proof carries the newest stored
// checkpoint, signed when the log wrote it.
func (r *Reader) Prove(ctx context.Context, idx int64) ([]byte, error) {
	p, err := prove(ctx, r.db, idx)
	if errors.Is(err, sql.ErrNoRows) {
		// The entry's row or a hash its proof needs was deleted.
		return nil, fmt.Errorf("prove entry %d: missing from %s (the entry or its hashes were deleted): %w", idx, r.file, err)
	}
	return p, err
}

// hasTables reports whether the database q reads holds every one of the
// tables named: a log from an older version lacks the newer ones.
func hasTables(ctx context.Context, q queryRower, names ...string) (bool, error) {
	for _, name := range names {
		var n int
		if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = ?`, name).Scan(&n); err != nil {
			return false, fmt.Errorf("audit: %w", err)
		}
		if n == 0 {
			return false, nil
		}
	}
	return true, nil
}
