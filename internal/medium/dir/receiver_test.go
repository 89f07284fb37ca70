package dir

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/internal/safefs"
	"github.com/ferrybridge/ferry/internal/medium/mediumtest"
)

// hostileFiles plants, in drop, one good file and every kind of file the
// receiver must not process: a symlink to a secret outside, a FIFO, a
// directory, an oversized file, a hard link to a file elsewhere, and
// temporary, dot and invalid names. It returns the planted bad names and
// their expected reasons, and the names that must be left alone.
func hostileFiles(t *testing.T, drop string, maxSize int64) (bad map[string]string, untouched []string) {
	t.Helper()
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	write(t, secret, "secret")
	if err := os.Symlink(secret, filepath.Join(drop, "link.fxe")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(drop, "fifo.fxe"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(drop, "dir.fxe"), 0o700); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(drop, "big.fxe"), strings.Repeat("b", int(maxSize)+1))
	// A hard link needs its target on the same file system as drop.
	target := filepath.Join(drop, "linked-target")
	write(t, target, "linked")
	if err := os.Link(target, filepath.Join(drop, "hard.fxe")); err != nil {
		t.Fatal(err)
	}
	untouched = []string{
		safefs.TempName("pending.fxe"), ".hidden.fxe", ".x.fxe.tmp-zz", "notes.txt", "UPPER.fxe", "linked-target",
	}
	for _, n := range untouched[:len(untouched)-1] {
		write(t, filepath.Join(drop, n), "leave me")
	}
	// The receiver claims in name order and the test stops consuming at
	// the good file, so it sorts after every bad one.
	write(t, filepath.Join(drop, "zz-good.fxe"), "good")
	bad = map[string]string{
		"link.fxe": medium.ReasonSymlink,
		"fifo.fxe": medium.ReasonNotRegular,
		"dir.fxe":  medium.ReasonNotRegular,
		"big.fxe":  medium.ReasonTooLarge,
		"hard.fxe": medium.ReasonHardLink,
	}
	return bad, untouched
}

func TestReceiver_Run_hostile(t *testing.T) {
	const maxSize = 1024
	for _, mode := range []string{"same-fs", "exdev"} {
		t.Run(mode, func(t *testing.T) {
			o := envOptions{maxSize: maxSize, rescan: 50 * time.Millisecond}
			if mode == "exdev" {
				o.drop = otherFSDir(t)
			}
			e := newEnv(t, o)
			bad, untouched := hostileFiles(t, e.drop, maxSize)
			r := mediumtest.Start(t, e.recv)
			good := consumeLikeAnAgent(t, r, e.in, 1)
			if string(good["zz-good.fxe"]) != "good" {
				t.Fatalf("zz-good.fxe: %q", good["zz-good.fxe"])
			}
			// Every bad file ends in quarantine with its reason: in the
			// inbox's quarantine through the consumer (same-fs), or
			// recorded by the receiver itself (exdev).
			waitFor(t, "bad files quarantined", func() bool {
				for name := range bad {
					if _, err := os.Stat(filepath.Join(e.qDir, name+medium.ReasonExt)); err != nil {
						return false
					}
				}
				return true
			})
			r.Stop(t)
			for name, reason := range bad {
				if got := reasonOf(t, e.qDir, name); got != reason {
					t.Errorf("%s quarantined with reason %q, want %q", name, got, reason)
				}
				if _, err := os.Lstat(filepath.Join(e.drop, name)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s still on the medium: %v", name, err)
				}
				if mode == "same-fs" {
					// Moved, not copied: the symlink is still a symlink.
					if _, err := os.Lstat(filepath.Join(e.qDir, name)); err != nil {
						t.Errorf("%s not kept in quarantine: %v", name, err)
					}
				}
			}
			for _, n := range untouched {
				if _, err := os.Lstat(filepath.Join(e.drop, n)); err != nil {
					t.Errorf("%s was touched: %v", n, err)
				}
			}
			if names, _ := e.in.List(); len(names) != 0 {
				t.Errorf("inbox still holds %v", names)
			}
		})
	}
}

