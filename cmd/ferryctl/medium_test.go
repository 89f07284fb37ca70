package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ferrybridge/ferry/internal/medium/sftp/sshdtest"
)

// mediumDeployment makes a deployment with `ferryctl init` and returns
// its directory.
func mediumDeployment(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "dep")
	mustFerryctl(t, 0, "init", dir)
	return dir
}

// putFile writes a file in dir last modified age ago.
func putFile(t *testing.T, dir, name string, age time.Duration) {
	t.Helper()
	p := filepath.Join(dir, name)
	writeFile(t, p, []byte("envelope"), 0o640)
	mt := time.Now().Add(-age)
	if err := os.Chtimes(p, mt, mt); err != nil {
		t.Fatal(err)
	}
}

// checkJSON runs medium check --json and decodes its output.
func checkJSON(t *testing.T, want int, args ...string) mediumCheckOutJSON {
	t.Helper()
	stdout, _ := mustFerryctl(t, want, append([]string{"medium", "check", "--json"}, args...)...)
	var out mediumCheckOutJSON
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, stdout)
	}
	return out
}

func TestMediumCheck_Dir(t *testing.T) {
	dep := mediumDeployment(t)
	dmzCfg := filepath.Join(dep, "dmz", "dmz.yaml")
	intranetCfg := filepath.Join(dep, "intranet", "intranet.yaml")
	requests := filepath.Join(dep, "exchange", "requests")

	t.Run("healthy", func(t *testing.T) {
		stdout, _ := mustFerryctl(t, 0, "medium", "check", "--config", dmzCfg)
		for _, want := range []string{
			"dmz agent, send (requests): dir " + requests, "dmz agent, receive (results)",
			"reachable    yes", "probe        written, renamed and removed", "problems     none",
		} {
			if !strings.Contains(stdout, want) {
				t.Errorf("output lacks %q:\n%s", want, stdout)
			}
		}
		out := checkJSON(t, 0, "--config", intranetCfg, "--direction", "receive")
		if out.Agent != "intranet" || !out.Healthy || len(out.Media) != 1 {
			t.Fatalf("--json: %+v", out)
		}
		if m := out.Media[0]; m.Direction != "receive" || m.Channel != "requests" || m.Type != "dir" ||
			!m.Reachable || !m.Writable || m.FreeBytes <= 0 || m.Problems == nil || !m.Healthy {
			t.Errorf("--json medium: %+v", m)
		}
	})

	t.Run("old file", func(t *testing.T) {
		putFile(t, requests, "old.fxe", 2*time.Hour)
		putFile(t, requests, "new.fxe", time.Second)
		t.Cleanup(func() {
			os.Remove(filepath.Join(requests, "old.fxe"))
			os.Remove(filepath.Join(requests, "new.fxe"))
		})
		stdout, stderr := mustFerryctl(t, 1, "medium", "check", "--config", dmzCfg, "--direction", "send")
		matches(t, "stdout", stdout, `waiting +2 files, the oldest old\.fxe for 2h0m[0-9]+s`)
		matches(t, "stdout", stdout, `- The oldest waiting file, old\.fxe, has waited 2h0m[0-9]+s, longer than --max-age 10m0s: nobody drains this medium \(is the intranet agent running`)
		matches(t, "stderr", stderr, `ferryctl: error: medium check: 1 problem found`)

		out := checkJSON(t, 1, "--config", intranetCfg, "--direction", "receive")
		m := out.Media[0]
		if out.Healthy || m.Healthy || m.Files != 2 || m.Oldest != "old.fxe" || m.OldestAgeSeconds < 7200 || m.OldestAgeSeconds > 7260 || len(m.Problems) != 1 {
			t.Errorf("--json: %+v", out)
		}
		// A longer --max-age, or none, accepts it.
		mustFerryctl(t, 0, "medium", "check", "--config", dmzCfg, "--max-age", "3h")
		mustFerryctl(t, 0, "medium", "check", "--config", dmzCfg, "--max-age", "0")
	})

	t.Run("unusable directory", func(t *testing.T) {
		// Root reads and writes any directory whatever its mode, so the
		// directory is made unusable by replacing it with a file.
		results := filepath.Join(dep, "exchange", "results")
		if err := os.Rename(results, results+".away"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(results); os.Rename(results+".away", results) })
		stdout, _ := mustFerryctl(t, 1, "medium", "check", "--config", dmzCfg)
		matches(t, "stdout", stdout, `receive \(results\): dir .*\n  reachable +no\n`)
		matches(t, "stdout", stdout, `- The directory .*/results does not exist\.`)
		writeFile(t, results, nil, 0o644)
		stdout, _ = mustFerryctl(t, 1, "medium", "check", "--config", dmzCfg, "--direction", "receive")
		matches(t, "stdout", stdout, `- The path .*/results is not a directory\.`)
		// The other direction is fine.
		mustFerryctl(t, 0, "medium", "check", "--config", dmzCfg, "--direction", "send")
	})

	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{
			{"medium", "check"},
			{"medium", "check", "--config", dmzCfg, "--direction", "sideways"},
			{"medium", "check", "--config", dmzCfg, "--max-age", "-1s"},
			{"medium", "check", "--config", dmzCfg, "--max-age", "soon"},
			{"medium", "check", "--config", dmzCfg, "extra"},
		} {
			mustFerryctl(t, 2, args...)
		}
		_, stderr := mustFerryctl(t, 1, "medium", "check", "--config", filepath.Join(dep, "missing.yaml"))
		matches(t, "stderr", stderr, `ferryctl: error: load config: .*missing\.yaml`)
	})
}

