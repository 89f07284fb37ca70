package audit

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// zoneLog is a log with its keys, for the witness tests.
type zoneLog struct {
	*Log
	file   string
	signer note.Signer
	v      note.Verifier
}

func openZoneLog(t testing.TB, zone string, s note.Signer, v note.Verifier) *zoneLog {
	t.Helper()
	file := filepath.Join(t.TempDir(), FileName)
	l, err := OpenLog(context.Background(), file, zone, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &zoneLog{Log: l, file: file, signer: s, v: v}
}

// grow appends n entries from entry(from) (with decision changed when
// forge is set) and signs a checkpoint.
func (z *zoneLog) grow(t testing.TB, from, n int, forge bool) {
	t.Helper()
	for i := from; i < from+n; i++ {
		e := entry(i)
		if forge {
			e.Decision = "forged"
		}
		if _, err := z.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := z.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// send is what the DMZ puts in an envelope: its newest checkpoint and the
// proof from the size the intranet last countersigned.
func (z *zoneLog) send(t *testing.T, from int64) ([]byte, string) {
	t.Helper()
	msg, p, err := z.ProveConsistency(context.Background(), from)
	if err != nil {
		t.Fatal(err)
	}
	return msg, FormatProof(p)
}

// TestLog_Witness: the intranet countersigns the DMZ's checkpoints as the
// DMZ's log grows, each in an audit.witnessed entry of its own log; a
// rebuilt DMZ history, signed with the DMZ's own key, is refused, and the
// countersigned copies the intranet kept make `Verify` fail the rebuilt
// log.
func TestLog_Witness(t *testing.T) {
	ctx := context.Background()
	ds, dv := testKeys(t, "dmz")
	is, iv := testKeys(t, "intranet")
	dmz := openZoneLog(t, "dmz", ds, dv)
	intra := openZoneLog(t, "intranet", is, iv)

	witness := func(msg []byte, from int64, proof string) ([]byte, bool, error) {
		p, err := ParseProof(proof)
		if err != nil {
			t.Fatal(err)
		}
		return intra.Witness(ctx, dv, msg, from, p)
	}
	dmz.grow(t, 0, 10, false)
	msg, proof := dmz.send(t, 0)
	cosigned, isNew, err := witness(msg, 0, proof)
	if err != nil || !isNew {
		t.Fatalf("first checkpoint: %v, new %v", err, isNew)
	}
	if c, err := OpenCosigned(cosigned, dv, iv); err != nil || c.Size != 10 {
		t.Fatalf("OpenCosigned: %+v, %v", c, err)
	}
	if _, err := OpenCosigned(msg, dv, iv); err == nil {
		t.Error("OpenCosigned accepted a checkpoint without the witness's signature")
	}
	if got := intra.Size(); got != 1 {
		t.Fatalf("the witness's log holds %d entries, want its audit.witnessed entry", got)
	}
	dmz.grow(t, 10, 13, false)
	older := msg
	msg, proof = dmz.send(t, 10)
	// A proof from a size the witness did not countersign last: stale,
	// not an alarm; from the right size: witnessed.
	if _, _, err := witness(msg, 0, ""); !errors.Is(err, ErrStale) {
		t.Fatalf("a proof from another size: %v, want ErrStale", err)
	}
	if _, isNew, err := witness(msg, 10, proof); err != nil || !isNew {
		t.Fatalf("a grown log: %v, new %v", err, isNew)
	}
	if again, isNew, err := witness(msg, 10, proof); err != nil || isNew || !strings.Contains(string(again), "intranet") {
		t.Fatalf("the same checkpoint again: %v, new %v", err, isNew)
	}
	// An older checkpoint arriving late, witnessed before: fine; one
	// never witnessed: stale.
	if _, _, err := witness(older, 0, ""); err != nil {
		t.Fatalf("an older, witnessed checkpoint: %v", err)
	}
	dmz.grow(t, 23, 2, false)
	mid, _ := dmz.send(t, 0)
	dmz.grow(t, 25, 2, false)
	msg, proof = dmz.send(t, 23)
	if _, _, err := witness(msg, 23, proof); err != nil {
		t.Fatalf("size 27: %v", err)
	}
	if _, _, err := witness(mid, 0, ""); !errors.Is(err, ErrStale) {
		t.Fatalf("an older checkpoint never witnessed: %v, want ErrStale", err)
	}

	// The DMZ rebuilds its history with its own key.
	forged := openZoneLog(t, "dmz", ds, dv)
	forged.grow(t, 0, 30, true)
	msg, proof = forged.send(t, 27)
	if _, _, err := witness(msg, 27, proof); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("a rebuilt history: %v, want ErrInconsistent", err)
	}
	same := openZoneLog(t, "dmz", ds, dv)
	same.grow(t, 0, 27, true)
	msg, _ = same.send(t, 0)
	if _, _, err := witness(msg, 0, ""); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("another root at a size witnessed: %v, want ErrInconsistent", err)
	}
	small := openZoneLog(t, "dmz", ds, dv)
	small.grow(t, 0, 5, true)
	msg, _ = small.send(t, 0)
	if _, _, err := witness(msg, 27, ""); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("a log smaller than it says was countersigned: %v, want ErrInconsistent", err)
	}
	// Another key, even of the same name: refused.
	_, otherV := testKeys(t, "dmz")
	if _, _, err := intra.Witness(ctx, otherV, msg, 0, nil); err == nil {
		t.Fatal("Witness accepted a checkpoint under another key")
	}

	kept, err := intra.Witnessed(ctx, Origin("dmz"))
	if err != nil || len(kept) != 3 {
		t.Fatalf("Witnessed: %d, %v; want the three countersigned", len(kept), err)
	}
	if _, err := Verify(ctx, forged.file, dv, VerifyOptions{}); err != nil {
		t.Fatalf("the rebuilt log alone: %v (it verifies: only the witness's copies catch it)", err)
	}
	var f *Failure
	if _, err := Verify(ctx, forged.file, dv, VerifyOptions{Known: kept}); !errors.As(err, &f) {
		t.Fatalf("the rebuilt log against the witnessed copies: %v, want a Failure", err)
	}
	if _, err := Verify(ctx, dmz.file, dv, VerifyOptions{Known: kept}); err != nil {
		t.Fatalf("the honest log against the witnessed copies: %v", err)
	}
	if _, err := Verify(ctx, intra.file, iv, VerifyOptions{}); err != nil {
		t.Fatalf("the witness's own log: %v", err)
	}
}

func TestParseProof(t *testing.T) {
	for _, bad := range []string{"x", "AAAA", strings.Repeat("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= ", MaxProofHashes+1),
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=", " AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="} {
		if _, err := ParseProof(bad); err == nil {
			t.Errorf("ParseProof(%.50q) accepted it", bad)
		}
	}
}

// FuzzParseProof: a proof comes from the other zone inside its
// envelopes; ParseProof never panics, and what it accepts writes back
// the same.
func FuzzParseProof(f *testing.F) {
	f.Add("")
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseProof(s)
		if err != nil {
			return
		}
		if FormatProof(p) != s {
			t.Fatalf("ParseProof(%q) writes back as %q", s, FormatProof(p))
		}
	})
}
