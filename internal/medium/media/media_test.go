package media

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/config"
	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/ftps"
	"github.com/ferrybridge/ferry/internal/medium/ftps/vsftpdtest"
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

// ftpsMedium returns the medium block of an FTPS drop on srv.
func ftpsMedium(t *testing.T, srv *vsftpdtest.Server, drop string) medium.Config {
	t.Helper()
	remote, _ := srv.Drop(t, drop)
	return medium.Config{Type: medium.TypeFTPS, Address: srv.Addr, User: srv.User, PasswordFile: srv.PasswordFile, CAFile: srv.CAFile, Dir: remote}
}

func TestNewPublisher_FTPS(t *testing.T) {
	srv := vsftpdtest.Start(t)
	for _, tc := range []struct {
		name string
		edit func(*medium.Config)
	}{
		{"ca", func(*medium.Config) {}},
		{"ca and server name", func(c *medium.Config) { c.ServerName = "localhost" }},
		{"pinned", func(c *medium.Config) { c.CAFile, c.CertSHA256 = "", srv.CertSHA256 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ftpsMedium(t, srv, strings.ReplaceAll(tc.name, " ", "-"))
			tc.edit(&c)
			r := c
			r.Rescan = config.Duration(50 * time.Millisecond)
			roundTrip(t, c, r)
		})
	}
}

// warnings counts the log records at level WARN or above.
type warnings struct {
	slog.Handler
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		w.mu.Lock()
		w.msgs = append(w.msgs, r.Message)
		w.mu.Unlock()
	}
	return nil
}

func (w *warnings) count(substr string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, m := range w.msgs {
		if strings.Contains(m, substr) {
			n++
		}
	}
	return n
}

// TestNewPublisher_FTP checks that type ftp is plain FTP, and that every
// publisher and receiver built for it warns, so that an agent warns at
// every start.
func TestNewPublisher_FTP(t *testing.T) {
	srv := vsftpdtest.StartPlain(t)
	remote, _ := srv.Drop(t, "requests")
	c := medium.Config{Type: medium.TypeFTP, InsecurePlainFTP: true, Address: srv.Addr, User: srv.User, PasswordFile: srv.PasswordFile, Dir: remote}
	w := &warnings{Handler: slog.NewTextHandler(io.Discard, nil)}
	log := slog.New(w)
	for range 2 { // two starts
		p, pc, err := NewPublisher(c, log)
		if err != nil {
			t.Fatal(err)
		}
		r := c
		r.Rescan = config.Duration(50 * time.Millisecond)
		rc, rcl, err := NewReceiver(r, openInbox(t), log)
		if err != nil {
			t.Fatal(err)
		}
		if p == nil || rc == nil {
			t.Fatal("nil medium")
		}
		pc.Close()
		rcl.Close()
	}
	if n := w.count("plain FTP"); n != 4 {
		t.Fatalf("%d plain FTP warnings for two publishers and two receivers (%q), want 4", n, w.msgs)
	}
	r := c
	r.Rescan = config.Duration(50 * time.Millisecond)
	roundTrip(t, c, r)

	// Without insecure_plain_ftp, no medium.
	c.InsecurePlainFTP = false
	if _, _, err := NewPublisher(c, nil); err == nil || !strings.Contains(err.Error(), "insecure_plain_ftp") {
		t.Fatalf("NewPublisher of plain FTP without insecure_plain_ftp: %v", err)
	}
	if _, _, err := NewReceiver(c, openInbox(t), nil); err == nil || !strings.Contains(err.Error(), "insecure_plain_ftp") {
		t.Fatalf("NewReceiver of plain FTP without insecure_plain_ftp: %v", err)
	}
}

func TestNewPublisher_FTPSErrors(t *testing.T) {
	srv := vsftpdtest.Start(t)
	good := ftpsMedium(t, srv, "requests")

	loose := filepath.Join(t.TempDir(), "password")
	b, err := os.ReadFile(srv.PasswordFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(loose, b, 0o640); err != nil {
		t.Fatal(err)
	}
	c := good
	c.PasswordFile = loose
	if _, _, err := NewPublisher(c, nil); !errors.Is(err, ftps.ErrPasswordPermissions) {
		t.Errorf("NewPublisher with a loose password file: %v, want %v", err, ftps.ErrPasswordPermissions)
	}
	if _, _, err := NewReceiver(c, openInbox(t), nil); !errors.Is(err, ftps.ErrPasswordPermissions) {
		t.Errorf("NewReceiver with a loose password file: %v, want %v", err, ftps.ErrPasswordPermissions)
	}

	// Another server's certificate, by CA or by pin: nothing is published.
	other := vsftpdtest.Start(t)
	for _, tc := range []struct {
		name string
		edit func(*medium.Config)
	}{
		{"other ca", func(c *medium.Config) { c.CAFile = other.CAFile }},
		{"other pin", func(c *medium.Config) { c.CAFile, c.CertSHA256 = "", other.CertSHA256 }},
		{"wrong name", func(c *medium.Config) { c.ServerName = "boundary.example.gov" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			c.DialTimeout = config.Duration(5 * time.Second)
			p, pc, err := NewPublisher(c, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := p.Publish(ctx, "a.fxe", []byte("x")); !errors.Is(err, ftps.ErrCertificate) {
				t.Fatalf("Publish: %v, want %v", err, ftps.ErrCertificate)
			}
		})
	}
}