// TestMediumCheck_SFTP runs the check against a real OpenSSH sshd.
func TestMediumCheck_SFTP(t *testing.T) {
	srv := sshdtest.Start(t)
	remote, local := srv.Drop(t, "requests")
	dep := mediumDeployment(t)
	cfg := filepath.Join(dep, "dmz", "dmz.yaml")
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const dirSend = "send:                  # request medium: the DMZ only writes here\n  type: dir\n  dir: ../exchange/requests\n"
	if !strings.Contains(string(data), dirSend) {
		t.Fatalf("%s has no send block to replace:\n%s", cfg, data)
	}
	knownHosts := filepath.Join(t.TempDir(), "known_hosts")
	writeFile(t, knownHosts, []byte(srv.HostKeyLine()+"\n"), 0o600)
	sftpSend := "send:\n  type: sftp\n  address: " + srv.Addr + "\n  user: " + srv.User + "\n  key: " + srv.KeyFile +
		"\n  known_hosts: " + knownHosts + "\n  dir: " + remote + "\n  dial_timeout: 5s\n  op_timeout: 5s\n"
	writeFile(t, cfg, []byte(strings.Replace(string(data), dirSend, sftpSend, 1)), 0o640)
	_, _, hostKey, _, _, err := ssh.ParseKnownHosts([]byte(srv.HostKeyLine()))
	if err != nil {
		t.Fatal(err)
	}
	fp := ssh.FingerprintSHA256(hostKey)

	t.Run("healthy", func(t *testing.T) {
		putFile(t, local, "fresh.fxe", time.Minute)
		t.Cleanup(func() { os.Remove(filepath.Join(local, "fresh.fxe")) })
		stdout, _ := mustFerryctl(t, 0, "medium", "check", "--config", cfg, "--direction", "send")
		for _, want := range []string{
			"dmz agent, send (requests): sftp " + srv.User + "@" + srv.Addr + remote,
			"host key     " + fp + " (as pinned)", "probe        written, renamed and removed",
			"waiting      1 file, the oldest fresh.fxe for 1m", "problems     none",
		} {
			if !strings.Contains(stdout, want) {
				t.Errorf("output lacks %q:\n%s", want, stdout)
			}
		}
		out := checkJSON(t, 0, "--config", cfg, "--direction", "send")
		if m := out.Media[0]; m.Type != "sftp" || m.Identity != fp || !m.Writable || m.FreeBytes <= 0 || m.Files != 1 {
			t.Errorf("--json medium: %+v", m)
		}
	})

	t.Run("host key changed", func(t *testing.T) {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		other, err := ssh.NewPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, knownHosts, []byte(knownhosts.Line([]string{knownhosts.Normalize(srv.Addr)}, other)+"\n"), 0o600)
		t.Cleanup(func() { writeFile(t, knownHosts, []byte(srv.HostKeyLine()+"\n"), 0o600) })
		stdout, stderr := mustFerryctl(t, 1, "medium", "check", "--config", cfg, "--direction", "send")
		matches(t, "stdout", stdout, `reachable +no\n  host key +`+regexp.QuoteMeta(fp)+` \(NOT as pinned\)`)
		matches(t, "stdout", stdout, `- The server at `+regexp.QuoteMeta(srv.Addr)+` showed host key ssh-ed25519 `+regexp.QuoteMeta(fp)+`, which .*known_hosts does not pin for it`)
		matches(t, "stderr", stderr, `medium check: 1 problem found`)
		out := checkJSON(t, 1, "--config", cfg, "--direction", "send")
		if m := out.Media[0]; m.Healthy || m.Reachable || m.Identity != fp || len(m.Problems) != 1 || !strings.Contains(m.Problems[0], "does not pin") {
			t.Errorf("--json medium: %+v", m)
		}
	})
}
