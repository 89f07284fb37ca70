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
	// Witness is the other zone's audit key. With it, the countersigned
	// copies of this log's checkpoints that the other zone sent back must
	// carry its signature too, and the checkpoints of the other zone's
	// log kept here must carry both zones' signatures. Without it, the
	// copies sent back are checked against this log's key only and the
	// kept ones are counted, not checked.
	Witness note.Verifier
}

// Report is what a verification found.
type Report struct {
	Origin      string
	Entries     int64 // entries in the log
	Pruned      int64 // entries whose body was pruned (their hashes remain)
	Checkpoints int   // stored checkpoints, all verified
	Known       int   // known checkpoints, all verified
	// Cosigned counts this log's checkpoints countersigned by the other
	// zone and sent back, all verified (their witness signature only
	// with VerifyOptions.Witness).
	Cosigned int
	// Witnessed counts the other zone's checkpoints countersigned here,
	// verified only with VerifyOptions.Witness.
	Witnessed int
	Latest    Checkpoint // the newest stored checkpoint (Size 0 if none)
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
	// One read transaction: a copy taken from a live agent is read as one
	// snapshot, however the agent writes meanwhile.
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", file, err)
	}
	defer tx.Rollback()
	r := hashReader{ctx: ctx, q: tx}

	// Entries, in index order: each one's record hash (recomputed from
	// its body, or the stored one of a pruned body) and the interior
	// hashes it completes must equal what is stored, which is read in
	// one pass in id order alongside. The hashes an entry builds on were
	// checked with the entries before it and are kept in memory: the
	// frontier of the tree so far, a few dozen hashes.
	rows, err := tx.QueryContext(ctx, `SELECT idx, body FROM audit_entries ORDER BY idx`)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", file, err)
	}
	defer rows.Close()
	stored, err := tx.QueryContext(ctx, `SELECT id, hash FROM audit_hashes ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", file, err)
	}
	defer stored.Close()
	var nextID int64 // the id the stored pass is at
	nextStored := func() (tlog.Hash, error) {
		var h tlog.Hash
		if !stored.Next() {
			if err := stored.Err(); err != nil {
				return h, err
			}
			return h, fmt.Errorf("stored hash %d missing (truncated or deleted)", nextID)
		}
		var id int64
		var b []byte
		if err := stored.Scan(&id, &b); err != nil {
			return h, err
		}
		if id != nextID {
			return h, fmt.Errorf("stored hash %d missing (deleted)", nextID)
		}
		if len(b) != tlog.HashSize {
			return h, fmt.Errorf("stored hash %d has %d bytes (altered)", id, len(b))
		}
		nextID++
		return tlog.Hash(b), nil
	}
	frontier := map[int64]tlog.Hash{}
	fr := tlog.HashReaderFunc(func(ids []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(ids))
		for i, id := range ids {
			h, ok := frontier[id]
			if !ok {
				return nil, fmt.Errorf("hash %d is not on the frontier", id)
			}
			out[i] = h
		}
		return out, nil
	})
	var n int64
	for rows.Next() {
		var idx int64
		var body []byte
		if err := rows.Scan(&idx, &body); err != nil {
			return nil, fmt.Errorf("verify %s: %w", file, err)
		}
		if idx != n {
			if idx > n {
				return nil, entryFailure(n, "missing: the log goes on at entry %d (deleted)", idx)
			}
			return nil, entryFailure(idx, "out of order")
		}
		level0, err := nextStored()
		if err != nil {
			return nil, entryFailure(idx, "%v", err)
		}
		rh := level0
		if body == nil {
			rep.Pruned++ // its stored record hash stands for it
		} else {
			if _, err := DecodeEntry(body); err != nil {
				return nil, entryFailure(idx, "not an audit entry (altered): %v", err)
			}
			rh = tlog.RecordHash(body)
			if rh != level0 {
				return nil, entryFailure(idx, "altered: its body does not match its record hash")
			}
		}
		want, err := tlog.StoredHashesForRecordHash(idx, rh, fr)
		if err != nil {
			return nil, entryFailure(idx, "%v", err)
		}
		base := tlog.StoredHashIndex(0, idx)
		frontier[base] = want[0]
		for j := 1; j < len(want); j++ {
			got, err := nextStored()
			if err != nil {
				return nil, entryFailure(idx, "%v", err)
			}
			if got != want[j] {
				return nil, entryFailure(idx, "stored hash %d does not match the entries (altered)", base+int64(j))
			}
			frontier[base+int64(j)] = want[j]
		}
		frontier = keepFrontier(frontier, idx+1)
		n++
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("verify %s: %w", file, err)
	}
	rep.Entries = n
	var extra int64
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_hashes WHERE id >= ?`, tlog.StoredHashCount(n)).Scan(&extra); err != nil {
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
	crows, err := tx.QueryContext(ctx, `SELECT size, note FROM audit_checkpoints ORDER BY size`)
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
	if err := verifyCosigning(ctx, tx, v, opts.Witness, check, rep); err != nil {
		return nil, err
	}
	rep.Uncommitted = n - rep.Latest.Size
	return rep, nil
}

// verifyCosigning checks the countersigned copies of the log's
// checkpoints (with check, and the witness's signature when witness is
// not nil) and the other zone's checkpoints kept (both signatures, when
// witness is not nil), counting them in rep.
func verifyCosigning(ctx context.Context, tx *sql.Tx, v, witness note.Verifier,
	check func(int64, []byte) (Checkpoint, error), rep *Report) error {
	ok, err := hasTables(ctx, tx, "audit_cosigned", "audit_witnessed")
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if !ok {
		return nil // a log from before cross-zone witnessing
	}
	each := func(query string, fn func(size int64, msg []byte) error) error {
		rows, err := tx.QueryContext(ctx, query)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var size int64
			var msg []byte
			if err := rows.Scan(&size, &msg); err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			if err := fn(size, msg); err != nil {
				return err
			}
		}
		return rows.Err()
	}
	err = each(`SELECT size, note FROM audit_cosigned ORDER BY size`, func(size int64, msg []byte) error {
		if _, err := check(size, msg); err != nil {
			var f *Failure
			if errors.As(err, &f) {
				f.Msg = "countersigned copy: " + f.Msg
			}
			return err
		}
		if witness != nil {
			if _, err := OpenCosigned(msg, v, witness); err != nil {
				return checkpointFailure(size, "countersigned copy: %v", err)
			}
		}
		rep.Cosigned++
		return nil
	})
	if err != nil {
		return err
	}
	return each(`SELECT size, note FROM audit_witnessed ORDER BY origin, size`, func(size int64, msg []byte) error {
		if witness != nil {
			c, err := OpenCosigned(msg, witness, v)
			if err != nil || c.Size != size {
				return &Failure{Entry: -1, Checkpoint: -1,
					Msg: fmt.Sprintf("the other zone's checkpoint of size %d kept here: not signed by both zones (%v)", size, err)}
			}
		}
		rep.Witnessed++
		return nil
	})
}

// keepFrontier keeps, of the hashes in f, those of the complete subtrees
// of a tree of size entries: what the next entry's hashes build on and
// what the tree's root is made of.
func keepFrontier(f map[int64]tlog.Hash, size int64) map[int64]tlog.Hash {
	out := make(map[int64]tlog.Hash, 64)
	for level := 0; level < 63 && size>>level > 0; level++ {
		if size>>level&1 == 1 {
			id := tlog.StoredHashIndex(level, size>>level-1)
			if h, ok := f[id]; ok {
				out[id] = h
			}
		}
	}
	return out
}
