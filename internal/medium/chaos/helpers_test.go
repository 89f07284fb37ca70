package chaos

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/dir"
	"github.com/ferrybridge/ferry/internal/medium/mediumtest"
)

// deadline bounds every wait in these tests.
const deadline = 20 * time.Second

// testLogger logs to the test's output.
func testLogger(t testing.TB) *slog.Logger { return mediumtest.Logger(t) }

// newDirs returns fresh From and To directories.
func newDirs(t testing.TB) (from, to string) {
	t.Helper()
	base := t.TempDir()
	from, to = filepath.Join(base, "from"), filepath.Join(base, "to")
	for _, d := range []string{from, to} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return from, to
}

// publishN publishes n files into from with the real dir publisher, their
// contents drawn from seed (so two calls with one seed write the same
// files), every content distinct and one of them empty. It returns the
// contents by name.
func publishN(t testing.TB, from string, n int, seed uint64) map[string][]byte {
	t.Helper()
	pub, err := dir.NewPublisher(from)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	files := map[string][]byte{}
	for i := range n {
		name := fmt.Sprintf("req-%04d.fxe", i)
		var data []byte
		if i > 0 {
			// The name first, so that every content is distinct.
			data = append([]byte(name), make([]byte, rng.IntN(2000))...)
			for j := len(name); j < len(data); j++ {
				data[j] = byte(rng.Uint32())
			}
		}
		if err := pub.Publish(context.Background(), name, data); err != nil {
			t.Fatalf("Publish(%s): %v", name, err)
		}
		files[name] = data
	}
	return files
}

// running is a Ferry.Run in its own goroutine.
type running struct {
	f      *Ferry
	cancel context.CancelFunc
	done   chan error
}

// start runs f until stop or the end of the test.
func start(t testing.TB, f *Ferry) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{f: f, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- f.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run, checks that it returns nil, and returns the final
// stats. Stopping twice is fine.
func (r *running) stop(t testing.TB) Stats {
	t.Helper()
	if r.done != nil {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run returned %v, want nil", err)
			}
		case <-time.After(deadline):
			t.Fatalf("Run did not return within %v of cancel", deadline)
		}
		r.done = nil
	}
	return r.f.Stats()
}

// newFerry builds a ferry from cfg, with the test's logger.
func newFerry(t testing.TB, cfg Config) *Ferry {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.Poll == 0 {
		cfg.Poll = 5 * time.Millisecond
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return f
}

// carryAll runs a ferry with cfg until From holds no final names, stops
// it, and returns its stats.
func carryAll(t testing.TB, cfg Config) Stats {
	t.Helper()
	r := start(t, newFerry(t, cfg))
	waitFor(t, "from to empty", func() bool { return len(validNames(t, cfg.From)) == 0 })
	return r.stop(t)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// validNames returns the names in d that pass medium.ValidName.
func validNames(t testing.TB, d string) []string {
	t.Helper()
	des, err := os.ReadDir(d)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		if medium.ValidName(de.Name()) {
			names = append(names, de.Name())
		}
	}
	return names
}

// entry describes one directory entry without following it.
type entry struct {
	kind   string // "file", "symlink", "fifo", "dir" or "other"
	data   []byte // a file's contents, if at most readCap bytes
	size   int64
	blocks int64  // 512-byte blocks allocated
	target string // a symlink's target
}

// readCap is the largest file entries reads.
const readCap = 1 << 20

// entries describes every entry of d by name. It fails on a name starting
// with '.': a finished ferry leaves no temporary files.
func entries(t testing.TB, d string) map[string]entry {
	t.Helper()
	des, err := os.ReadDir(d)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]entry{}
	for _, de := range des {
		name := de.Name()
		if strings.HasPrefix(name, ".") {
			t.Errorf("temporary file %s left in %s", name, d)
			continue
		}
		path := filepath.Join(d, name)
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			t.Fatal(err)
		}
		e := entry{size: st.Size, blocks: st.Blocks}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			e.kind = "file"
			if st.Size <= readCap {
				if e.data, err = os.ReadFile(path); err != nil {
					t.Fatal(err)
				}
			}
		case unix.S_IFLNK:
			e.kind = "symlink"
			if e.target, err = os.Readlink(path); err != nil {
				t.Fatal(err)
			}
		case unix.S_IFIFO:
			e.kind = "fifo"
		case unix.S_IFDIR:
			e.kind = "dir"
		default:
			e.kind = "other"
		}
		out[name] = e
	}
	return out
}

// digest sums up d: each name with its kind and the hash of its contents.
func digest(t testing.TB, d string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, e := range entries(t, d) {
		sum := sha256.Sum256(e.data)
		out[name] = fmt.Sprintf("%s %d %s %s", e.kind, e.size, e.target, hex.EncodeToString(sum[:8]))
	}
	return out
}

// contentCount counts how often each content occurs among the regular
// files of es.
func contentCount(es map[string]entry) map[string]int {
	n := map[string]int{}
	for _, e := range es {
		if e.kind == "file" {
			n[string(e.data)]++
		}
	}
	return n
}
