package dir

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/medium/internal/safefs"
)

func TestCheck(t *testing.T) {
	ctx := context.Background()
	t.Run("healthy with files waiting", func(t *testing.T) {
		d := t.TempDir()
		now := time.Now()
		for name, age := range map[string]time.Duration{
			"b.fxe": time.Minute, "a.fxe": 3 * time.Hour, "c.fxe": 0,
			safefs.TempName("d.fxe"): 5 * time.Hour, // a temp: counted apart, never the oldest
			"notes.txt":              9 * time.Hour, // not an envelope name: ignored
			".hidden.fxe":            9 * time.Hour, // a dot name: ignored
		} {
			p := filepath.Join(d, name)
			if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Mkdir(filepath.Join(d, "dir.fxe"), 0o700); err != nil { // not a regular file
			t.Fatal(err)
		}
		r, err := Check(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Healthy() || !r.Reachable || !r.Writable {
			t.Fatalf("report %+v: want healthy, reachable and writable", r)
		}
		if r.Medium != "dir "+d || r.Identity != "" {
			t.Errorf("Medium %q, Identity %q", r.Medium, r.Identity)
		}
		if r.Files != 3 || r.Temps != 1 || r.Oldest != "a.fxe" {
			t.Errorf("Files %d Temps %d Oldest %q, want 3, 1, a.fxe", r.Files, r.Temps, r.Oldest)
		}
		if r.OldestAge < 3*time.Hour || r.OldestAge > 3*time.Hour+time.Minute {
			t.Errorf("OldestAge %v, want about 3h", r.OldestAge)
		}
		if r.FreeBytes <= 0 {
			t.Errorf("FreeBytes %d, want the file system's free space", r.FreeBytes)
		}
		// The probe leaves nothing behind.
		if dots := dotFiles(t, d); len(dots) != 2 {
			t.Errorf("dot files after the check: %v, want only the temp and .hidden.fxe", dots)
		}
	})

	t.Run("empty", func(t *testing.T) {
		r, err := Check(ctx, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if !r.Healthy() || r.Files != 0 || r.Oldest != "" || r.OldestAge != 0 || r.Temps != 0 {
			t.Errorf("report %+v: want healthy and empty", r)
		}
	})

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dir, problem string
		reachable          bool
	}{
		{"missing", filepath.Join(t.TempDir(), "gone"), "does not exist", false},
		{"not a directory", file, "is not a directory", false},
		{"unwritable", unwritableDir(t), "cannot write, rename and remove a probe file", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Check(ctx, tc.dir)
			if err != nil {
				t.Fatal(err)
			}
			if r.Healthy() || r.Writable || r.Reachable != tc.reachable {
				t.Fatalf("report %+v: want a problem, not writable, reachable %v", r, tc.reachable)
			}
			if !strings.Contains(strings.ToLower(r.Problems[0]), tc.problem) {
				t.Errorf("problem %q does not say %q", r.Problems[0], tc.problem)
			}
			if p := r.Problems[0]; p[0] < 'A' || p[0] > 'Z' || !strings.HasSuffix(p, ".") {
				t.Errorf("problem %q is not a full sentence", p)
			}
		})
	}

	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := Check(ctx, t.TempDir()); err != context.Canceled {
			t.Errorf("Check after cancel: %v, want context.Canceled", err)
		}
	})
}

// unwritableDir returns a directory in which the current user cannot
// create a file. Root may write anywhere a mode allows nothing, so for
// root it is /proc, where nobody creates files.
func unwritableDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() == 0 {
		return "/proc"
	}
	d := t.TempDir()
	if err := os.Chmod(d, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(d, 0o700) })
	return d
}
