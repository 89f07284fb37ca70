package audit

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Cosigning: each zone witnesses the other's log. A zone sends its
// newest checkpoint with a consistency proof from the last checkpoint the
// other zone countersigned ([Log.ProveConsistency]); the other zone
// checks the signature, checks that the new tree contains the old one as
// a prefix, adds its own signature to the note, and keeps it
// ([Log.Witness]). A zone that later rebuilds its history, even signed
// with its own key, cannot produce a tree that contains what the other
// zone countersigned: its log fails `audit verify` against the other
// zone's copies.

// ErrInconsistent is returned by Witness for a checkpoint whose tree does
// not contain, as a prefix, the tree of a checkpoint witnessed before: a
// forked or rewritten log.
var ErrInconsistent = errors.New("audit: checkpoint inconsistent with one witnessed before")

// MaxProofHashes bounds a consistency proof: two hashes per level of a
// tree of at most 2^63 entries.
const MaxProofHashes = 128

// ProveConsistency returns the newest stored checkpoint and the proof
// that its tree contains the tree of size from as a prefix; from 0 (or
// from equal to the checkpoint's size) gives an empty proof.
func (l *Log) ProveConsistency(ctx context.Context, from int64) ([]byte, tlog.TreeProof, error) {
	var size int64
	var msg []byte
	err := l.db.QueryRowContext(ctx, `SELECT size, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1`).Scan(&size, &msg)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, errors.New("prove consistency: no checkpoint yet")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("prove consistency: %w", err)
	}
	if from < 0 || from > size {
		return nil, nil, fmt.Errorf("prove consistency: from size %d, the newest checkpoint is of size %d", from, size)
	}
	if from == 0 || from == size {
		return msg, nil, nil
	}
	p, err := tlog.ProveTree(size, from, hashReader{ctx: ctx, q: l.db})
	if err != nil {
		return nil, nil, fmt.Errorf("prove consistency: %w", err)
	}
	return msg, p, nil
}

// ErrStale is returned by Witness for a checkpoint it cannot check now:
// its proof starts from a size other than the last one witnessed (the
// sender has not yet heard which one that is), or it is older than the
// last one witnessed and was not itself witnessed (an envelope that
// arrived late). Nothing is wrong; a later checkpoint will be witnessed.
var ErrStale = errors.New("audit: checkpoint cannot be checked against the last one witnessed")