// TestReceiver_Run_restart restarts with a new Receiver and a new Inbox
// over the same directories, as a crashed agent would.
func TestReceiver_Run_restart(t *testing.T) {
	e := newEnv(t, envOptions{})
	want := map[string][]byte{}
	for i := range 8 {
		name := fmt.Sprintf("f-%02d.fxe", i)
		want[name] = mediumtest.RandomBytes(t, 1000+i)
		if err := e.pub.Publish(context.Background(), name, want[name]); err != nil {
			t.Fatal(err)
		}
	}
	r := mediumtest.Start(t, e.recv)
	// Process one, take a second without processing it, then crash.
	mediumtest.Consume(t, r, e.in, 1)
	r.Next(t)
	r.Stop(t)
	delete(want, "f-00.fxe")
	left, err := e.in.List()
	if err != nil || len(left) < 1 {
		t.Fatalf("inbox leftovers %v, %v", left, err)
	}
	// A copy of a leftover shows up on the medium again meanwhile: it must
	// go to quarantine, not be delivered a second time.
	write(t, filepath.Join(e.drop, left[0]), "impostor")
	// A crashed copy-claim left a temporary file in the inbox.
	write(t, filepath.Join(e.inDir, safefs.TempName("f-99.fxe")), "partial")

	in2, err := medium.OpenInbox(medium.InboxConfig{Dir: e.inDir, QuarantineDir: e.qDir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.cfg
	cfg.Inbox = in2
	recv2, err := NewReceiver(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r2 := mediumtest.Start(t, recv2)
	order, got := mediumtest.Consume(t, r2, in2, len(want))
	if !slices.Equal(order[:len(left)], left) {
		t.Fatalf("first deliveries %v, want the leftovers %v first", order[:len(left)], left)
	}
	for name, data := range want {
		if !bytes.Equal(got[name], data) {
			t.Errorf("%s lost or changed across the restart", name)
		}
	}
	waitFor(t, "duplicate quarantined", func() bool {
		_, err := os.Stat(filepath.Join(e.qDir, left[0]+medium.ReasonExt))
		return err == nil
	})
	if got := reasonOf(t, e.qDir, left[0]); got != medium.ReasonDuplicateName {
		t.Fatalf("duplicate quarantined with reason %q", got)
	}
	if b, _ := os.ReadFile(filepath.Join(e.qDir, left[0])); string(b) != "impostor" {
		t.Fatalf("quarantine holds %q, want the impostor copy", b)
	}
	r2.Quiet(t, 200*time.Millisecond)
	if dots := dotFiles(t, e.inDir); len(dots) > 0 {
		t.Fatalf("inbox temporary files not cleaned at start: %v", dots)
	}
}

// publishAndReceive publishes n files, one after the other, each after the
// previous arrived, so that all but perhaps the first need a fresh trigger
// to be noticed. trigger runs after each publish.
func publishAndReceive(t *testing.T, e *env, r *mediumtest.Running, prefix string, n int, trigger func()) {
	t.Helper()
	for i := range n {
		name := fmt.Sprintf("%s-%02d.fxe", prefix, i)
		if err := e.pub.Publish(context.Background(), name, []byte(name)); err != nil {
			t.Fatal(err)
		}
		if trigger != nil {
			trigger()
		}
		if got := r.Next(t); got != name {
			t.Fatalf("received %s, want %s", got, name)
		}
		if err := e.in.Remove(name); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReceiver_Run_fsnotify proves that events alone deliver files: the
// rescan interval is an hour, so only fsnotify can notice them. (The
// receiver scans once more right after the watch starts, which can cover
// one file at most.)
func TestReceiver_Run_fsnotify(t *testing.T) {
	e := newEnv(t, envOptions{rescan: time.Hour})
	r := mediumtest.Start(t, e.recv)
	publishAndReceive(t, e, r, "ev", 4, nil)
}

// TestReceiver_Run_pollOnly proves the periodic rescan alone delivers
// everything, with fsnotify switched off by config or failing to start.
func TestReceiver_Run_pollOnly(t *testing.T) {
	t.Run("config", func(t *testing.T) {
		e := newEnv(t, envOptions{pollOnly: true, rescan: 20 * time.Millisecond})
		e.recv.newWatcher = func() (watcher, error) {
			t.Error("PollOnly receiver created a watcher")
			return nil, errors.New("no watcher")
		}
		r := mediumtest.Start(t, e.recv)
		publishAndReceive(t, e, r, "poll", 4, nil)
	})
	t.Run("watcher fails", func(t *testing.T) {
		e := newEnv(t, envOptions{rescan: 20 * time.Millisecond})
		e.recv.newWatcher = func() (watcher, error) { return nil, errors.New("inotify: too many instances") }
		r := mediumtest.Start(t, e.recv)
		publishAndReceive(t, e, r, "poll", 4, nil)
	})
}

// fakeWatcher is a watcher that reports nothing but the errors a test
// sends.
type fakeWatcher struct {
	events chan fsnotify.Event
	errors chan error
}

func (w *fakeWatcher) Add(string) error              { return nil }
func (w *fakeWatcher) Events() <-chan fsnotify.Event { return w.events }
func (w *fakeWatcher) Errors() <-chan error          { return w.errors }
func (w *fakeWatcher) Close() error                  { return nil }

// TestReceiver_Run_overflow proves that a watcher error (an inotify queue
// overflow) makes the receiver rescan: the watcher never reports an
// event and the rescan interval is an hour, so only the overflow can make
// the files arrive.
func TestReceiver_Run_overflow(t *testing.T) {
	e := newEnv(t, envOptions{rescan: time.Hour})
	fw := &fakeWatcher{events: make(chan fsnotify.Event), errors: make(chan error)}
	e.recv.newWatcher = func() (watcher, error) { return fw, nil }
	r := mediumtest.Start(t, e.recv)
	publishAndReceive(t, e, r, "of", 4, func() {
		select {
		case fw.errors <- fsnotify.ErrEventOverflow:
		case <-time.After(mediumtest.Deadline):
			t.Fatal("the watcher goroutine does not read errors")
		}
	})
}

// TestReceiver_Run_burst publishes 2000 files from several goroutines
// while the receiver runs; each arrives exactly once.
func TestReceiver_Run_burst(t *testing.T) {
	const n, writers = 2000, 4
	e := newEnv(t, envOptions{})
	r := mediumtest.Start(t, e.recv)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				name := fmt.Sprintf("burst-%05d.fxe", i)
				if err := e.pub.Publish(context.Background(), name, []byte(name)); err != nil {
					t.Errorf("Publish(%s): %v", name, err)
					return
				}
			}
		})
	}
	_, got := mediumtest.Consume(t, r, e.in, n)
	wg.Wait()
	for name, data := range got {
		if string(data) != name {
			t.Fatalf("%s holds %q", name, data)
		}
	}
	r.Quiet(t, 200*time.Millisecond)
}

// TestReceiver_Run_dirAppears starts the receiver before its drop
// directory exists (a disc not yet mounted) and recovers when it appears.
func TestReceiver_Run_dirAppears(t *testing.T) {
	e := newEnv(t, envOptions{rescan: 20 * time.Millisecond})
	drop := filepath.Join(t.TempDir(), "later")
	cfg := e.cfg
	cfg.Dir = drop
	recv, err := NewReceiver(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := mediumtest.Start(t, recv)
	time.Sleep(50 * time.Millisecond)
	if err := os.Mkdir(drop, 0o700); err != nil {
		t.Fatal(err)
	}
	pub, err := NewPublisher(drop)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(context.Background(), "late.fxe", []byte("late")); err != nil {
		t.Fatal(err)
	}
	if got := r.Next(t); got != "late.fxe" {
		t.Fatalf("received %s", got)
	}
}

func TestNewReceiver(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, cfg := range []ReceiverConfig{
		{Inbox: e.in},
		{Dir: e.drop},
		{Dir: e.drop, Inbox: e.in, Rescan: -time.Second},
		{Dir: e.drop, Inbox: e.in, Debounce: -time.Second},
	} {
		if _, err := NewReceiver(cfg); err == nil {
			t.Errorf("NewReceiver(%+v) succeeded", cfg)
		}
	}
}

// BenchmarkReceive measures claim + send + read + remove per file, for
// files published before Run starts.
func BenchmarkReceive(b *testing.B) {
	e := newEnv(b, envOptions{rescan: time.Hour})
	data := bytes.Repeat([]byte{0x5a}, 4<<10)
	for i := range b.N {
		if err := e.pub.Publish(context.Background(), fmt.Sprintf("r-%09d.fxe", i), data); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	r := mediumtest.Start(b, e.recv)
	mediumtest.Consume(b, r, e.in, b.N)
	b.StopTimer()
	r.Stop(b)
}
