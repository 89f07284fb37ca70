package sample_test

import (
	"bytes"
	"testing"

	"github.com/ferrybridge/ferry/internal/policy"
	"github.com/ferrybridge/ferry/internal/sample"
)

func TestLoadPolicy(t *testing.T) {
	p, err := policy.Parse("load.yaml", sample.LoadPolicy())
	if err != nil {
		t.Fatal(err)
	}
	orig, err := policy.Parse("policy.yaml", sample.Policy())
	if err != nil {
		t.Fatal(err)
	}
	limited := 0
	for _, op := range orig.Operations {
		lop, ok := p.Operation(op.Name)
		if !ok {
			t.Fatalf("operation %s missing", op.Name)
		}
		for _, r := range []struct{ orig, load policy.Rate }{{op.Limits.PerSubject, lop.Limits.PerSubject}, {op.Limits.PerClient, lop.Limits.PerClient}} {
			if r.orig.IsZero() != r.load.IsZero() {
				t.Errorf("%s: a limit appeared or vanished", op.Name)
			}
			if !r.orig.IsZero() {
				limited++
				if r.load.String() != "1000000/1s" {
					t.Errorf("%s: limit %s, want 1000000/1s", op.Name, r.load)
				}
			}
		}
	}
	if limited == 0 {
		t.Fatal("the sample policy has no rate limits to raise")
	}
	if !bytes.Equal(rateless(sample.LoadPolicy()), rateless(sample.Policy())) {
		t.Error("LoadPolicy changed more than the rate limits")
	}
}

// rateless replaces every rate of a policy text with X.
func rateless(b []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		if i := bytes.Index(line, []byte("per_")); i >= 0 {
			if j := bytes.Index(line, []byte(": ")); j > i {
				line = append(append([]byte{}, line[:j+2]...), 'X')
			}
		}
		out = append(out, line)
	}
	return bytes.Join(out, []byte("\n"))
}

func TestBarePolicy(t *testing.T) {
	p, err := policy.Parse("bare.yaml", sample.BarePolicy())
	if err != nil {
		t.Fatal(err)
	}
	full, err := policy.Parse("policy.yaml", sample.Policy())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Operations) != len(full.Operations) || len(p.Clients) != len(full.Clients) {
		t.Fatalf("%d operations, %d clients; want %d, %d", len(p.Operations), len(p.Clients), len(full.Operations), len(full.Clients))
	}
	for i, op := range p.Operations {
		f := full.Operations[i]
		if op.Subject != "" || !op.Limits.PerSubject.IsZero() || !op.Limits.PerClient.IsZero() || len(op.Mask) != 0 {
			t.Errorf("%s keeps a subject binding, a limit or a mask", op.Name)
		}
		if op.Statement != f.Statement || len(op.Params) != len(f.Params) || len(op.Reads) != len(f.Reads) || len(op.Inserts) != len(f.Inserts) {
			t.Errorf("%s differs from the sample in more than the engine's additions", op.Name)
		}
	}
}
