package sftp

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
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/mediumtest"
)

// TestConformance runs the medium conformance suite over the in-process
// SFTP server, placing files with hardlink@openssh.com and with rename.
func TestConformance(t *testing.T) {
	t.Run("hardlink", func(t *testing.T) {
		mediumtest.Run(t, func(t *testing.T) (medium.Publisher, medium.Receiver, *medium.Inbox) {
			e := newEnv(t, envOptions{})
			return e.publisher(t), e.receiver(t), e.in
		})
	})
	t.Run("rename", func(t *testing.T) {
		mediumtest.Run(t, func(t *testing.T) (medium.Publisher, medium.Receiver, *medium.Inbox) {
			e := newEnv(t, envOptions{})
			p := e.publisher(t)
			p.noHardlink = true
			return p, e.receiver(t), e.in
		})
	})
}

// TestLarge sends a 256 MiB file through the in-process SFTP server.
func TestLarge(t *testing.T) {
	mediumtest.Large(t, func(t *testing.T) (medium.Publisher, medium.Receiver, *medium.Inbox) {
		e := newEnv(t, envOptions{maxSize: mediumtest.LargeSize})
		return e.publisher(t), e.receiver(t), e.in
	})
}

func TestNewPublisher_KeyPermissions(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		if err := os.Chmod(e.cfg.KeyFile, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := NewPublisher(e.cfg); !errors.Is(err, ErrKeyPermissions) {
			t.Errorf("key file mode %04o: NewPublisher: %v, want ErrKeyPermissions", mode, err)
		}
		if _, err := NewReceiver(e.cfg, e.in); !errors.Is(err, ErrKeyPermissions) {
			t.Errorf("key file mode %04o: NewReceiver: %v, want ErrKeyPermissions", mode, err)
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		if err := os.Chmod(e.cfg.KeyFile, mode); err != nil {
			t.Fatal(err)
		}
		p, err := NewPublisher(e.cfg)
		if err != nil {
			t.Fatalf("key file mode %04o: %v", mode, err)
		}
		p.Close()
	}
}

func TestNewPublisher_Config(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, tc := range []struct {
		name   string
		change func(*Config)
	}{
		{"no address", func(c *Config) { c.Address = "" }},
		{"address without port", func(c *Config) { c.Address = "127.0.0.1" }},
		{"no user", func(c *Config) { c.User = "" }},
		{"no key", func(c *Config) { c.KeyFile = "" }},
		{"no known_hosts", func(c *Config) { c.KnownHosts = "" }},
		{"missing known_hosts", func(c *Config) { c.KnownHosts = filepath.Join(t.TempDir(), "none") }},
		{"relative dir", func(c *Config) { c.Dir = "drop" }},
		{"negative timeout", func(c *Config) { c.OpTimeout = -time.Second }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.cfg
			tc.change(&cfg)
			if p, err := NewPublisher(cfg); err == nil {
				p.Close()
				t.Fatal("NewPublisher accepted the config")
			}
		})
	}
}

func TestPublisher_HostKeyChanged(t *testing.T) {
	e := newEnv(t, envOptions{})
	other, _ := newSigner(t)
	e.srv.pin(t, other.PublicKey())
	p := e.publisher(t)
	err := p.Publish(context.Background(), "a.fxe", []byte("secret"))
	if !errors.Is(err, ErrHostKey) {
		t.Fatalf("Publish to a server with another host key: %v, want ErrHostKey", err)
	}
	if names := mediumtest.DropNames(t, e.drop); len(names) != 0 {
		t.Fatalf("drop directory holds %v after a host key mismatch, want nothing", names)
	}
	// The receiver refuses the server just as well, and does not end Run.
	r := e.receiver(t)
	mediumtest.Start(t, r).Quiet(t, 200*time.Millisecond)
}

func TestNewPublisher_HostMissing(t *testing.T) {
	e := newEnv(t, envOptions{})
	other := newEnv(t, envOptions{}) // a known_hosts pinning another address
	cfg := e.cfg
	cfg.KnownHosts = other.cfg.KnownHosts
	if _, err := NewPublisher(cfg); !errors.Is(err, ErrHostKey) {
		t.Fatalf("NewPublisher with the host missing from known_hosts: %v, want ErrHostKey", err)
	}
	if _, err := NewReceiver(cfg, e.in); !errors.Is(err, ErrHostKey) {
		t.Fatalf("NewReceiver with the host missing from known_hosts: %v, want ErrHostKey", err)
	}
}

