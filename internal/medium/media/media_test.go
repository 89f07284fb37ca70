package media

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/config"
	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/sftp"
	"github.com/ferrybridge/ferry/internal/medium/sftp/sshdtest"
)

func openInbox(t *testing.T) *medium.Inbox {
	t.Helper()
	in, err := medium.OpenInbox(medium.InboxConfig{Dir: filepath.Join(t.TempDir(), "inbox"), QuarantineDir: filepath.Join(t.TempDir(), "q")})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// roundTrip publishes one file on send and claims it from recv.
func roundTrip(t *testing.T, send, recv medium.Config) {
	t.Helper()
	pub, pc, err := NewPublisher(send, nil)
	if err != nil {
		t.Fatal(err)
	}
	inbox := openInbox(t)
	rc, rcl, err := NewReceiver(recv, inbox, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []interface{ Close() error }{pc, rcl} {
		t.Cleanup(func() {
			if err := c.Close(); err != nil {
				t.Error(err)
			}
			if err := c.Close(); err != nil { // idempotent
				t.Errorf("second Close: %v", err)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	want := []byte("sealed envelope")
	if err := pub.Publish(ctx, "a.fxe", want); err != nil {
		t.Fatal(err)
	}
	out := make(chan string)
	done := make(chan error, 1)
	go func() { done <- rc.Run(ctx, out) }()
	select {
	case name := <-out:
		got, err := inbox.Read(name)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("claimed %s: %q, %v; want %q", name, got, err, want)
		}
	case <-ctx.Done():
		t.Fatal("nothing claimed within 20s")
	}
	cancel()
	<-done
}

func TestNewPublisher_Dir(t *testing.T) {
	d := t.TempDir()
	roundTrip(t, medium.Config{Type: medium.TypeDir, Dir: d}, medium.Config{Type: medium.TypeDir, Dir: d, Rescan: config.Duration(50 * time.Millisecond)})
}

func TestNewPublisher_SFTP(t *testing.T) {
	srv := sshdtest.Start(t)
	remote, local := srv.Drop(t, "requests")
	c := medium.Config{Type: medium.TypeSFTP, Address: srv.Addr, User: srv.User, Key: srv.KeyFile, KnownHosts: srv.KnownHosts, Dir: remote}
	r := c
	r.Rescan = config.Duration(50 * time.Millisecond)
	roundTrip(t, c, r)
	ents, err := os.ReadDir(local)
	if err != nil || len(ents) != 0 {
		t.Fatalf("drop holds %v (%v) after the claim, want nothing", ents, err)
	}
}

func TestNewPublisher_Errors(t *testing.T) {
	srv := sshdtest.Start(t)
	remote, _ := srv.Drop(t, "requests")
	good := medium.Config{Type: medium.TypeSFTP, Address: srv.Addr, User: srv.User, Key: srv.KeyFile, KnownHosts: srv.KnownHosts, Dir: remote}

	loose := filepath.Join(t.TempDir(), "key")
	b, err := os.ReadFile(srv.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(loose, b, 0o644); err != nil {
		t.Fatal(err)
	}
	unpinned := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(unpinned, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*medium.Config)
		want error
	}{
		{"loose key", func(c *medium.Config) { c.Key = loose }, sftp.ErrKeyPermissions},
		{"host not pinned", func(c *medium.Config) { c.KnownHosts = unpinned }, sftp.ErrHostKey},
		{"unchecked config", func(c *medium.Config) { c.Address = "" }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			if _, _, err := NewPublisher(c, nil); err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("NewPublisher: %v, want %v", err, tc.want)
			}
			if _, _, err := NewReceiver(c, openInbox(t), nil); err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("NewReceiver: %v, want %v", err, tc.want)
			}
		})
	}
}
