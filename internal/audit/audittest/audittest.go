// Package audittest reads a zone's audit log back for the tests of the
// components that write it.
package audittest

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/ferrybridge/ferry/internal/audit"
)

// Entries returns every entry of the audit database at file, in order,
// failing the test on any entry that does not decode.
func Entries(t testing.TB, file string) []audit.Entry {
	t.Helper()
	r, err := audit.OpenReader(context.Background(), file)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []audit.Entry
	err = r.Entries(context.Background(), 0, 0, func(_ int64, e audit.Entry, _ bool) error {
		out = append(out, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Events returns the events of entries, in order.
func Events(entries []audit.Entry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.Event
	}
	return out
}

// NoneInClear fails the test if the audit database at file, or its
// write-ahead log, holds any of values byte for byte.
func NoneInClear(t testing.TB, file string, values ...string) {
	t.Helper()
	for _, f := range []string{file, file + "-wal"} {
		raw, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, v := range values {
			if v != "" && bytes.Contains(raw, []byte(v)) {
				t.Errorf("%s holds %q in clear", filepath.Base(f), v)
			}
		}
	}
}

// VerifyStopped verifies the audit database at file of a zone whose agent
// has stopped cleanly, with the audit public key in pubFile: the log must
// verify and every entry must be under a checkpoint.
func VerifyStopped(t testing.TB, file, pubFile string) *audit.Report {
	t.Helper()
	data, err := os.ReadFile(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(string(bytes.TrimSpace(data)))
	if err != nil {
		t.Fatalf("%s: %v", pubFile, err)
	}
	rep, err := audit.Verify(context.Background(), file, v, audit.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Uncommitted != 0 {
		t.Errorf("%d entries not under a checkpoint after a clean stop", rep.Uncommitted)
	}
	return rep
}

// Drain drains src, a component's audit outbox, into a fresh audit log of
// zone in a temporary directory, signs a checkpoint, verifies the log, and
// returns the log's file and its entries.
func Drain(t testing.TB, zone string, src audit.Source) (string, []audit.Entry) {
	t.Helper()
	ctx := context.Background()
	skey, vkey, err := note.GenerateKey(rand.Reader, audit.Origin(zone))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), audit.FileName)
	l, err := audit.OpenLog(ctx, file, zone, signer)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Drain(ctx, src.Name, src.DB); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify(ctx, file, verifier, audit.VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
	return file, Entries(t, file)
}