// Witness checks a checkpoint of the other zone's log, signed by peer,
// and proof, which must show that its tree contains the tree of size
// from: the last checkpoint of that log witnessed here. It then
// countersigns the checkpoint with this log's key, keeps it, appends an
// audit.witnessed entry to this log in the same transaction, and returns
// the note with both signatures and true. A checkpoint witnessed before
// returns the kept note and false.
//
// It returns ErrInconsistent for a checkpoint that cannot be on the same
// log as those witnessed before: another root at a size already
// witnessed, a proof that fails, or a from larger than the checkpoint
// (the sender's log is smaller than what it says was countersigned). It
// returns ErrStale for one it cannot check now (see ErrStale). The first
// checkpoint of a log seen here is taken as it is.
func (l *Log) Witness(ctx context.Context, peer note.Verifier, msg []byte, from int64, proof tlog.TreeProof) ([]byte, bool, error) {
	origin := peer.Name()
	c, err := OpenCheckpoint(msg, peer, origin)
	if err != nil {
		return nil, false, fmt.Errorf("witness: %w", err)
	}
	if len(proof) > MaxProofHashes {
		return nil, false, fmt.Errorf("witness: a proof of %d hashes", len(proof))
	}
	if from > c.Size {
		return nil, false, fmt.Errorf("witness %s: size %d, smaller than the %d it says was countersigned (truncated): %w",
			origin, c.Size, from, ErrInconsistent)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, false, fmt.Errorf("witness: %w", err)
	}
	defer tx.Rollback()
	var kept []byte
	switch err := tx.QueryRowContext(ctx, `SELECT note FROM audit_witnessed WHERE origin = ? AND size = ?`, origin, c.Size).Scan(&kept); {
	case err == nil:
		old, err := OpenCheckpoint(kept, peer, origin)
		if err != nil {
			return nil, false, fmt.Errorf("witness: the kept checkpoint of size %d: %w", c.Size, err)
		}
		if old.Root != c.Root {
			return nil, false, fmt.Errorf("witness %s at size %d: another root than the one witnessed: %w", origin, c.Size, ErrInconsistent)
		}
		return kept, false, nil
	case !errors.Is(err, sql.ErrNoRows):
		return nil, false, fmt.Errorf("witness: %w", err)
	}
	var lastMsg []byte
	err = tx.QueryRowContext(ctx, `SELECT note FROM audit_witnessed WHERE origin = ? ORDER BY size DESC LIMIT 1`, origin).Scan(&lastMsg)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		// The first checkpoint of this log seen here: nothing to be
		// consistent with.
	case err != nil:
		return nil, false, fmt.Errorf("witness: %w", err)
	default:
		last, err := OpenCheckpoint(lastMsg, peer, origin)
		if err != nil {
			return nil, false, fmt.Errorf("witness: the last kept checkpoint: %w", err)
		}
		switch {
		case c.Size < last.Size:
			return nil, false, fmt.Errorf("witness %s: size %d, older than the %d witnessed: %w", origin, c.Size, last.Size, ErrStale)
		case last.Size == 0:
			// The empty tree is a prefix of every tree.
		case from != last.Size:
			return nil, false, fmt.Errorf("witness %s: a proof from size %d, the last witnessed is %d: %w", origin, from, last.Size, ErrStale)
		default:
			if err := tlog.CheckTree(proof, c.Size, c.Root, last.Size, last.Root); err != nil {
				return nil, false, fmt.Errorf("witness %s: size %d does not contain the %d witnessed (%v): %w", origin, c.Size, last.Size, err, ErrInconsistent)
			}
		}
	}
	n, err := note.Open(msg, note.VerifierList(peer))
	if err != nil {
		return nil, false, fmt.Errorf("witness: %w", err)
	}
	n.UnverifiedSigs = nil // only the log's own signature is carried over
	cosigned, err := note.Sign(n, l.signer)
	if err != nil {
		return nil, false, fmt.Errorf("witness: %w", err)
	}
	now := time.Now()
	body, err := Entry{Time: now, Zone: l.zone, Event: EventWitnessed, Actor: origin, Count: c.Size,
		Detail: "root " + c.Root.String()}.Encode()
	if err != nil {
		return nil, false, err
	}
	if err := l.appendTx(ctx, tx, [][]byte{body}, []int64{now.UnixMilli()}); err != nil {
		return nil, false, fmt.Errorf("witness: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit_witnessed (origin, size, time, note) VALUES (?, ?, ?, ?)`,
		origin, c.Size, now.UnixMilli(), cosigned); err != nil {
		return nil, false, fmt.Errorf("witness: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, false, fmt.Errorf("witness: %w", err)
	}
	l.size++
	return cosigned, true, nil
}

// OpenCosigned checks a checkpoint of this zone's log (own) that the
// other zone (witness) countersigned: both signatures must be there.
func OpenCosigned(msg []byte, own, witness note.Verifier) (Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(own, witness))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("cosigned checkpoint: %w", err)
	}
	var byOwn, byWitness bool
	for _, s := range n.Sigs {
		byOwn = byOwn || s.Name == own.Name() && s.Hash == own.KeyHash()
		byWitness = byWitness || s.Name == witness.Name() && s.Hash == witness.KeyHash()
	}
	if !byOwn || !byWitness {
		return Checkpoint{}, errors.New("cosigned checkpoint: want the signatures of the log and of its witness")
	}
	c, err := ParseCheckpoint(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != own.Name() {
		return Checkpoint{}, fmt.Errorf("cosigned checkpoint: origin %q, want %q", c.Origin, own.Name())
	}
	return c, nil
}

// FormatProof writes a consistency proof as base64 hashes separated by
// spaces, for an envelope field; ParseProof reads it back.
func FormatProof(p tlog.TreeProof) string {
	parts := make([]string, len(p))
	for i, h := range p {
		parts[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	return strings.Join(parts, " ")
}

// ParseProof parses what FormatProof writes, refusing more than
// MaxProofHashes hashes and anything that is not canonical base64 of 32
// bytes.
func ParseProof(s string) (tlog.TreeProof, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, " ")
	if len(parts) > MaxProofHashes {
		return nil, fmt.Errorf("proof: %d hashes, at most %d", len(parts), MaxProofHashes)
	}
	p := make(tlog.TreeProof, len(parts))
	for i, part := range parts {
		h, ok := decodeHash(part)
		if !ok {
			return nil, fmt.Errorf("proof: hash %d is not base64 of %d bytes", i+1, tlog.HashSize)
		}
		p[i] = h
	}
	return p, nil
}

// witnessedQuery selects the kept checkpoints of one log.
const witnessedQuery = `SELECT note FROM audit_witnessed WHERE origin = ? ORDER BY size`

// Witnessed returns the checkpoints of the log named origin that this
// zone witnessed, smallest first: for `audit verify` of that log as
// known checkpoints.
func (l *Log) Witnessed(ctx context.Context, origin string) ([][]byte, error) {
	return readNotes(ctx, l.db, witnessedQuery, origin)
}

// readNotes runs query on db, which selects one column of notes.
func readNotes(ctx context.Context, db *sql.DB, query string, args ...any) ([][]byte, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var msg []byte
		if err := rows.Scan(&msg); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		out = append(out, msg)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return out, nil
}
