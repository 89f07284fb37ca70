package medium

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newTestInbox(t *testing.T, maxSize int64) *Inbox {
	t.Helper()
	base := t.TempDir()
	in, err := OpenInbox(InboxConfig{Dir: filepath.Join(base, "in"), QuarantineDir: filepath.Join(base, "q"), MaxFileSize: maxSize})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func TestInbox_Add(t *testing.T) {
	errSource := errors.New("source failed")
	for _, tc := range []struct {
		name  string
		size  int64
		write func(w io.Writer) error
		check func(error) bool
	}{
		{"exact", 5, func(w io.Writer) error { _, err := io.WriteString(w, "hello"); return err }, func(err error) bool { return err == nil }},
		{"empty", 0, func(w io.Writer) error { return nil }, func(err error) bool { return err == nil }},
		{"short", 5, func(w io.Writer) error { _, err := io.WriteString(w, "hell"); return err },
			func(err error) bool { return errors.Is(err, ErrSizeMismatch) }},
		{"long", 5, func(w io.Writer) error { _, err := io.WriteString(w, "hello!"); return err },
			func(err error) bool { return errors.Is(err, ErrSizeMismatch) }},
		{"long in two writes", 5, func(w io.Writer) error {
			if _, err := io.WriteString(w, "hello"); err != nil {
				return err
			}
			_, err := io.WriteString(w, "!")
			return err
		}, func(err error) bool { return errors.Is(err, ErrSizeMismatch) }},
		{"too large", 11, func(w io.Writer) error { t.Error("write called for a file over the cap"); return nil },
			func(err error) bool {
				var fe *FileError
				return errors.As(err, &fe) && fe.Reason == ReasonTooLarge
			}},
		{"source error", 5, func(w io.Writer) error { return errSource }, func(err error) bool { return errors.Is(err, errSource) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := newTestInbox(t, 10)
			err := in.Add("a.fxe", tc.size, tc.write)
			if !tc.check(err) {
				t.Fatalf("Add: %v", err)
			}
			ents, _ := os.ReadDir(in.Dir())
			if err != nil && len(ents) != 0 {
				t.Fatalf("inbox holds %d entries after a failed Add, want none", len(ents))
			}
			if err == nil {
				if len(ents) != 1 || ents[0].Name() != "a.fxe" {
					t.Fatalf("inbox holds %v, want a.fxe alone", ents)
				}
			}
		})
	}
}

func TestInbox_AddExisting(t *testing.T) {
	in := newTestInbox(t, 0)
	write := func(s string) func(io.Writer) error {
		return func(w io.Writer) error { _, err := io.WriteString(w, s); return err }
	}
	if err := in.Add("a.fxe", 5, write("first")); err != nil {
		t.Fatal(err)
	}
	if err := in.Add("a.fxe", 6, write("second")); !errors.Is(err, ErrInInbox) {
		t.Fatalf("Add over an inbox file: %v, want ErrInInbox", err)
	}
	// The name taken while write runs: the rename refuses to replace it.
	err := in.Add("b.fxe", 3, func(w io.Writer) error {
		if err := os.WriteFile(filepath.Join(in.Dir(), "b.fxe"), []byte("raced"), 0o600); err != nil {
			return err
		}
		_, err := io.WriteString(w, "new")
		return err
	})
	if !errors.Is(err, ErrInInbox) {
		t.Fatalf("Add racing another file of the name: %v, want ErrInInbox", err)
	}
	for name, want := range map[string]string{"a.fxe": "first", "b.fxe": "raced"} {
		if got, err := in.Read(name); err != nil || string(got) != want {
			t.Errorf("%s holds %q, %v; want %q", name, got, err, want)
		}
	}
	if err := in.Add("../x.fxe", 1, write("x")); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Add with an invalid name: %v, want ErrInvalidName", err)
	}
}

func TestInbox_QuarantineNote(t *testing.T) {
	in := newTestInbox(t, 0)
	for range 2 {
		if err := in.QuarantineNote("a.fxe", "too_large", "big\nline"); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"a.fxe.reason", "a.fxe.1.reason"} {
		b, err := os.ReadFile(filepath.Join(in.QuarantineDir(), n))
		if err != nil {
			t.Fatal(err)
		}
		if s := string(b); !strings.Contains(s, "reason: too_large\n") || !strings.Contains(s, "detail: big line\n") || !strings.Contains(s, "payload: not kept") {
			t.Errorf("%s: %q", n, s)
		}
	}
	if err := in.QuarantineNote(".x.fxe", "r", ""); !errors.Is(err, ErrInvalidName) {
		t.Errorf("QuarantineNote with an invalid name: %v, want ErrInvalidName", err)
	}
}

// TestInbox_Open: Open hands out what Read would read, and refuses what
// Read refuses (a symlink, a file over the cap, a bad name), without
// following the link.
func TestInbox_Open(t *testing.T) {
	in := newTestInbox(t, 10)
	if err := os.WriteFile(filepath.Join(in.Dir(), "a.fxe"), []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, size, err := in.Open("a.fxe")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(io.LimitReader(f, size))
	f.Close()
	if err != nil || string(got) != "hello" || size != 5 {
		t.Fatalf("Open read %q (size %d), %v; want hello (5)", got, size, err)
	}

	target := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(target, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(in.Dir(), "l.fxe")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(in.Dir(), "big.fxe"), []byte(strings.Repeat("x", 11)), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, reason := range map[string]string{"l.fxe": ReasonSymlink, "big.fxe": ReasonTooLarge} {
		f, _, err := in.Open(name)
		var fe *FileError
		if !errors.As(err, &fe) || fe.Reason != reason {
			t.Errorf("Open(%s): %v, want a FileError with reason %s", name, err, reason)
		}
		if f != nil {
			f.Close()
		}
	}
	if _, _, err := in.Open("../a.fxe"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Open with an invalid name: %v, want ErrInvalidName", err)
	}
	if _, _, err := in.Open("missing.fxe"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open of a missing file: %v, want fs.ErrNotExist", err)
	}
}
