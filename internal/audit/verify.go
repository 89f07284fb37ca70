package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/ferrybridge/ferry/internal/sqlitedb"
)

// Failure is why a log failed verification, naming the first entry or
// checkpoint that failed. Entry and Checkpoint are -1 when the failure is
// not about one.
type Failure struct {
	Entry      int64 // the index of the entry, or -1
	Checkpoint int64 // the size of the checkpoint, or -1
	Msg        string
}

func (f *Failure) Error() string {
	switch {
	case f.Entry >= 0:
		return fmt.Sprintf("entry %d: %s", f.Entry, f.Msg)
	case f.Checkpoint >= 0:
		return fmt.Sprintf("checkpoint at size %d: %s", f.Checkpoint, f.Msg)
	}
	return f.Msg
}

func entryFailure(idx int64, format string, args ...any) error {
	return &Failure{Entry: idx, Checkpoint: -1, Msg: fmt.Sprintf(format, args...)}
}

func checkpointFailure(size int64, format string, args ...any) error {
	return &Failure{Entry: -1, Checkpoint: size, Msg: fmt.Sprintf(format, args...)}
}

// VerifyOptions are what an auditor knows besides the log.
type VerifyOptions struct {
	// Known are signed checkpoints of this log kept elsewhere: the copy
	// the other zone cosigned, or one an auditor noted earlier. Each must
	// carry the log's signature and match the log's tree at its size; a
	// log rebuilt from a forged history, or truncated below it, fails.
	Known [][]byte
}

// Report is what a verification found.
type Report struct {
	Origin      string
	Entries     int64      // entries in the log
	Pruned      int64      // entries whose body was pruned (their hashes remain)
	Checkpoints int        // stored checkpoints, all verified
	Known       int        // known checkpoints, all verified
	Latest      Checkpoint // the newest stored checkpoint (Size 0 if none)
	// Uncommitted counts the entries after the newest checkpoint: sound
	// as far as the hashes go, but no signature covers them yet.
	Uncommitted int64
}

