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
