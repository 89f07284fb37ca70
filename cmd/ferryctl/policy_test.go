package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// ferryctl runs ferryctl in-process and returns its exit code and output.
func ferryctl(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// mustFerryctl runs ferryctl and fails the test unless it exits with want.
func mustFerryctl(t *testing.T, want int, args ...string) (stdout, stderr string) {
	t.Helper()
	code, stdout, stderr := ferryctl(t, args...)
	if code != want {
		t.Fatalf("ferryctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, stdout, stderr)
	}
	return stdout, stderr
}

// writeFile writes a file with exactly mode, whatever the umask.
func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func matches(t *testing.T, what, text, re string) {
	t.Helper()
	if !regexp.MustCompile(re).MatchString(text) {
		t.Errorf("%s does not match %q:\n%s", what, re, text)
	}
}

// policyFixture makes admin keys for names under dir/keys, installs their
// public keys in dir/admins, and writes a policy file.
func policyFixture(t *testing.T, names ...string) (dir, policy string) {
	t.Helper()
	dir = t.TempDir()
	keyDir := filepath.Join(dir, "keys")
	admins := filepath.Join(dir, "admins")
	if err := os.Mkdir(admins, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		mustFerryctl(t, 0, "admin", "keygen", n, "--dir", keyDir)
		data, err := os.ReadFile(filepath.Join(keyDir, n+".pub"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(admins, n+".pub"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	policy = filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte("version: 1\noperations: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, policy
}

func TestAdminKeygen(t *testing.T) {
	dir := t.TempDir()
	out, _ := mustFerryctl(t, 0, "admin", "keygen", "alice", "--dir", filepath.Join(dir, "k"))
	matches(t, "stdout", out, `(?m)^wrote .*/k/alice\.key \(private, 0600\)`)
	matches(t, "stdout", out, `(?m)^wrote .*/k/alice\.pub$`)
	matches(t, "stdout", out, `(?m)^public key alice\+[0-9a-f]{8}\+[A-Za-z0-9+/=]+ \(key id [0-9a-f]{8}\)$`)
	matches(t, "stdout", out, `(?m)^install alice\.pub in the intranet agent's admins directory`)
	if strings.Contains(out, "PRIVATE") {
		t.Fatal("keygen printed the private key")
	}
	fi, err := os.Stat(filepath.Join(dir, "k", "alice.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("alice.key: %v %v", fi, err)
	}

	_, errOut := mustFerryctl(t, 1, "admin", "keygen", "alice", "--dir", filepath.Join(dir, "k"))
	matches(t, "stderr", errOut, `(?m)^ferryctl: error: write admin key: .*alice\.key: file already exists$`)
	matches(t, "stderr", errOut, `(?m)^hint: keys are never overwritten`)

	_, errOut = mustFerryctl(t, 2, "admin", "keygen", "Alice", "--dir", dir)
	matches(t, "stderr", errOut, `invalid admin name "Alice"`)
}

func TestPolicySignVerify(t *testing.T) {
	dir, policy := policyFixture(t, "alice", "bob", "carol")
	key := func(n string) string { return filepath.Join(dir, "keys", n+".key") }
	admins := filepath.Join(dir, "admins")
	sigPath := policy + ".sig"

	// Unsigned.
	_, errOut := mustFerryctl(t, 1, "policy", "verify", "--admins", admins, policy)
	matches(t, "stderr", errOut, `policy\.yaml\.sig: no signature file: the policy is unsigned`)

	// One signature: under-signed at the default of two.
	out, _ := mustFerryctl(t, 0, "policy", "sign", "--key", key("alice"), policy)
	matches(t, "stdout", out, `(?m)^signed .*policy\.yaml as alice \(key [0-9a-f]{8}\)$`)
	matches(t, "stdout", out, `(?m)^.*policy\.yaml\.sig now holds 1 signature\(s\):\n  alice +key [0-9a-f]{8}$`)
	fi, err := os.Stat(sigPath)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("signature file: %v %v", fi, err)
	}
	out, errOut = mustFerryctl(t, 1, "policy", "verify", "--admins", admins, policy)
	matches(t, "stdout", out, `(?m)^  alice +key [0-9a-f]{8}  valid$`)
	matches(t, "stdout", out, `(?m)^1 of 2 required signatures: UNDER-SIGNED$`)
	matches(t, "stderr", errOut, `(?m)^ferryctl: error: .*policy\.yaml: policy under-signed: 1 of 2 required signatures by known admins$`)
	matches(t, "stderr", errOut, `(?m)^hint: another admin reviews the policy`)
	mustFerryctl(t, 0, "policy", "verify", "--admins", admins, "--required", "1", policy)

	// The same admin again changes nothing.
	before, _ := os.ReadFile(sigPath)
	out, _ = mustFerryctl(t, 0, "policy", "sign", "--key", key("alice"), policy)
	matches(t, "stdout", out, `alice \(key [0-9a-f]{8}\) has already signed .*; .*policy\.yaml\.sig is unchanged`)
	after, _ := os.ReadFile(sigPath)
	if !bytes.Equal(before, after) {
		t.Fatal("signing again changed the signature file")
	}
	mustFerryctl(t, 1, "policy", "verify", "--admins", admins, policy)

	// A second admin: two of two.
	out, _ = mustFerryctl(t, 0, "policy", "sign", "--key", key("bob"), policy)
	matches(t, "stdout", out, `now holds 2 signature\(s\):\n  alice +key [0-9a-f]{8}\n  bob +key [0-9a-f]{8}\n$`)
	out, errOut = mustFerryctl(t, 0, "policy", "verify", "--admins", admins, policy)
	matches(t, "stdout", out, `(?m)^policy     .*policy\.yaml \(sha256 [0-9a-f]{64}, 26 bytes\)$`)
	matches(t, "stdout", out, `(?m)^2 of 2 required signatures: ok$`)
	if errOut != "" {
		t.Fatalf("stderr: %s", errOut)
	}
	mustFerryctl(t, 1, "policy", "verify", "--admins", admins, "--required", "3", policy)

	// JSON for scripts.
	out, _ = mustFerryctl(t, 0, "policy", "verify", "--json", "--admins", admins, policy)
	var res policyVerifyJSON
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if !res.OK || res.Required != 2 || len(res.Signers) != 2 || len(res.Signatures) != 2 || !res.Signatures[1].Counted {
		t.Fatalf("JSON result %+v", res)
	}

	// An admin the verifier does not know: listed, not counted.
	outsider, _ := policyFixture(t, "mallory")
	mustFerryctl(t, 0, "policy", "sign", "--key", filepath.Join(outsider, "keys", "mallory.key"), policy)
	out, _ = mustFerryctl(t, 0, "policy", "verify", "--admins", admins, policy)
	matches(t, "stdout", out, `(?m)^  mallory +key [0-9a-f]{8}  unknown key, not counted$`)
	matches(t, "stdout", out, `(?m)^2 of 2 required signatures: ok$`)

	// One changed byte in the policy: mismatch, exit 1.
	data, _ := os.ReadFile(policy)
	data[0] = 'V'
	if err := os.WriteFile(policy, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut = mustFerryctl(t, 1, "policy", "verify", "--admins", admins, policy)
	matches(t, "stderr", errOut, `signature is for different policy bytes`)
	matches(t, "stderr", errOut, `(?m)^hint: the policy changed after it was signed`)
	_, errOut = mustFerryctl(t, 1, "policy", "sign", "--key", key("carol"), policy)
	matches(t, "stderr", errOut, `signature is for different policy bytes`)
	after2, _ := os.ReadFile(sigPath)
	if !bytes.Contains(after2, []byte("— mallory ")) || bytes.Contains(after2, []byte("— carol ")) {
		t.Fatal("a refused sign changed the signature file")
	}
}

func TestPolicyVerify_badInputs(t *testing.T) {
	dir, policy := policyFixture(t, "alice", "bob")
	admins := filepath.Join(dir, "admins")
	key := filepath.Join(dir, "keys", "alice.key")
	mustFerryctl(t, 0, "policy", "sign", "--key", key, policy)
	mustFerryctl(t, 0, "policy", "sign", "--key", filepath.Join(dir, "keys", "bob.key"), policy)

	t.Run("garbled signature", func(t *testing.T) {
		sig, _ := os.ReadFile(policy + ".sig")
		// Change one character inside bob's Ed25519 signature, keeping
		// the key hash at the start of the base64 intact.
		i := bytes.Index(sig, []byte("— bob "))
		end := i + bytes.IndexByte(sig[i:], '\n')
		bad := bytes.Clone(sig)
		if bad[end-10] == 'A' {
			bad[end-10] = 'B'
		} else {
			bad[end-10] = 'A'
		}
		p := filepath.Join(t.TempDir(), "p.yaml")
		data, _ := os.ReadFile(policy)
		writeFile(t, p, data, 0o644)
		writeFile(t, p+".sig", bad, 0o644)
		_, errOut := mustFerryctl(t, 1, "policy", "verify", "--admins", admins, p)
		matches(t, "stderr", errOut, `p\.yaml\.sig: policy signature: bad signature by admin bob`)
	})
	t.Run("key file 0644 refused", func(t *testing.T) {
		open := filepath.Join(t.TempDir(), "alice.key")
		data, _ := os.ReadFile(key)
		writeFile(t, open, data, 0o644)
		_, errOut := mustFerryctl(t, 1, "policy", "sign", "--key", open, policy)
		matches(t, "stderr", errOut, `alice\.key: private key file permissions too open: mode 0644, want 0600`)
	})
	t.Run("malformed admin key names file and line", func(t *testing.T) {
		bad := t.TempDir()
		writeFile(t, filepath.Join(bad, "eve.pub"), []byte("# eve\neve+00000000+AAAA\n"), 0o644)
		_, errOut := mustFerryctl(t, 1, "policy", "verify", "--admins", bad, policy)
		matches(t, "stderr", errOut, `eve\.pub:2: not an admin public key`)
	})
	t.Run("usage errors", func(t *testing.T) {
		_, errOut := mustFerryctl(t, 2, "policy", "verify", policy)
		matches(t, "stderr", errOut, `--admins is required`)
		mustFerryctl(t, 2, "policy", "verify", "--admins", admins, "--required", "0", policy)
		mustFerryctl(t, 2, "policy", "sign", policy)
		mustFerryctl(t, 2, "policy", "sign", "--key", key)
	})
	t.Run("help lists exit codes", func(t *testing.T) {
		out, _ := mustFerryctl(t, 0, "help", "policy", "verify")
		matches(t, "stdout", out, `Exit codes:`)
	})
}
