package dir

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/internal/safefs"
)

// fileData returns the content TestPublisher_Publish_atomic publishes
// under name: size bytes derived from the name, so a reader can tell a
// complete file from a partial one.
func fileData(name string, size int) []byte {
	b := bytes.Repeat([]byte(name+"|"), size/(len(name)+1)+1)
	return b[:size]
}

func TestPublisher_Publish_atomic(t *testing.T) {
	drop := t.TempDir()
	pub, err := NewPublisher(drop)
	if err != nil {
		t.Fatal(err)
	}
	const files, size = 12, 4 << 20
	ctx, cancel := context.WithCancel(context.Background())
	var reads atomic.Int64
	var wg sync.WaitGroup
	// Readers keep listing the directory and reading every final name;
	// each file they see must be complete.
	for range 2 {
		wg.Go(func() {
			for ctx.Err() == nil {
				des, err := os.ReadDir(drop)
				if err != nil {
					t.Errorf("list: %v", err)
					return
				}
				for _, de := range des {
					if !medium.ValidName(de.Name()) {
						continue
					}
					got, err := os.ReadFile(filepath.Join(drop, de.Name()))
					if err != nil {
						t.Errorf("read %s: %v", de.Name(), err)
						return
					}
					if want := fileData(de.Name(), size); !bytes.Equal(got, want) {
						t.Errorf("reader saw %s with %d bytes, want the complete %d", de.Name(), len(got), len(want))
						return
					}
					reads.Add(1)
				}
			}
		})
	}
	for i := range files {
		name := fmt.Sprintf("big-%02d.fxe", i)
		if err := pub.Publish(context.Background(), name, fileData(name, size)); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	wg.Wait()
	if reads.Load() == 0 {
		t.Fatal("the readers never read a published file: the test proves nothing")
	}
	if dots := dotFiles(t, drop); len(dots) > 0 {
		t.Fatalf("temporary files left behind: %v", dots)
	}
}

func TestPublisher_Publish(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(outside, []byte("same"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		prepare func(t *testing.T, drop string) // what the drop dir holds first
		data    string
		wantErr error
	}{
		{name: "new", data: "hello"},
		{name: "same bytes", data: "same", prepare: func(t *testing.T, drop string) {
			write(t, filepath.Join(drop, "x.fxe"), "same")
		}},
		{name: "other bytes", data: "same", wantErr: medium.ErrExists, prepare: func(t *testing.T, drop string) {
			write(t, filepath.Join(drop, "x.fxe"), "diff")
		}},
		{name: "symlink with the same bytes", data: "same", wantErr: medium.ErrExists, prepare: func(t *testing.T, drop string) {
			if err := os.Symlink(outside, filepath.Join(drop, "x.fxe")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "directory", data: "same", wantErr: medium.ErrExists, prepare: func(t *testing.T, drop string) {
			if err := os.Mkdir(filepath.Join(drop, "x.fxe"), 0o700); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			drop := t.TempDir()
			if tt.prepare != nil {
				tt.prepare(t, drop)
			}
			pub, err := NewPublisher(drop)
			if err != nil {
				t.Fatal(err)
			}
			err = pub.Publish(context.Background(), "x.fxe", []byte(tt.data))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Publish: %v, want %v", err, tt.wantErr)
			}
			if dots := dotFiles(t, drop); len(dots) > 0 {
				t.Fatalf("temporary files left behind: %v", dots)
			}
			if tt.wantErr == nil {
				got, err := os.ReadFile(filepath.Join(drop, "x.fxe"))
				if err != nil || string(got) != tt.data {
					t.Fatalf("x.fxe holds %q, %v; want %q", got, err, tt.data)
				}
			}
			if b, _ := os.ReadFile(outside); string(b) != "same" {
				t.Fatal("the symlink's target was changed")
			}
		})
	}
}

func write(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestPublisher_Publish_cancel(t *testing.T) {
	drop := t.TempDir()
	pub, err := NewPublisher(drop)
	if err != nil {
		t.Fatal(err)
	}
	// Cancel at various points of a large write; whatever Publish
	// returns, no temporary file stays, and a canceled publish leaves no
	// final name.
	data := bytes.Repeat([]byte("x"), 32<<20)
	for i, delay := range []time.Duration{0, 100 * time.Microsecond, time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond} {
		name := fmt.Sprintf("c-%d.fxe", i)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(delay, cancel)
		err := pub.Publish(ctx, name, data)
		cancel()
		_, statErr := os.Lstat(filepath.Join(drop, name))
		switch {
		case err == nil:
			if statErr != nil {
				t.Fatalf("Publish(%s) returned nil but the file is missing: %v", name, statErr)
			}
		case errors.Is(err, context.Canceled):
			if statErr == nil {
				t.Fatalf("Publish(%s) was canceled but the final name exists", name)
			}
		default:
			t.Fatalf("Publish(%s): %v", name, err)
		}
		if dots := dotFiles(t, drop); len(dots) > 0 {
			t.Fatalf("temporary files left after a canceled publish: %v", dots)
		}
	}
}

func TestPublisher_Publish_staleTemps(t *testing.T) {
	drop := t.TempDir()
	old := time.Now().Add(-2 * StaleTempAge)
	stale := safefs.TempName("a.fxe")
	fresh := safefs.TempName("b.fxe")
	foreign := ".someone-elses-file"
	for _, n := range []string{stale, fresh, foreign} {
		write(t, filepath.Join(drop, n), "partial")
	}
	for _, n := range []string{stale, foreign} {
		if err := os.Chtimes(filepath.Join(drop, n), old, old); err != nil {
			t.Fatal(err)
		}
	}
	pub, err := NewPublisher(drop)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(context.Background(), "c.fxe", []byte("c")); err != nil {
		t.Fatal(err)
	}
	got := dotFiles(t, drop)
	want := []string{foreign, fresh}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("dot files after the sweep: %v, want %v (only the stale temp removed)", got, want)
	}
}

func TestNewPublisher(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	write(t, file, "")
	for _, d := range []string{"", filepath.Join(t.TempDir(), "missing"), file} {
		if _, err := NewPublisher(d); err == nil {
			t.Errorf("NewPublisher(%q) succeeded", d)
		}
	}
}

func BenchmarkPublish(b *testing.B) {
	for _, size := range []int{4 << 10, 256 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			pub, err := NewPublisher(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			data := bytes.Repeat([]byte{0x5a}, size)
			b.SetBytes(int64(size))
			i := 0
			for b.Loop() {
				if err := pub.Publish(context.Background(), fmt.Sprintf("b-%09d.fxe", i), data); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
