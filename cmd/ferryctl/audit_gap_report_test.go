package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/keys"
)

// TestAuditReport_gaps: the report counts the gaps opened and the gaps
// abandoned apart, with the sequence numbers given up; a gap filled is
// not counted.
func TestAuditReport_gaps(t *testing.T) {
	ctx := context.Background()
	keyDir := filepath.Join(t.TempDir(), "keys")
	if err := keys.GenerateAudit(keyDir, "dmz"); err != nil {
		t.Fatal(err)
	}
	ak, err := keys.LoadAudit(keyDir, "dmz")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), audit.FileName)
	log, err := audit.OpenLog(ctx, file, "dmz", ak.Signer)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range []audit.Entry{
		audit.GapEntry("results", 4, audit.GapOpened, 2, 3, ""),
		audit.GapEntry("results", 3, audit.GapFilled, 3, 3, "received late"),
		audit.GapEntry("results", 9, audit.GapOpened, 5, 8, ""),
		audit.GapEntry("results", 9, audit.GapAbandoned, 2, 2, ""),
		audit.GapEntry("results", 20, audit.GapAbandoned, 5, 8, ""),
	} {
		e.Time, e.Zone = at(2, i), "dmz"
		if _, err := log.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := log.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	log.Close()

	rep := reportJSON(t, 0, file, "--from", "2026-11-01", "--to", "2026-12-01")
	if rep.Gaps != 2 || rep.Abandoned != 2 || rep.LostSeqs != 5 {
		t.Errorf("gaps %d, abandoned %d, sequence numbers given up %d; want 2, 2, 5", rep.Gaps, rep.Abandoned, rep.LostSeqs)
	}
	stdout, _ := mustFerryctl(t, 0, "audit", "report", file, "--from", "2026-11-01", "--to", "2026-12-01")
	if want := "  gaps           2\n  abandoned      2 gaps, 5 sequence numbers given up\n"; !strings.Contains(stdout, want) {
		t.Errorf("output lacks %q:\n%s", want, stdout)
	}
}
