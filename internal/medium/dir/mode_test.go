package dir

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestPublisher_modeWhateverUmask: a published envelope is 0640 even
// under the services' UMask=0077, so that the receiving zone's user, in
// the file's group, can read it.
func TestPublisher_modeWhateverUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	drop := t.TempDir()
	p, err := NewPublisher(drop)
	if err != nil {
		t.Fatal(err)
	}
	name := "00000000000000000001-0123456789abcdef0123456789abcdef.fxe"
	if err := p.Publish(context.Background(), name, []byte("envelope")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(drop, name))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Fatalf("published with mode %v, want 0640", fi.Mode().Perm())
	}
}
