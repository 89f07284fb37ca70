package audit

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/ferrybridge/ferry/internal/sqlitedb"
)

// testKeys returns a fresh signer and verifier for zone's audit log.
func testKeys(t testing.TB, zone string) (note.Signer, note.Verifier) {
	t.Helper()
	return keysFrom(t, zone, rand.Reader)
}

// keysFrom returns a signer and verifier for zone's audit log made with
// randomness from r.
func keysFrom(t testing.TB, zone string, r io.Reader) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(r, Origin(zone))
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

// entry returns the i-th test entry.
func entry(i int) Entry {
	return Entry{
		Time: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second),
		Zone: "dmz", Event: EventRequestAccepted, Actor: "app-backend",
		Request: fmt.Sprintf("%032x", i), Operation: "violations.query", Decision: "accepted",
	}
}

// newTestLog appends n entries in batches of up to 7, signing a
// checkpoint after every batch that ends at a multiple of 20 and at the
// end, and returns the log and its file.
func newTestLog(t *testing.T, n int) (*Log, string, note.Verifier) {
	t.Helper()
	s, v := testKeys(t, "dmz")
	file := filepath.Join(t.TempDir(), FileName)
	l, err := OpenLog(context.Background(), file, "dmz", s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	appendN(t, l, 0, n)
	if _, err := l.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	return l, file, v
}

func appendN(t *testing.T, l *Log, from, n int) {
	t.Helper()
	for i := from; i < from+n; {
		k := min(7, from+n-i)
		var batch []Entry
		for j := range k {
			batch = append(batch, entry(i+j))
		}
		first, err := l.Append(context.Background(), batch...)
		if err != nil {
			t.Fatal(err)
		}
		if first != int64(i) {
			t.Fatalf("Append returned first index %d, want %d", first, i)
		}
		i += k
		if i%20 < k {
			if _, err := l.Checkpoint(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// tamper runs stmt (with args) on the database file directly, as someone
// with write access to the host would.
func tamper(t *testing.T, file string, stmts ...string) {
	t.Helper()
	db, err := sqlitedb.Open(context.Background(), file, sqlitedb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func TestLog_Verify(t *testing.T) {
	l, file, v := newTestLog(t, 100)
	rep, err := Verify(context.Background(), file, v, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != 100 || rep.Latest.Size != 100 || rep.Checkpoints < 5 || rep.Uncommitted != 0 || rep.Origin != "ferry.audit/dmz" {
		t.Fatalf("report %+v", rep)
	}
	// Entries after the newest checkpoint are counted, not refused.
	if _, err := l.Append(context.Background(), entry(100)); err != nil {
		t.Fatal(err)
	}
	if rep, err = Verify(context.Background(), file, v, VerifyOptions{}); err != nil || rep.Uncommitted != 1 {
		t.Fatalf("Verify with an entry after the checkpoint: %+v, %v", rep, err)
	}
	// A checkpoint is signed once per size.
	a, _ := l.Checkpoint(context.Background())
	b, _ := l.Checkpoint(context.Background())
	if string(a) != string(b) {
		t.Error("two checkpoints of one size differ")
	}
	// Another zone's key verifies nothing.
	_, other := testKeys(t, "intranet")
	if _, err := Verify(context.Background(), file, other, VerifyOptions{}); err == nil {
		t.Error("the other zone's key verified this log")
	}
}

// TestVerify_Tampering: each kind of tampering is caught, and the failure
// names where.
func TestVerify_Tampering(t *testing.T) {
	for _, tc := range []struct {
		name      string
		stmts     []string
		entry, cp int64 // the Failure's Entry and Checkpoint
		msg       string
	}{
		{"one byte changed", []string{`UPDATE audit_entries SET body = CAST(replace(CAST(body AS TEXT), 'violations', 'violationz') AS BLOB) WHERE idx = 37`},
			37, -1, "altered"},
		{"entry deleted", []string{`DELETE FROM audit_entries WHERE idx = 50`}, 50, -1, "missing"},
		{"entries reordered", []string{
			`UPDATE audit_entries SET body = (SELECT body FROM audit_entries WHERE idx = 11) WHERE idx = 10`}, 10, -1, "altered"},
		{"interior hash changed", []string{`UPDATE audit_hashes SET hash = zeroblob(32) WHERE id = 5`}, 3, -1, "stored hash 5"},
		{"truncated", []string{`DELETE FROM audit_entries WHERE idx >= 90`}, -1, -1, "truncated"},
		{"truncated with its hashes", []string{`DELETE FROM audit_entries WHERE idx >= 90`, `DELETE FROM audit_hashes WHERE id >= 176`},
			-1, 100, "truncated"},
		{"checkpoint replaced by another size", []string{
			`UPDATE audit_checkpoints SET note = (SELECT note FROM audit_checkpoints WHERE size = 21) WHERE size = 100`}, -1, 100, "replaced"},
		{"checkpoint forged", []string{
			`UPDATE audit_checkpoints SET note = CAST(replace(CAST(note AS TEXT), char(10) || '100' || char(10), char(10) || '99' || char(10)) AS BLOB) WHERE size = 100`},
			-1, 100, "forged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, file, v := newTestLog(t, 100)
			tamper(t, file, tc.stmts...)
			_, err := Verify(context.Background(), file, v, VerifyOptions{})
			var f *Failure
			if !errors.As(err, &f) {
				t.Fatalf("Verify: %v, want a *Failure", err)
			}
			if f.Entry != tc.entry || f.Checkpoint != tc.cp || !strings.Contains(f.Error(), tc.msg) {
				t.Fatalf("Verify: %q (entry %d, checkpoint %d), want entry %d, checkpoint %d, mentioning %q", f, f.Entry, f.Checkpoint, tc.entry, tc.cp, tc.msg)
			}
		})
	}
}

// TestVerify_ForgedHistory: a log rebuilt from another history and signed
// with the same key passes on its own; the checkpoint the other zone kept
// (Known) catches it, as does an altered entry whose hashes and
// checkpoints were all recomputed.
func TestVerify_ForgedHistory(t *testing.T) {
	s, v := testKeys(t, "dmz")
	open := func(name string) (*Log, string) {
		file := filepath.Join(t.TempDir(), name)
		l, err := OpenLog(context.Background(), file, "dmz", s)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l, file
	}
	honest, _ := open("honest.db")
	appendN(t, honest, 0, 30)
	known, err := honest.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	forged, file := open("forged.db")
	for i := range 30 {
		e := entry(i)
		if i == 12 {
			e.Decision = "refused" // history rewritten
		}
		if _, err := forged.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := forged.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(context.Background(), file, v, VerifyOptions{}); err != nil {
		t.Fatalf("the forged log on its own: %v (a rebuilt log verifies; only a kept checkpoint catches it)", err)
	}
	_, err = Verify(context.Background(), file, v, VerifyOptions{Known: [][]byte{known}})
	var f *Failure
	if !errors.As(err, &f) || f.Checkpoint != 30 || !strings.Contains(f.Error(), "known checkpoint") {
		t.Fatalf("Verify with the kept checkpoint: %v, want the known checkpoint at size 30 failing", err)
	}
	// A kept checkpoint beyond the log's end: truncated.
	appendN(t, honest, 30, 5)
	later, _ := honest.Checkpoint(context.Background())
	hfile := honestFile(t, honest)
	tamper(t, hfile, `DELETE FROM audit_entries WHERE idx >= 30`, `DELETE FROM audit_hashes WHERE id >= 57`, `DELETE FROM audit_checkpoints WHERE size > 30`)
	_, err = Verify(context.Background(), hfile, v, VerifyOptions{Known: [][]byte{later}})
	if !errors.As(err, &f) || !strings.Contains(f.Error(), "truncated") {
		t.Fatalf("Verify of a truncated log with a later kept checkpoint: %v", err)
	}
}

// honestFile returns the file behind l.
func honestFile(t *testing.T, l *Log) string {
	t.Helper()
	var file string
	rows, err := l.db.Query(`PRAGMA database_list`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq int
		var name string
		if err := rows.Scan(&seq, &name, &file); err != nil {
			t.Fatal(err)
		}
		if name == "main" {
			return file
		}
	}
	t.Fatal("no main database")
	return ""
}

func TestLog_Prune(t *testing.T) {
	s, v := testKeys(t, "dmz")
	file := filepath.Join(t.TempDir(), FileName)
	l, err := OpenLog(context.Background(), file, "dmz", s)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	old := time.Now().Add(-200 * 24 * time.Hour)
	for i := range 10 {
		e := entry(i)
		if i < 6 {
			e.Time = old
		} else {
			e.Time = time.Now()
		}
		if _, err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Prune(context.Background(), time.Now().Add(-30*24*time.Hour)); err == nil {
		t.Fatal("Prune of entries younger than the retention succeeded")
	}
	n, err := l.Prune(context.Background(), time.Now().Add(-190*24*time.Hour))
	if err != nil || n != 6 {
		t.Fatalf("Prune: %d, %v; want 6", n, err)
	}
	// The pruning itself is the eleventh entry.
	rep, err := Verify(context.Background(), file, v, VerifyOptions{})
	if err != nil || rep.Pruned != 6 || rep.Entries != 11 {
		t.Fatalf("Verify after pruning: %+v, %v", rep, err)
	}
	if es := entriesOf(t, file); es[10].Event != EventPruned || es[10].Count != 6 {
		t.Fatalf("entry 10: %+v, want audit.pruned of 6", es[10])
	}
	if n, err := l.Prune(context.Background(), time.Now().Add(-190*24*time.Hour)); err != nil || n != 0 || l.Size() != 11 {
		t.Fatalf("Prune again: %d, %v, size %d; want nothing pruned and no entry", n, err, l.Size())
	}
	if _, err := l.Prove(context.Background(), 2); err == nil {
		t.Error("Prove of a pruned entry succeeded")
	}
	// A pruned entry's record hash still binds: changing it is caught.
	tamper(t, file, `UPDATE audit_hashes SET hash = zeroblob(32) WHERE id = 0`)
	if _, err := Verify(context.Background(), file, v, VerifyOptions{}); err == nil {
		t.Fatal("an altered record hash of a pruned entry passed")
	}
}

func TestOpenLog_KeyName(t *testing.T) {
	s, _ := testKeys(t, "intranet")
	if _, err := OpenLog(context.Background(), filepath.Join(t.TempDir(), FileName), "dmz", s); err == nil {
		t.Fatal("OpenLog accepted a key named for another zone")
	}
}

// entriesOf reads every entry of the log at file, pruned ones as zero
// entries.
func entriesOf(t *testing.T, file string) []Entry {
	t.Helper()
	r, err := OpenReader(context.Background(), file)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []Entry
	if err := r.Entries(context.Background(), 0, 0, func(_ int64, e Entry, _ bool) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}