// TestPublisher_HostKeyAlgorithms checks that a server with several host
// keys is checked against the pinned one: the client must offer only the
// pinned key's algorithm, or the server may present an unpinned key.
func TestPublisher_HostKeyAlgorithms(t *testing.T) {
	ed, _ := newSigner(t)
	ec := newECDSASigner(t)
	for _, tc := range []struct {
		name   string
		pinned ssh.Signer
	}{{"ed25519", ed}, {"ecdsa", ec}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, ed, ec)
			srv.pin(t, tc.pinned.PublicKey())
			e := newEnvOn(t, srv, envOptions{})
			p := e.publisher(t)
			if err := p.Publish(context.Background(), "a.fxe", []byte("x")); err != nil {
				t.Fatalf("Publish with the %s host key pinned: %v", tc.name, err)
			}
		})
	}
}

func TestPublisher_ExistsOtherBytes(t *testing.T) {
	e := newEnv(t, envOptions{})
	mediumtest.ExistsOtherBytes(t, e.publisher(t), e.drop)
}

// TestPublisher_ConcurrentSameName races publishes of one name: those
// with the same bytes all succeed, and the file holds them.
func TestPublisher_ConcurrentSameName(t *testing.T) {
	for _, noHardlink := range []bool{false, true} {
		t.Run(fmt.Sprintf("noHardlink=%v", noHardlink), func(t *testing.T) {
			e := newEnv(t, envOptions{})
			data := mediumtest.RandomBytes(t, 200<<10)
			errs := make(chan error, 8)
			for range 8 {
				p := e.publisher(t) // a connection each, for a real race
				p.noHardlink = noHardlink
				go func() { errs <- p.Publish(context.Background(), "same.fxe", data) }()
			}
			for range 8 {
				if err := <-errs; err != nil {
					t.Errorf("Publish: %v", err)
				}
			}
			got, _ := os.ReadFile(filepath.Join(e.drop, "same.fxe"))
			if !bytes.Equal(got, data) {
				t.Error("the file does not hold the bytes published")
			}
			if names := mediumtest.DropNames(t, e.drop); !slices.Equal(names, []string{"same.fxe"}) {
				t.Errorf("drop holds %v, want only same.fxe", names)
			}
		})
	}
}

// TestJanitor: a temporary file left by a crash is never delivered, and is
// removed once older than TempMaxAge; a fresh one stays.
func TestJanitor(t *testing.T) {
	t.Run("publisher", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		e.cfg.TempMaxAge = time.Hour
		mediumtest.Janitor(t, e.drop, e.publisher(t), nil)
	})
	t.Run("receiver", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		e.cfg.TempMaxAge = time.Hour
		mediumtest.Janitor(t, e.drop, nil, e.receiver(t))
	})
}

// TestReceiver_IgnoresNames: besides the names no receiver takes, a
// directory and a symbolic link under valid names are left alone and
// never delivered.
func TestReceiver_IgnoresNames(t *testing.T) {
	e := newEnv(t, envOptions{})
	mediumtest.PlantNonRegular(t, e.drop)
	mediumtest.IgnoresNames(t, e.publisher(t), e.receiver(t), e.in, e.drop)
}

// TestAtomicVisibility: a lister of the in-process server's drop never
// sees a final name before its file is whole.
func TestAtomicVisibility(t *testing.T) {
	for _, noHardlink := range []bool{false, true} {
		t.Run(fmt.Sprintf("noHardlink=%v", noHardlink), func(t *testing.T) {
			e := newEnv(t, envOptions{})
			p := e.publisher(t)
			p.noHardlink = noHardlink
			mediumtest.AtomicVisibility(t, p, e.drop)
		})
	}
}

// TestReceiver_SizeCap: a file over the inbox size cap is recorded in
// quarantine and removed from the server, never put in the inbox.
func TestReceiver_SizeCap(t *testing.T) {
	e := newEnv(t, envOptions{maxSize: 1000})
	p := e.publisher(t)
	for name, n := range map[string]int{"a-big.fxe": 1001, "b-fits.fxe": 1000} {
		if err := p.Publish(context.Background(), name, mediumtest.RandomBytes(t, n)); err != nil {
			t.Fatal(err)
		}
	}
	r := mediumtest.Start(t, e.receiver(t))
	order, _ := mediumtest.Consume(t, r, e.in, 1)
	if order[0] != "b-fits.fxe" {
		t.Fatalf("received %s, want b-fits.fxe", order[0])
	}
	r.Quiet(t, 200*time.Millisecond)
	reason, err := os.ReadFile(filepath.Join(e.in.QuarantineDir(), "a-big.fxe"+medium.ReasonExt))
	if err != nil {
		t.Fatalf("no reason file for the file over the cap: %v", err)
	}
	if !strings.Contains(string(reason), "reason: "+medium.ReasonTooLarge) {
		t.Errorf("reason file says %q, want %s", reason, medium.ReasonTooLarge)
	}
	if names := mediumtest.DropNames(t, e.drop); len(names) != 0 {
		t.Errorf("drop holds %v, want the file over the cap removed", names)
	}
}

