package dir

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/medium/mediumtest"
)

// permChildEnv marks the test process that TestPermissions re-executes as
// an unprivileged user.
const permChildEnv = "FERRY_DIR_PERMISSIONS_CHILD"

// nobody is the unprivileged user and group the checks run as when the
// test runs as root.
const nobody = 65534

// TestPermissions runs the permission checks against the directory
// medium. Mode bits do not stop root, so as root the test re-executes its
// own binary as nobody to run them; otherwise it runs them directly.
func TestPermissions(t *testing.T) {
	if os.Geteuid() == 0 && os.Getenv(permChildEnv) == "" {
		runAsNobody(t)
		return
	}
	if os.Geteuid() == 0 {
		t.Fatal("the permission checks run as root: mode bits would not stop the medium")
	}
	for _, tc := range []struct {
		name string
		o    func(t *testing.T) envOptions
	}{
		{"fsnotify", func(t *testing.T) envOptions { return envOptions{rescan: 50 * time.Millisecond} }},
		{"exdev", func(t *testing.T) envOptions { return envOptions{drop: otherFSDir(t), rescan: 50 * time.Millisecond} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Run("PublishDenied", func(t *testing.T) {
				e := newEnv(t, tc.o(t))
				mediumtest.PublishDenied(t, e.pub, e.drop, mediumtest.Chmod(t, e.drop, 0o700, 0o500))
			})
			t.Run("ReadDenied", func(t *testing.T) {
				e, rec := newRecordedEnv(t, tc.o(t))
				mediumtest.ReadDenied(t, e.pub, e.recv, e.cfg.Rescan, e.in, rec, e.drop, func(name string, on bool) {
					mediumtest.Chmod(t, filepath.Join(e.drop, name), publishPerm, 0)(on)
				})
			})
			t.Run("RemoveDenied", func(t *testing.T) {
				e, rec := newRecordedEnv(t, tc.o(t))
				mediumtest.RemoveDenied(t, e.pub, e.recv, e.cfg.Rescan, e.in, rec, e.drop, mediumtest.Chmod(t, e.drop, 0o700, 0o500))
			})
		})
	}
}

// newRecordedEnv is newEnv with a receiver whose log rec keeps.
func newRecordedEnv(t *testing.T, o envOptions) (*env, *mediumtest.Recorder) {
	t.Helper()
	e := newEnv(t, o)
	log, rec := mediumtest.NewRecorder(t)
	e.cfg.Logger = log
	var err error
	if e.recv, err = NewReceiver(e.cfg); err != nil {
		t.Fatal(err)
	}
	return e, rec
}

// runAsNobody runs TestPermissions in a copy of the test binary as
// nobody, and fails t with the child's output if it fails.
func runAsNobody(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The build cache is root's alone: copy the binary where nobody can
	// run it from.
	dir, err := os.MkdirTemp("", "ferry-dir-permissions-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "dir.test")
	copyFile(t, exe, bin, 0o755)

	cmd := exec.Command(bin, "-test.run=^TestPermissions$", "-test.v", "-test.count=1", "-test.timeout=5m")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), permChildEnv+"=1", "TMPDIR=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	t.Logf("as nobody:\n%s", out)
	if err != nil {
		t.Fatalf("the permission checks failed as nobody: %v", err)
	}
	// A child that ran nothing passes too: make sure it ran the checks.
	for _, want := range []string{"--- PASS: TestPermissions/fsnotify/RemoveDenied", "--- PASS: TestPermissions/exdev/RemoveDenied"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the child's output lacks %q", want)
		}
	}
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
