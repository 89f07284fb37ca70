package dir

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/medium"
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

// TestReceiver_receiveErrors: a drop directory that cannot be listed is a
// receive error, reported to the inbox's OnReceiveError at each failed
// scan; one that is not there yet (a disc not mounted) is waited for and
// reported as nothing.
func TestReceiver_receiveErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		drop   func(dir string) string
		errors bool
	}{
		{"not a directory", func(dir string) string {
			p := filepath.Join(dir, "drop")
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, true},
		{"not there yet", func(dir string) string { return filepath.Join(dir, "disc") }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var n atomic.Int32
			in, err := medium.OpenInbox(medium.InboxConfig{Dir: filepath.Join(dir, "inbox"), QuarantineDir: filepath.Join(dir, "q"),
				OnReceiveError: func() { n.Add(1) }})
			if err != nil {
				t.Fatal(err)
			}
			r, err := NewReceiver(ReceiverConfig{Dir: tc.drop(dir), Inbox: in, Rescan: 10 * time.Millisecond, PollOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_ = r.Run(ctx, make(chan string, 1))
			if got := n.Load(); (got > 1) != tc.errors {
				t.Fatalf("%d receive errors reported, want errors: %v", got, tc.errors)
			}
		})
	}
}
