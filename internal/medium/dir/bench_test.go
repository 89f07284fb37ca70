package dir

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/medium/mediumtest"
)

// BenchmarkPublishVsCp publishes envelope files through the directory
// medium and copies the same files into another directory with one `cp`
// process in the same iteration. It reports both throughputs and their
// ratio (medium/cp); ns/op is the medium's time for one batch.
//
// The medium makes every file durable before Publish returns (temp file,
// fsync, rename, directory fsync); cp leaves the data in the page cache,
// so on small files the ratio measures mostly the cost of durability.
func BenchmarkPublishVsCp(b *testing.B) {
	cp, err := exec.LookPath("cp")
	if err != nil {
		b.Fatalf("cp not found: %v", err)
	}
	for _, size := range []struct {
		name        string
		size, count int
	}{
		{"1KiB", 1 << 10, 200},
		{"64MiB", 64 << 20, 1},
	} {
		b.Run(size.name, func(b *testing.B) { benchPublishVsCp(b, cp, size.size, size.count) })
	}
}

func benchPublishVsCp(b *testing.B, cp string, size, count int) {
	ctx := context.Background()
	data := make([]byte, size)
	rand.Read(data)
	src, drop, dst := b.TempDir(), b.TempDir(), b.TempDir()
	p, err := NewPublisher(drop)
	if err != nil {
		b.Fatal(err)
	}
	names := make([]string, count)
	args := []string{"-t", dst}
	for i := range names {
		names[i] = fmt.Sprintf("bench-%06d.fxe", i)
		if err := os.WriteFile(filepath.Join(src, names[i]), data, 0o600); err != nil {
			b.Fatal(err)
		}
		args = append(args, filepath.Join(src, names[i]))
	}
	clear := func(dir string) {
		des, err := os.ReadDir(dir)
		if err != nil {
			b.Fatal(err)
		}
		for _, de := range des {
			if err := os.Remove(filepath.Join(dir, de.Name())); err != nil {
				b.Fatal(err)
			}
		}
	}
	var tMedium, tCp time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		for _, n := range names {
			if err := p.Publish(ctx, n, data); err != nil {
				b.Fatal(err)
			}
		}
		tMedium += time.Since(start)
		b.StopTimer()
		clear(drop)
		start = time.Now()
		if out, err := exec.Command(cp, args...).CombinedOutput(); err != nil {
			b.Fatalf("cp: %v\n%s", err, out)
		}
		tCp += time.Since(start)
		clear(dst)
		b.StartTimer()
	}
	mediumtest.ReportRatio(b, int64(size)*int64(count), tMedium, tCp, "cp")
}
