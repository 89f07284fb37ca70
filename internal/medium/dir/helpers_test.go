package dir

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/mediumtest"
)

// env is one medium: a drop directory with a publisher, and a receiver
// claiming into an inbox.
type env struct {
	drop  string
	inDir string
	qDir  string
	pub   *Publisher
	in    *medium.Inbox
	recv  *Receiver
	cfg   ReceiverConfig
}

// envOptions shape newEnv.
type envOptions struct {
	drop     string // "" means a fresh t.TempDir()
	rescan   time.Duration
	pollOnly bool
	maxSize  int64
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	e := &env{drop: o.drop}
	if e.drop == "" {
		e.drop = t.TempDir()
	}
	base := t.TempDir()
	e.inDir, e.qDir = filepath.Join(base, "inbox"), filepath.Join(base, "quarantine")
	var err error
	e.pub, err = NewPublisher(e.drop)
	if err != nil {
		t.Fatal(err)
	}
	e.in, err = medium.OpenInbox(medium.InboxConfig{Dir: e.inDir, QuarantineDir: e.qDir, MaxFileSize: o.maxSize, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	e.cfg = ReceiverConfig{Dir: e.drop, Inbox: e.in, Rescan: o.rescan, PollOnly: o.pollOnly, Logger: testLogger(t)}
	e.recv, err = NewReceiver(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// testLogger logs to the test's output.
func testLogger(t testing.TB) *slog.Logger { return mediumtest.Logger(t) }

// otherFSDir returns a fresh directory on another file system than the
// temp dir, or skips the test.
func otherFSDir(t testing.TB) string {
	t.Helper()
	base := "/dev/shm"
	var a, b unix.Stat_t
	if unix.Stat(base, &a) != nil || unix.Stat(os.TempDir(), &b) != nil {
		t.Skipf("skipping: cannot stat %s or %s to find a second file system", base, os.TempDir())
	}
	if a.Dev == b.Dev {
		t.Skipf("skipping: %s and %s are on the same file system, so EXDEV cannot happen", base, os.TempDir())
	}
	d, err := os.MkdirTemp(base, "ferry-medium-test-")
	if err != nil {
		t.Skipf("skipping: cannot create a directory in %s: %v", base, err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// pairFunc adapts newEnv to the conformance suite.
func pairFunc(o func(t *testing.T) envOptions) mediumtest.NewPairFunc {
	return func(t *testing.T) (medium.Publisher, medium.Receiver, *medium.Inbox) {
		e := newEnv(t, o(t))
		return e.pub, e.recv, e.in
	}
}

// dotFiles returns the names in dir starting with '.'.
func dotFiles(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var dots []string
	for _, de := range des {
		if strings.HasPrefix(de.Name(), ".") {
			dots = append(dots, de.Name())
		}
	}
	return dots
}

// consumeLikeAnAgent reads each name from r like the agents do: a
// *medium.FileError sends the file to quarantine with its reason, a good
// file is recorded and removed. It stops after want good files and
// returns them.
func consumeLikeAnAgent(t testing.TB, r *mediumtest.Running, in *medium.Inbox, want int) map[string][]byte {
	t.Helper()
	good := map[string][]byte{}
	for len(good) < want {
		name := r.Next(t)
		data, err := in.Read(name)
		var fe *medium.FileError
		switch {
		case errors.As(err, &fe):
			if err := in.Quarantine(name, fe.Reason, err.Error()); err != nil {
				t.Fatalf("Quarantine(%s): %v", name, err)
			}
			continue
		case err != nil:
			t.Fatalf("Read(%s): %v", name, err)
		}
		if _, dup := good[name]; dup {
			t.Fatalf("%s delivered twice", name)
		}
		good[name] = data
		if err := in.Remove(name); err != nil {
			t.Fatalf("Remove(%s): %v", name, err)
		}
	}
	return good
}

// waitFor polls cond until it holds or mediumtest.Deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(mediumtest.Deadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// reasonOf returns the reason code in the reason file of a quarantined name.
func reasonOf(t testing.TB, qdir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(qdir, name+medium.ReasonExt))
	if err != nil {
		t.Fatalf("reason file for %s: %v", name, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if r, ok := strings.CutPrefix(line, "reason: "); ok {
			return r
		}
	}
	t.Fatalf("reason file for %s has no reason line:\n%s", name, b)
	return ""
}
