package ftps

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/medium/ftps/vsftpdtest"
	"github.com/ferrybridge/ferry/internal/medium/mediumtest"
)

// TestPublisher_Certificate: a wrong pin or a CA that did not issue the
// server's certificate fails with ErrCertificate before the login, and
// nothing is written.
func TestPublisher_Certificate(t *testing.T) {
	srv := vsftpdtest.Start(t)
	other := vsftpdtest.Start(t) // another CA and certificate
	for _, tc := range []struct {
		name   string
		change func(*Config)
	}{
		{"wrong pin", func(c *Config) { c.CAFile, c.CertSHA256 = "", strings.Repeat("ab", 32) }},
		{"other server's pin", func(c *Config) { c.CAFile, c.CertSHA256 = "", other.CertSHA256 }},
		{"other CA", func(c *Config) { c.CAFile = other.CAFile }},
		{"wrong server name", func(c *Config) { c.ServerName = "boundary.example" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, srv, envOptions{})
			tc.change(&e.cfg)
			p := e.publisher(t)
			err := p.Publish(context.Background(), "a.fxe", []byte("secret"))
			if !errors.Is(err, ErrCertificate) {
				t.Fatalf("Publish: %v, want ErrCertificate", err)
			}
			if names := mediumtest.DropNames(t, e.drop); len(names) != 0 {
				t.Fatalf("drop holds %v after a certificate failure, want nothing", names)
			}
			// The receiver refuses the server just as well, and goes on.
			mediumtest.Start(t, e.receiver(t)).Quiet(t, 200*time.Millisecond)
		})
	}
}