// TestReceiver_Duplicate: a file on the server whose name the inbox still
// holds is quarantined as a duplicate, not delivered.
func TestReceiver_Duplicate(t *testing.T) {
	e := newEnv(t, envOptions{})
	p := e.publisher(t)
	if err := p.Publish(context.Background(), "d.fxe", []byte("first")); err != nil {
		t.Fatal(err)
	}
	recv := e.receiver(t)
	r := mediumtest.Start(t, recv)
	if name := r.Next(t); name != "d.fxe" {
		t.Fatalf("received %s", name)
	}
	// Not processed; the same name arrives again while Run runs, and
	// again across a restart.
	if err := p.Publish(context.Background(), "d.fxe", []byte("second")); err != nil {
		t.Fatal(err)
	}
	r.Quiet(t, 300*time.Millisecond)
	r.Stop(t)
	if err := p.Publish(context.Background(), "d.fxe", []byte("third")); err != nil {
		t.Fatal(err)
	}
	r = mediumtest.Start(t, recv)
	if name := r.Next(t); name != "d.fxe" {
		t.Fatalf("received %s", name)
	}
	r.Quiet(t, 300*time.Millisecond)
	if got, _ := e.in.Read("d.fxe"); string(got) != "first" {
		t.Fatalf("inbox holds %q, want the first file", got)
	}
	for _, n := range []string{"d.fxe.reason", "d.fxe.1.reason"} {
		b, err := os.ReadFile(filepath.Join(e.in.QuarantineDir(), n))
		if err != nil || !strings.Contains(string(b), medium.ReasonDuplicateName) {
			t.Errorf("quarantine %s: %q, %v; want a duplicate_name reason", n, b, err)
		}
	}
	if names := mediumtest.DropNames(t, e.drop); len(names) != 0 {
		t.Errorf("drop holds %v, want the duplicates removed", names)
	}
}

// TestServerRestart kills the server (listener and every connection)
// while a large upload and a receiver run, then starts it again on the
// same port: the upload fails, the next one succeeds, and the receiver
// delivers everything exactly once.
func TestServerRestart(t *testing.T) {
	e := newEnv(t, envOptions{})
	p := e.publisher(t)
	recv := e.receiver(t)
	want := map[string][]byte{}
	for i := range 5 {
		name := fmt.Sprintf("a-%d.fxe", i)
		want[name] = mediumtest.RandomBytes(t, 2<<20)
		if err := p.Publish(context.Background(), name, want[name]); err != nil {
			t.Fatal(err)
		}
	}
	r := mediumtest.Start(t, recv)
	got := map[string][]byte{}
	consume := func(n int) {
		_, m := mediumtest.Consume(t, r, e.in, n)
		for k, v := range m {
			if _, dup := got[k]; dup {
				t.Fatalf("%s delivered twice", k)
			}
			got[k] = v
		}
	}
	consume(1)

	big := mediumtest.RandomBytes(t, 64<<20)
	errc := make(chan error, 1)
	go func() { errc <- p.Publish(context.Background(), "big.fxe", big) }()
	// Wait until the upload has started writing, then crash the server.
	deadline := time.Now().Add(mediumtest.Deadline)
	for !slices.ContainsFunc(mediumtest.DropNames(t, e.drop), func(n string) bool { return strings.HasPrefix(n, ".big.fxe.tmp-") }) {
		if time.Now().After(deadline) {
			t.Fatal("the upload never started")
		}
		time.Sleep(time.Millisecond)
	}
	e.srv.stop()
	if err := <-errc; err == nil {
		t.Fatal("Publish succeeded although the server died during the upload")
	}
	if slices.Contains(mediumtest.DropNames(t, e.drop), "big.fxe") {
		t.Fatal("a final name appeared for the interrupted upload")
	}
	// While the server is down, Publish fails fast enough and Run goes on.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if err := p.Publish(ctx, "down.fxe", []byte("x")); err == nil {
		t.Fatal("Publish succeeded while the server was down")
	}
	cancel()
	e.srv.restart(t)

	want["big.fxe"] = big
	if err := p.Publish(context.Background(), "big.fxe", big); err != nil {
		t.Fatalf("Publish after the restart: %v", err)
	}
	consume(len(want) - len(got))
	for name, data := range want {
		if !bytes.Equal(got[name], data) {
			t.Errorf("%s lost or changed across the server restart", name)
		}
	}
	r.Quiet(t, 200*time.Millisecond)
	// The temporary file of the interrupted upload was removed once the
	// connection came back.
	if names := mediumtest.DropNames(t, e.drop); len(names) != 0 {
		t.Errorf("drop holds %v after everything was received, want nothing", names)
	}
}

