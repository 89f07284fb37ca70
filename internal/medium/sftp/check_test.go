package sftp

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ferrybridge/ferry/internal/medium/internal/safefs"
	"github.com/ferrybridge/ferry/internal/medium/sftp/sshdtest"
)

// checkConfig is a Config for a fresh drop named name on srv.
func checkConfig(t *testing.T, srv *sshdtest.Server, name string) (cfg Config, local string) {
	t.Helper()
	remote, local := srv.Drop(t, name)
	return Config{
		Address: srv.Addr, User: srv.User, KeyFile: srv.KeyFile, KnownHosts: srv.KnownHosts, Dir: remote,
		DialTimeout: 5 * time.Second, OpTimeout: 5 * time.Second,
	}, local
}

// serverFingerprint is the SHA256 fingerprint of srv's host key.
func serverFingerprint(t *testing.T, srv *sshdtest.Server) string {
	t.Helper()
	_, _, key, _, _, err := ssh.ParseKnownHosts([]byte(srv.HostKeyLine()))
	if err != nil {
		t.Fatal(err)
	}
	return ssh.FingerprintSHA256(key)
}

// writeKnownHosts writes a known_hosts file pinning a fresh ed25519 key
// (not the server's) for host.
func writeKnownHosts(t *testing.T, host string) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(file, []byte(knownhosts.Line([]string{knownhosts.Normalize(host)}, key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestCheck_OpenSSH(t *testing.T) {
	srv := sshdtest.Start(t)
	ctx := context.Background()
	fp := serverFingerprint(t, srv)

	t.Run("healthy with files waiting", func(t *testing.T) {
		cfg, local := checkConfig(t, srv, "healthy")
		now := time.Now()
		for name, age := range map[string]time.Duration{
			"new.fxe": time.Second, "old.fxe": 2 * time.Hour, safefs.TempName("x.fxe"): 3 * time.Hour, "other": 4 * time.Hour,
		} {
			p := filepath.Join(local, name)
			if err := os.WriteFile(p, []byte("data"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
				t.Fatal(err)
			}
		}
		r, err := Check(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Healthy() || !r.Reachable || !r.Writable {
			t.Fatalf("report %+v: want healthy, reachable and writable", r)
		}
		if r.Identity != fp {
			t.Errorf("Identity %q, want the server's key %q", r.Identity, fp)
		}
		if want := "sftp " + srv.User + "@" + srv.Addr + cfg.Dir; r.Medium != want {
			t.Errorf("Medium %q, want %q", r.Medium, want)
		}
		if r.Files != 2 || r.Oldest != "old.fxe" || r.OldestAge < 2*time.Hour || r.OldestAge > 2*time.Hour+time.Minute || r.Temps != 1 {
			t.Errorf("Files %d Oldest %q (%v) Temps %d, want 2, old.fxe (2h), 1", r.Files, r.Oldest, r.OldestAge, r.Temps)
		}
		if r.FreeBytes <= 0 {
			t.Errorf("FreeBytes %d: OpenSSH offers statvfs@openssh.com", r.FreeBytes)
		}
		des, err := os.ReadDir(local)
		if err != nil {
			t.Fatal(err)
		}
		for _, de := range des {
			if strings.HasPrefix(de.Name(), ".ferry-check-") {
				t.Errorf("the probe %s was left behind", de.Name())
			}
		}
	})

	for _, tc := range []struct {
		name      string
		change    func(t *testing.T, cfg *Config)
		problem   string
		reachable bool
		identity  bool // the report names the key the server showed
	}{
		{"host key changed", func(t *testing.T, cfg *Config) { cfg.KnownHosts = writeKnownHosts(t, cfg.Address) },
			"does not pin", false, true},
		{"host key not pinned", func(t *testing.T, cfg *Config) { cfg.KnownHosts = writeKnownHosts(t, "other.example:22") },
			"does not pin", false, true},
		{"key file readable by others", func(t *testing.T, cfg *Config) {
			data, err := os.ReadFile(cfg.KeyFile)
			if err != nil {
				t.Fatal(err)
			}
			cfg.KeyFile = filepath.Join(t.TempDir(), "key")
			if err := os.WriteFile(cfg.KeyFile, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(cfg.KeyFile, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "key file", false, false},
		{"server down", func(t *testing.T, cfg *Config) {
			cfg.Address = closedAddr(t)
			cfg.KnownHosts = writeKnownHosts(t, cfg.Address)
		}, "cannot connect", false, false},
		{"drop missing", func(t *testing.T, cfg *Config) { cfg.Dir += "/missing" }, "does not exist", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _ := checkConfig(t, srv, strings.ReplaceAll(tc.name, " ", "-"))
			tc.change(t, &cfg)
			r, err := Check(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if r.Healthy() || r.Writable || r.Reachable != tc.reachable {
				t.Fatalf("report %+v: want a problem, not writable, reachable %v", r, tc.reachable)
			}
			if !strings.Contains(strings.ToLower(r.Problems[0]), tc.problem) {
				t.Errorf("problem %q does not say %q", r.Problems[0], tc.problem)
			}
			if tc.identity && r.Identity != fp {
				t.Errorf("Identity %q, want the key the server showed, %q", r.Identity, fp)
			}
			if tc.identity && !tc.reachable && !strings.Contains(r.Problems[0], fp) {
				t.Errorf("problem %q does not name the key the server showed", r.Problems[0])
			}
		})
	}

	t.Run("canceled", func(t *testing.T) {
		cfg, _ := checkConfig(t, srv, "canceled")
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := Check(ctx, cfg); err != context.Canceled {
			t.Errorf("Check after cancel: %v, want context.Canceled", err)
		}
	})
}

// closedAddr returns a 127.0.0.1 address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestCheck_Config(t *testing.T) {
	if _, err := Check(context.Background(), Config{Address: "h:22", User: "u", KeyFile: "k", KnownHosts: "kh", Dir: "relative"}); err == nil {
		t.Error("Check with a relative dir: no error")
	}
}