func TestNewPublisher_PasswordPermissions(t *testing.T) {
	srv := vsftpdtest.Start(t)
	e := newEnv(t, srv, envOptions{})
	pw, err := os.ReadFile(srv.PasswordFile)
	if err != nil {
		t.Fatal(err)
	}
	e.cfg.PasswordFile = filepath.Join(t.TempDir(), "password")
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		if err := os.WriteFile(e.cfg.PasswordFile, pw, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(e.cfg.PasswordFile, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := NewPublisher(e.cfg); !errors.Is(err, ErrPasswordPermissions) {
			t.Errorf("password file mode %04o: NewPublisher: %v, want ErrPasswordPermissions", mode, err)
		}
		if _, err := NewReceiver(e.cfg, e.in); !errors.Is(err, ErrPasswordPermissions) {
			t.Errorf("password file mode %04o: NewReceiver: %v, want ErrPasswordPermissions", mode, err)
		}
	}
	if err := os.Chmod(e.cfg.PasswordFile, 0o600); err != nil {
		t.Fatal(err)
	}
	// One trailing newline is trimmed: the login works.
	if err := os.WriteFile(e.cfg.PasswordFile, append(bytes.TrimRight(pw, "\n"), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.publisher(t).Publish(context.Background(), "a.fxe", []byte("a")); err != nil {
		t.Fatalf("Publish with a 0600 password file: %v", err)
	}
}

func TestNewPublisher_Config(t *testing.T) {
	base := Config{Address: "127.0.0.1:21", User: "u", PasswordFile: "/nonexistent", Dir: "/drop", CertSHA256: strings.Repeat("ab", 32)}
	for _, tc := range []struct {
		name   string
		change func(*Config)
	}{
		{"no address", func(c *Config) { c.Address = "" }},
		{"address without port", func(c *Config) { c.Address = "127.0.0.1" }},
		{"no user", func(c *Config) { c.User = "" }},
		{"no password file", func(c *Config) { c.PasswordFile = "" }},
		{"relative dir", func(c *Config) { c.Dir = "drop" }},
		{"neither CA nor pin", func(c *Config) { c.CertSHA256 = "" }},
		{"both CA and pin", func(c *Config) { c.CAFile = "/ca.pem" }},
		{"plain with a pin", func(c *Config) { c.Plain = true }},
		{"negative timeout", func(c *Config) { c.OpTimeout = -time.Second }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.change(&cfg)
			if _, err := cfg.withDefaults(); err == nil {
				t.Fatal("withDefaults accepted the config")
			}
		})
	}
	if _, err := base.withDefaults(); err != nil {
		t.Fatalf("withDefaults refused a good config: %v", err)
	}
}

// recordHandler keeps the messages of the records logged at WARN or above.
type recordHandler struct {
	mu   sync.Mutex
	msgs []string
}

func (h *recordHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, r.Message)
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordHandler) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

// TestPlain: plain FTP is refused without Plain; with it, every
// Publisher and Receiver warns, and the medium works.
func TestPlain(t *testing.T) {
	srv := vsftpdtest.StartPlain(t)
	e := newEnv(t, srv, envOptions{})
	cfg := e.cfg
	cfg.Plain = false
	if p, err := NewPublisher(cfg); err == nil {
		p.Close()
		t.Fatal("NewPublisher accepted plain FTP without Plain")
	}
	if r, err := NewReceiver(cfg, e.in); err == nil {
		r.Close()
		t.Fatal("NewReceiver accepted plain FTP without Plain")
	}
	h := &recordHandler{}
	e.cfg.Logger = slog.New(h)
	p := e.publisher(t)
	r := mediumtest.Start(t, e.receiver(t))
	if n := h.count(plainWarning); n != 2 {
		t.Fatalf("%d warnings %q for a publisher and a receiver, want 2", n, plainWarning)
	}
	if err := p.Publish(context.Background(), "p.fxe", []byte("plain")); err != nil {
		t.Fatal(err)
	}
	_, got := mediumtest.Consume(t, r, e.in, 1)
	if string(got["p.fxe"]) != "plain" {
		t.Fatalf("received %q", got["p.fxe"])
	}
}

func TestPublisher_ExistsOtherBytes(t *testing.T) {
	srv := vsftpdtest.Start(t)
	e := newEnv(t, srv, envOptions{})
	mediumtest.ExistsOtherBytes(t, e.publisher(t), e.drop)
}

// TestJanitor: a temporary file left by a crash is never delivered, and is
// removed once older than TempMaxAge; a fresh one stays.
func TestJanitor(t *testing.T) {
	srv := vsftpdtest.Start(t)
	t.Run("publisher", func(t *testing.T) {
		e := newEnv(t, srv, envOptions{})
		e.cfg.TempMaxAge = time.Hour
		mediumtest.Janitor(t, e.drop, e.publisher(t), nil)
	})
	t.Run("receiver", func(t *testing.T) {
		e := newEnv(t, srv, envOptions{})
		e.cfg.TempMaxAge = time.Hour
		mediumtest.Janitor(t, e.drop, nil, e.receiver(t))
	})
}

// TestServerRestart stops vsftpd during a large upload while a receiver
// runs, and starts it again: the upload fails, the next succeeds, the
// temporary file is gone, and the receiver loses nothing.
func TestServerRestart(t *testing.T) {
	srv := vsftpdtest.Start(t)
	e := newEnv(t, srv, envOptions{})
	p := e.publisher(t)
	r := mediumtest.Start(t, e.receiver(t))
	mediumtest.ServerRestart(t, srv, p, r, e.in, e.drop, 48<<20)
}

// TestReceiver_ManySmall: many small files arrive exactly once, in name
// order, over one connection.
func TestReceiver_ManySmall(t *testing.T) {
	srv := vsftpdtest.Start(t)
	e := newEnv(t, srv, envOptions{})
	p := e.publisher(t)
	const n = 150
	want := map[string][]byte{}
	for i := range n {
		name := fmt.Sprintf("s-%04d.fxe", i)
		want[name] = []byte(name)
		if err := p.Publish(context.Background(), name, want[name]); err != nil {
			t.Fatal(err)
		}
	}
	r := mediumtest.Start(t, e.receiver(t))
	order, got := mediumtest.Consume(t, r, e.in, n)
	if !slices.IsSorted(order) {
		t.Errorf("received out of name order")
	}
	for name, data := range want {
		if !bytes.Equal(got[name], data) {
			t.Errorf("%s lost or changed", name)
		}
	}
	r.Quiet(t, 200*time.Millisecond)
}

// TestCheck: a healthy drop reports the certificate's SHA-256, writable,
// the waiting files and temps; a wrong pin is a problem naming the
// certificate the server showed.
func TestCheck(t *testing.T) {
	srv := vsftpdtest.Start(t)
	e := newEnv(t, srv, envOptions{})
	if err := e.publisher(t).Publish(context.Background(), "w.fxe", []byte("w")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.drop, ".w.fxe.tmp-0123456789abcdef"), []byte("x"), 0o666); err != nil {
		t.Fatal(err)
	}
	rep, err := Check(context.Background(), e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Healthy() || !rep.Reachable || !rep.Writable || rep.Identity != srv.CertSHA256 || rep.Files != 1 || rep.Oldest != "w.fxe" || rep.Temps != 1 {
		t.Fatalf("report %+v, want healthy, writable, identity %s, 1 file w.fxe, 1 temp", rep, srv.CertSHA256)
	}
	e.cfg.CAFile, e.cfg.CertSHA256 = "", strings.Repeat("ab", 32)
	rep, err = Check(context.Background(), e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Healthy() || rep.Identity != srv.CertSHA256 || !strings.Contains(strings.Join(rep.Problems, " "), srv.CertSHA256) {
		t.Fatalf("report %+v, want a problem naming %s", rep, srv.CertSHA256)
	}
}