// TestReceiver_LostBeforeRemove loses the connection after a file is in
// the inbox and before its removal reaches the server: the file is
// delivered once, and once the receiver has reconnected it removes the
// file from the server instead of taking it again.
func TestReceiver_LostBeforeRemove(t *testing.T) {
	e := newEnv(t, envOptions{})
	data := mediumtest.RandomBytes(t, 4096)
	if err := e.publisher(t).Publish(context.Background(), "l-1.fxe", data); err != nil {
		t.Fatal(err)
	}
	e.srv.cutRemoves.Store(1)
	r := mediumtest.Start(t, e.receiver(t))
	_, got := mediumtest.Consume(t, r, e.in, 1)
	if !bytes.Equal(got["l-1.fxe"], data) {
		t.Fatal("the file was not delivered intact")
	}
	deadline := time.Now().Add(mediumtest.Deadline)
	for len(mediumtest.DropNames(t, e.drop)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("drop still holds %v: the removal was never retried", mediumtest.DropNames(t, e.drop))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if e.srv.cutRemoves.Load() >= 0 {
		t.Fatal("the connection was never cut at the removal")
	}
	r.Quiet(t, 500*time.Millisecond)
}

// TestReceiver_CutMidDownload cuts every connection several times while
// the receiver is in the middle of a download: nothing is lost, nothing
// is delivered twice, and no partial file reaches the inbox.
func TestReceiver_CutMidDownload(t *testing.T) {
	e := newEnv(t, envOptions{})
	p := e.publisher(t)
	want := map[string][]byte{}
	for i := range 4 {
		name := fmt.Sprintf("c-%d.fxe", i)
		want[name] = mediumtest.RandomBytes(t, 8<<20)
		if err := p.Publish(context.Background(), name, want[name]); err != nil {
			t.Fatal(err)
		}
	}
	// The consumer is not reading yet, so the receiver downloads one
	// file and blocks sending it; cut while it downloads the first.
	r := mediumtest.Start(t, e.receiver(t))
	for range 5 {
		deadline := time.Now().Add(mediumtest.Deadline)
		for !slices.ContainsFunc(mediumtest.DropNames(t, e.in.Dir()), func(n string) bool { return strings.HasPrefix(n, ".") }) {
			if time.Now().After(deadline) {
				t.Fatal("no download started")
			}
			time.Sleep(100 * time.Microsecond)
		}
		e.srv.cut()
	}
	_, got := mediumtest.Consume(t, r, e.in, len(want))
	for name, data := range want {
		if !bytes.Equal(got[name], data) {
			t.Errorf("%s lost or changed", name)
		}
	}
	r.Quiet(t, 200*time.Millisecond)
}

// TestReconnectNoLeak drops the connection a thousand times and
// checks that every goroutine and descriptor of the old connections (the
// client's and the in-process server's) is gone.
func TestReconnectNoLeak(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.cfg.Logger = slog.New(slog.DiscardHandler)
	p := e.publisher(t)
	mediumtest.NoLeak(t, 1000, p, e.srv.cut, func() { p.Close(); e.srv.cut() })
}

// TestOpTimeout: a server that stops answering (a black hole) fails the
// operation within OpTimeout, and the next publish reconnects.
func TestOpTimeout(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.cfg.OpTimeout = 300 * time.Millisecond
	e.cfg.Keepalive = time.Hour // the op timeout alone must do it
	p := e.publisher(t)
	if err := p.Publish(context.Background(), "a.fxe", []byte("a")); err != nil {
		t.Fatal(err)
	}
	// The server stops reading from its connections: a black hole.
	e.srv.freeze(true)
	errc := make(chan error, 1)
	go func() { errc <- p.Publish(context.Background(), "b.fxe", []byte("b")) }()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("Publish succeeded against a frozen server")
		}
	case <-time.After(3 * time.Second):
		e.srv.freeze(false)
		t.Fatal("Publish still running after 3s against a frozen server, want about the op timeout")
	}
	e.srv.freeze(false)
	if err := p.Publish(context.Background(), "b.fxe", []byte("b")); err != nil {
		t.Fatalf("Publish after the server answers again: %v", err)
	}
}

// TestKeepalive: a server that stops answering is noticed by the
// keepalive while the connection is idle, and the connection is closed.
func TestKeepalive(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.cfg.Keepalive = 100 * time.Millisecond
	p := e.publisher(t)
	if err := p.Publish(context.Background(), "a.fxe", []byte("a")); err != nil {
		t.Fatal(err)
	}
	cn, err := p.c.get(context.Background()) // the live connection
	if err != nil {
		t.Fatal(err)
	}
	e.srv.freeze(true)
	select {
	case <-cn.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("connection to a frozen server still open after 30 keepalive intervals")
	}
	e.srv.freeze(false)
	if err := p.Publish(context.Background(), "b.fxe", []byte("b")); err != nil {
		t.Fatalf("Publish after the server answers again: %v", err)
	}
}