// Verify verifies the audit database at file with the zone's audit
// public key v: every entry against its record hash, every stored hash
// against the tree rebuilt from the entries, every stored and known
// checkpoint's signature and root. It returns a *Failure naming the first
// entry or checkpoint that fails; other errors mean the file could not be
// read. It opens the file read-only and changes nothing.
func Verify(ctx context.Context, file string, v note.Verifier, opts VerifyOptions) (*Report, error) {
	db, err := sqlitedb.Open(ctx, file, sqlitedb.Options{ReadOnly: true, ApplicationID: applicationID})
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", file, err)
	}
	defer db.Close()
	origin := v.Name()
	rep := &Report{Origin: origin}
	r := dbHashReader{ctx: ctx, db: db}

	// Entries, in index order: each one's record hash (recomputed from
	// its body, or the stored one of a pruned body) and the interior
	// hashes it completes must equal what is stored. The hashes an entry
	// builds on were checked with the entries before it.
	rows, err := db.QueryContext(ctx, `SELECT idx, body FROM audit_entries ORDER BY idx`)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", file, err)
	}
	var n int64
	for rows.Next() {
		var idx int64
		var body []byte
		if err := rows.Scan(&idx, &body); err != nil {
			rows.Close()
			return nil, fmt.Errorf("verify %s: %w", file, err)
		}
		if idx != n {
			rows.Close()
			if idx > n {
				return nil, entryFailure(n, "missing: the log goes on at entry %d (deleted)", idx)
			}
			return nil, entryFailure(idx, "out of order")
		}
		var rh tlog.Hash
		if body == nil {
			rep.Pruned++
			hs, err := r.ReadHashes([]int64{tlog.StoredHashIndex(0, idx)})
			if err != nil {
				rows.Close()
				return nil, entryFailure(idx, "pruned, and its record hash is missing: %v", err)
			}
			rh = hs[0]
		} else {
			if _, err := DecodeEntry(body); err != nil {
				rows.Close()
				return nil, entryFailure(idx, "not an audit entry (altered): %v", err)
			}
			rh = tlog.RecordHash(body)
		}
		want, err := tlog.StoredHashesForRecordHash(idx, rh, r)
		if err != nil {
			rows.Close()
			return nil, entryFailure(idx, "the hashes it builds on are missing: %v", err)
		}
		if err := compareStored(r, tlog.StoredHashIndex(0, idx), want); err != nil {
			rows.Close()
			if errors.Is(err, errLevel0) {
				return nil, entryFailure(idx, "altered: its body does not match its record hash")
			}
			return nil, entryFailure(idx, "%v", err)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("verify %s: %w", file, err)
	}
	rows.Close()
	rep.Entries = n
	var extra int64
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_hashes WHERE id >= ?`, tlog.StoredHashCount(n)).Scan(&extra); err != nil {
		return nil, fmt.Errorf("verify %s: %w", file, err)
	}
	if extra > 0 {
		return nil, &Failure{Entry: -1, Checkpoint: -1, Msg: fmt.Sprintf("truncated: %d stored hashes beyond the last of %d entries", extra, n)}
	}

	// Checkpoints: each must be signed by the log's key, name this log,
	// and have the root of the rebuilt tree at its size.
	check := func(size int64, msg []byte) (Checkpoint, error) {
		c, err := OpenCheckpoint(msg, v, origin)
		if err != nil {
			return Checkpoint{}, checkpointFailure(size, "%v (replaced or forged)", err)
		}
		if size >= 0 && c.Size != size {
			return Checkpoint{}, checkpointFailure(size, "holds a checkpoint of size %d (replaced)", c.Size)
		}
		if c.Size > n {
			return Checkpoint{}, checkpointFailure(c.Size, "commits to %d entries, the log holds %d (truncated)", c.Size, n)
		}
		root, err := tlog.TreeHash(c.Size, r)
		if err != nil {
			return Checkpoint{}, checkpointFailure(c.Size, "%v", err)
		}
		if root != c.Root {
			return Checkpoint{}, checkpointFailure(c.Size, "its root does not match the entries (altered, reordered or forked)")
		}
		return c, nil
	}
	crows, err := db.QueryContext(ctx, `SELECT size, note FROM audit_checkpoints ORDER BY size`)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", file, err)
	}
	defer crows.Close()
	for crows.Next() {
		var size int64
		var msg []byte
		if err := crows.Scan(&size, &msg); err != nil {
			return nil, fmt.Errorf("verify %s: %w", file, err)
		}
		c, err := check(size, msg)
		if err != nil {
			return nil, err
		}
		rep.Checkpoints++
		rep.Latest = c
	}
	if err := crows.Err(); err != nil {
		return nil, fmt.Errorf("verify %s: %w", file, err)
	}
	for _, msg := range opts.Known {
		if _, err := check(-1, msg); err != nil {
			var f *Failure
			if errors.As(err, &f) {
				f.Msg = "known checkpoint: " + f.Msg
			}
			return nil, err
		}
		rep.Known++
	}
	rep.Uncommitted = n - rep.Latest.Size
	return rep, nil
}

// errLevel0 reports a record hash that differs from the stored one.
var errLevel0 = errors.New("record hash differs")

// compareStored compares want, the stored hashes from index base on,
// with those in the database.
func compareStored(r tlog.HashReader, base int64, want []tlog.Hash) error {
	ids := make([]int64, len(want))
	for i := range ids {
		ids[i] = base + int64(i)
	}
	got, err := r.ReadHashes(ids)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("stored hashes missing (truncated or deleted): %w", err)
		}
		return err
	}
	for i := range want {
		if got[i] != want[i] {
			if i == 0 {
				return errLevel0
			}
			return fmt.Errorf("stored hash %d does not match the entries (altered)", ids[i])
		}
	}
	return nil
}
