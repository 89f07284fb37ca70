package medium

import (
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/medium/internal/safefs"
)

func TestProbeName(t *testing.T) {
	a, b := ProbeName(), ProbeName()
	if a == b {
		t.Errorf("two probe names are equal: %s", a)
	}
	for _, n := range []string{a, ProbeRenamed(a)} {
		if !strings.HasPrefix(n, ".ferry-check-") || ValidName(n) || safefs.IsTempName(n) {
			t.Errorf("probe name %q: want .ferry-check-..., neither a final nor a temporary name", n)
		}
	}
	if len(a) != len(".ferry-check-")+16 {
		t.Errorf("probe name %q: want 16 hex digits", a)
	}
}

func TestCheckReport_Problemf(t *testing.T) {
	for _, tc := range []struct {
		in   string
		args []any
		want string
	}{
		{"the directory %s does not exist", []any{"/x"}, "The directory /x does not exist."},
		{"Already a sentence.", nil, "Already a sentence."},
		{"  ", nil, ""},
	} {
		var r CheckReport
		r.Problemf(tc.in, tc.args...)
		got := strings.Join(r.Problems, "|")
		if got != tc.want {
			t.Errorf("Problemf(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if r.Healthy() != (tc.want == "") {
			t.Errorf("Healthy() = %v with problems %q", r.Healthy(), r.Problems)
		}
	}
}

func TestCheckReport_AddFile(t *testing.T) {
	now := time.Now()
	var r CheckReport
	r.AddFile("b.fxe", now.Add(-time.Hour), now)
	r.AddFile("c.fxe", now.Add(-2*time.Hour), now)
	r.AddFile("a.fxe", now.Add(-2*time.Hour), now) // a tie: the smaller name
	r.AddFile("d.fxe", now.Add(time.Hour), now)    // from the future (clock skew): age 0
	if r.Files != 4 || r.Oldest != "a.fxe" || r.OldestAge != 2*time.Hour {
		t.Errorf("Files %d Oldest %q OldestAge %v, want 4, a.fxe, 2h", r.Files, r.Oldest, r.OldestAge)
	}
	var one CheckReport
	one.AddFile("z.fxe", now.Add(time.Minute), now)
	if one.Oldest != "z.fxe" || one.OldestAge != 0 {
		t.Errorf("one file from the future: Oldest %q OldestAge %v, want z.fxe, 0", one.Oldest, one.OldestAge)
	}
}

func TestCheckReport_SetFree(t *testing.T) {
	for _, tc := range []struct {
		n       int64
		healthy bool
	}{{-1, true}, {0, false}, {MinFreeBytes - 1, false}, {MinFreeBytes, true}, {1 << 40, true}} {
		var r CheckReport
		r.SetFree(tc.n)
		if r.FreeBytes != tc.n || r.Healthy() != tc.healthy {
			t.Errorf("SetFree(%d): FreeBytes %d, problems %q; want healthy %v", tc.n, r.FreeBytes, r.Problems, tc.healthy)
		}
	}
}
