package mediumtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/medium"
)

// AtomicVisibility checks that a final name appears only with its whole
// file: while p publishes files of a few MiB into drop (the local
// directory behind the drop), a lister reads the directory as fast as it
// can and stats every valid name it sees, and every one it sees holds
// every byte already.
func AtomicVisibility(t *testing.T, p medium.Publisher, drop string) {
	t.Helper()
	const n, size = 6, 4 << 20
	stop := make(chan struct{})
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		partial  []string
		seen     = map[string]bool{}
		listings int
	)
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			ents, err := os.ReadDir(drop)
			if err != nil {
				continue
			}
			mu.Lock()
			listings++
			mu.Unlock()
			for _, e := range ents {
				if !medium.ValidName(e.Name()) {
					continue
				}
				fi, err := os.Lstat(filepath.Join(drop, e.Name()))
				if err != nil {
					continue // removed meanwhile
				}
				mu.Lock()
				seen[e.Name()] = true
				if fi.Size() != size {
					partial = append(partial, fmt.Sprintf("%s with %d of %d bytes", e.Name(), fi.Size(), size))
				}
				mu.Unlock()
			}
		}
	})
	for i := range n {
		mustPublish(t, p, fmt.Sprintf("v-%d.fxe", i), RandomBytes(t, size))
	}
	// Let the lister see the last one too.
	deadline := time.Now().Add(Deadline)
	for {
		mu.Lock()
		done := len(seen) == n
		mu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d listings saw %d of %d names", listings, len(seen), n)
	if len(partial) > 0 {
		t.Fatalf("a lister saw final names before their files were whole, %d times: %v", len(partial), partial[:min(len(partial), 5)])
	}
	if len(seen) != n {
		t.Fatalf("the lister saw %d of %d published names", len(seen), n)
	}
}

// IgnoresNames checks that a receiver leaves alone, and never delivers,
// names that are not envelope names: temporary names and others that
// fail [medium.ValidName]. It plants them in drop (the local directory
// behind the drop), publishes one envelope, and checks that only it
// arrives and that the planted names are untouched, as are any the
// caller planted before (a remote medium leaves a directory or a
// symbolic link under a valid name alone too; the directory medium
// quarantines them instead).
func IgnoresNames(t *testing.T, p medium.Publisher, recv medium.Receiver, in *medium.Inbox, drop string) {
	t.Helper()
	for _, n := range []string{".a.fxe.tmp-0123456789abcdef", "UPPER.fxe", "noext", ".hidden.fxe", "a.fxe.part", "white space.fxe"} {
		if err := os.WriteFile(filepath.Join(drop, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(drop, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	before := DropNames(t, drop)
	want := RandomBytes(t, 100)
	if err := p.Publish(context.Background(), "ok.fxe", want); err != nil {
		t.Fatal(err)
	}
	r := Start(t, recv)
	order, got := Consume(t, r, in, 1)
	if order[0] != "ok.fxe" || !bytes.Equal(got["ok.fxe"], want) {
		t.Fatalf("received %s, want ok.fxe with its bytes", order[0])
	}
	r.Quiet(t, 300*time.Millisecond)
	if after := DropNames(t, drop); !slices.Equal(after, before) {
		t.Fatalf("drop holds %v, want the ignored names %v untouched", after, before)
	}
	if names, err := in.List(); err != nil || len(names) != 0 {
		t.Fatalf("inbox holds %v (%v), want nothing", names, err)
	}
}

// PlantNonRegular puts a directory and a symbolic link to a file outside
// the drop under valid envelope names in drop, for [IgnoresNames] on a
// remote medium.
func PlantNonRegular(t *testing.T, drop string) {
	t.Helper()
	if err := os.Mkdir(filepath.Join(drop, "dir.fxe"), 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("not yours"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(drop, "link.fxe")); err != nil {
		t.Fatal(err)
	}
}
