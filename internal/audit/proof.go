package audit

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// proofHeader is the first line of a C2SP tlog-proof.
const proofHeader = "c2sp.org/tlog-proof@v1"

// MaxProofSize bounds a proof file VerifyProof reads.
const MaxProofSize = 64 << 10

// Prove returns an inclusion proof of entry idx in the C2SP tlog-proof
// format, against the newest stored checkpoint, with the entry's body as
// the proof's extra data: a self-contained file that [VerifyProof] checks
// offline with the audit public key. The entry must be covered by a
// checkpoint and its body not pruned.
func (l *Log) Prove(ctx context.Context, idx int64) ([]byte, error) {
	return prove(ctx, l.db, idx)
}

// prove makes the inclusion proof of entry idx from the audit database
// db, for [Log.Prove] and [Reader.Prove]: it only reads, so a read-only
// handle without the signing key will do. The newest checkpoint is read
// first; the stored hashes under it never change afterwards, so the
// proof is consistent even while the log grows.
func prove(ctx context.Context, db *sql.DB, idx int64) ([]byte, error) {
	var size int64
	var cp []byte
	err := db.QueryRowContext(ctx, `SELECT size, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1`).Scan(&size, &cp)
	if errors.Is(err, sql.ErrNoRows) || err == nil && idx >= size {
		return nil, fmt.Errorf("prove entry %d: no checkpoint covers it yet", idx)
	}
	if err != nil {
		return nil, fmt.Errorf("prove entry %d: %w", idx, err)
	}
	if idx < 0 {
		return nil, fmt.Errorf("prove entry %d: no such entry", idx)
	}
	var body []byte
	if err := db.QueryRowContext(ctx, `SELECT body FROM audit_entries WHERE idx = ?`, idx).Scan(&body); err != nil {
		return nil, fmt.Errorf("prove entry %d: %w", idx, err)
	}
	if body == nil {
		return nil, fmt.Errorf("prove entry %d: its body was pruned", idx)
	}
	p, err := tlog.ProveRecord(size, idx, hashReader{ctx: ctx, q: db})
	if err != nil {
		return nil, fmt.Errorf("prove entry %d: %w", idx, err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\nextra %s\nindex %d\n", proofHeader, base64.StdEncoding.EncodeToString(body), idx)
	for _, h := range p {
		fmt.Fprintf(&b, "%s\n", base64.StdEncoding.EncodeToString(h[:]))
	}
	b.WriteString("\n")
	b.Write(cp)
	return b.Bytes(), nil
}

// VerifyProof checks an inclusion proof made by [Log.Prove] with the
// log's audit public key v: the checkpoint's signature and origin, and
// that the entry in the proof's extra data is the entry at the proof's
// index in the checkpointed tree. It returns the entry, its index and the
// checkpoint.
func VerifyProof(proof []byte, v note.Verifier) (Entry, int64, Checkpoint, error) {
	fail := func(format string, args ...any) (Entry, int64, Checkpoint, error) {
		return Entry{}, 0, Checkpoint{}, fmt.Errorf("proof: "+format, args...)
	}
	if len(proof) > MaxProofSize {
		return fail("%d bytes, more than %d", len(proof), MaxProofSize)
	}
	head, cp, ok := bytes.Cut(proof, []byte("\n\n"))
	if !ok {
		return fail("no checkpoint after the proof lines")
	}
	lines := strings.Split(string(head), "\n")
	if len(lines) < 3 || lines[0] != proofHeader {
		return fail("not a %s proof", proofHeader)
	}
	extra, ok := strings.CutPrefix(lines[1], "extra ")
	if !ok {
		return fail("no entry (extra line)")
	}
	body, err := base64.StdEncoding.Strict().DecodeString(extra)
	if err != nil {
		return fail("bad extra line: %v", err)
	}
	idxText, ok := strings.CutPrefix(lines[2], "index ")
	idx, err := strconv.ParseInt(idxText, 10, 64)
	if !ok || err != nil || idx < 0 || strconv.FormatInt(idx, 10) != idxText {
		return fail("bad index line %q", lines[2])
	}
	var p tlog.RecordProof
	for i, l := range lines[3:] {
		h, err := base64.StdEncoding.Strict().DecodeString(l)
		if err != nil || len(h) != tlog.HashSize {
			return fail("bad hash on proof line %d", i+1)
		}
		p = append(p, tlog.Hash(h))
	}
	c, err := OpenCheckpoint(cp, v, v.Name())
	if err != nil {
		return fail("%v", err)
	}
	if idx >= c.Size {
		return fail("entry %d is not below the checkpoint's size %d", idx, c.Size)
	}
	if err := tlog.CheckRecord(p, c.Size, c.Root, idx, tlog.RecordHash(body)); err != nil {
		return fail("entry %d is not in the checkpointed tree: %v", idx, err)
	}
	e, err := DecodeEntry(body)
	if err != nil {
		return fail("%v", err)
	}
	return e, idx, c, nil
}
