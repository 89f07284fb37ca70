package audit

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkDrain measures the log's intake: entries staged in a
// component's database (one transaction per 256, as a busy intake's group
// commit stages them) and drained into the log, hashes and all. It reports
// entries per second through the whole path and, as a baseline measured
// in the same run, the staging alone.
func BenchmarkDrain(b *testing.B) {
	s, _ := testKeys(b, "dmz")
	l, err := OpenLog(context.Background(), filepath.Join(b.TempDir(), FileName), "dmz", s)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	src := componentDB(b, "spool")
	ctx := context.Background()
	const group = 256
	batch := make([]Entry, group)
	for i := range batch {
		batch[i] = entry(i)
	}
	stage := func() {
		tx, err := src.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := Stage(ctx, tx, batch...); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	var staged, drained int64
	b.ResetTimer()
	for range b.N {
		stage()
		staged += group
		for {
			n, err := l.Drain(ctx, "spool", src)
			if err != nil {
				b.Fatal(err)
			}
			drained += int64(n)
			if n < DrainBatch {
				break
			}
		}
	}
	b.StopTimer()
	total := b.Elapsed().Seconds()
	b.ReportMetric(float64(drained)/total, "entries/s")
	// The baseline: staging alone, the part on the request path.
	const rounds = 20
	start := time.Now()
	for range rounds {
		stage()
	}
	b.ReportMetric(float64(rounds*group)/time.Since(start).Seconds(), "staged-only/s")
	if drained != staged {
		b.Fatalf("drained %d of %d staged entries", drained, staged)
	}
}
