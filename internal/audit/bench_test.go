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

// BenchmarkVerify measures an auditor's check: Verify of a log of 20,000
// entries with ten checkpoints, reported as entries verified per second.
func BenchmarkVerify(b *testing.B) {
	s, v := testKeys(b, "dmz")
	file := filepath.Join(b.TempDir(), FileName)
	l, err := OpenLog(context.Background(), file, "dmz", s)
	if err != nil {
		b.Fatal(err)
	}
	const n, step = 20000, 2000
	batch := make([]Entry, step)
	for i := 0; i < n; i += step {
		for j := range batch {
			batch[j] = entry(i + j)
		}
		if _, err := l.Append(context.Background(), batch...); err != nil {
			b.Fatal(err)
		}
		if _, err := l.Checkpoint(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	l.Close()
	b.ResetTimer()
	for range b.N {
		rep, err := Verify(context.Background(), file, v, VerifyOptions{})
		if err != nil || rep.Entries != n {
			b.Fatalf("Verify: %+v, %v", rep, err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "entries/s")
}
