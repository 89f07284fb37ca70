package audit

import (
	"bytes"
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// fixedKeys returns an audit key pair for zone dmz made from a fixed seed,
// so that the committed fuzz seeds (testdata/fuzz) stay valid.
func fixedKeys(t testing.TB) (note.Signer, note.Verifier) {
	t.Helper()
	return keysFrom(t, "dmz", rand.NewChaCha8([32]byte{'f', 'e', 'r', 'r', 'y'}))
}

// FuzzVerifyProof: a proof file comes from outside (an auditor's folder);
// VerifyProof never panics, and whatever it accepts is an entry the log
// holds at that index, under the one checkpoint the key signed.
func FuzzVerifyProof(f *testing.F) {
	s, v := fixedKeys(f)
	l, err := OpenLog(context.Background(), filepath.Join(f.TempDir(), FileName), "dmz", s)
	if err != nil {
		f.Fatal(err)
	}
	defer l.Close()
	const n = 5
	var bodies [][]byte
	for i := range n {
		e := entry(i)
		if _, err := l.Append(context.Background(), e); err != nil {
			f.Fatal(err)
		}
		b, _ := e.Encode()
		bodies = append(bodies, b)
	}
	if _, err := l.Checkpoint(context.Background()); err != nil {
		f.Fatal(err)
	}
	for i := range int64(n) {
		p, err := l.Prove(context.Background(), i)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		e, idx, c, err := VerifyProof(p, v)
		if err != nil {
			return
		}
		if c.Size != n || idx >= n {
			t.Fatalf("accepted entry %d under a checkpoint of size %d", idx, c.Size)
		}
		got, err := e.Encode()
		if err != nil || !bytes.Equal(got, bodies[idx]) {
			t.Fatalf("accepted entry %d as %s, the log holds %s", idx, got, bodies[idx])
		}
	})
}

// FuzzCheckpoint: a checkpoint comes from the other zone inside its
// envelopes; ParseCheckpoint never panics, and what it accepts has one
// text only (it writes back byte for byte).
func FuzzCheckpoint(f *testing.F) {
	f.Add("ferry.audit/dmz\n45\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
	f.Add("ferry.audit/intranet\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n")
	f.Fuzz(func(t *testing.T, text string) {
		c, err := ParseCheckpoint(text)
		if err != nil {
			return
		}
		if c.Text() != text {
			t.Fatalf("ParseCheckpoint(%q) writes back as %q", text, c.Text())
		}
	})
}
