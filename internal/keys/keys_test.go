package keys

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeZone(t *testing.T, name string) (string, *Zone) {
	t.Helper()
	z, err := Generate(name)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "keys")
	if err := z.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	return dir, z
}

func TestLoadZone_RoundTrip(t *testing.T) {
	dir, z := writeZone(t, "dmz")
	got, err := LoadZone(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "dmz" || got.Signer.KeyHash() != z.Signer.KeyHash() || got.Recipient.String() != z.Recipient.String() {
		t.Fatalf("loaded zone differs from written one")
	}
	for _, f := range []string{SignKeyFile, AgeKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %04o, want 0600", f, fi.Mode().Perm())
		}
	}
}

func TestLoadZone_RefusesLoosePermissions(t *testing.T) {
	for _, f := range []string{SignKeyFile, AgeKeyFile} {
		for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o644} {
			t.Run(f+"/"+mode.String(), func(t *testing.T) {
				dir, _ := writeZone(t, "intranet")
				path := filepath.Join(dir, f)
				if err := os.Chmod(path, mode); err != nil {
					t.Fatal(err)
				}
				_, err := LoadZone(dir)
				if err == nil {
					t.Fatal("LoadZone accepted a private key file with loose permissions")
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name the file %s", err, path)
				}
			})
		}
	}
}

func TestLoadZone_RefusesSymlinkAndMissing(t *testing.T) {
	dir, _ := writeZone(t, "dmz")
	key := filepath.Join(dir, AgeKeyFile)
	moved := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.Rename(key, moved); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadZone(dir); err == nil || !strings.Contains(err.Error(), "missing") || !strings.Contains(err.Error(), key) {
		t.Fatalf("missing key: got %v, want an error naming %s as missing", err, key)
	}
	if err := os.Symlink(moved, key); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadZone(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("symlinked key: got %v, want a refusal", err)
	}
}

func TestLoadZone_MismatchedKeys(t *testing.T) {
	dir, _ := writeZone(t, "dmz")
	other, _ := writeZone(t, "dmz")
	data, err := os.ReadFile(filepath.Join(other, SignPubFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, SignPubFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadZone(dir); err == nil || !strings.Contains(err.Error(), "do not match") {
		t.Fatalf("got %v, want a mismatch error", err)
	}
}

func TestWriteDir_NeverOverwrites(t *testing.T) {
	dir, _ := writeZone(t, "dmz")
	z2, err := Generate("dmz")
	if err != nil {
		t.Fatal(err)
	}
	if err := z2.WriteDir(dir); err == nil {
		t.Fatal("WriteDir overwrote existing keys")
	}
}

func TestLoadPeer(t *testing.T) {
	dir, _ := writeZone(t, "dmz")
	_, peer := writeZone(t, "intranet")
	if err := WritePeer(dir, peer.Public()); err != nil {
		t.Fatal(err)
	}
	p, err := LoadPeer(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "intranet" || p.Verifier.KeyHash() != peer.Verifier.KeyHash() || Fingerprint(p.Recipient) != Fingerprint(peer.Recipient) {
		t.Fatal("peer keys differ")
	}
	if err := os.WriteFile(filepath.Join(dir, PeerAgePubFile), []byte("age1notakey\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPeer(dir); err == nil || !strings.Contains(err.Error(), PeerAgePubFile) {
		t.Fatalf("got %v, want an error naming %s", err, PeerAgePubFile)
	}
}

func TestLoadAgent(t *testing.T) {
	dir, _ := writeZone(t, "dmz")
	_, peer := writeZone(t, "intranet")
	if err := WritePeer(dir, peer.Public()); err != nil {
		t.Fatal(err)
	}
	z, p, err := LoadAgent(dir, "dmz", "intranet")
	if err != nil || z.Name != "dmz" || p.Name != "intranet" {
		t.Fatalf("LoadAgent: %v", err)
	}
	for _, tc := range []struct{ zone, peer, want string }{
		{"intranet", "intranet", `the config says zone "intranet"`},
		{"dmz", "other", `the config says peer "other"`},
	} {
		if _, _, err := LoadAgent(dir, tc.zone, tc.peer); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadAgent(%s, %s): %v, want an error containing %q", tc.zone, tc.peer, err, tc.want)
		}
	}
	if err := os.Chmod(filepath.Join(dir, SignKeyFile), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadAgent(dir, "dmz", "intranet"); err == nil || !strings.Contains(err.Error(), SignKeyFile) {
		t.Errorf("loose key: %v, want an error naming %s", err, SignKeyFile)
	}
}

func TestGenerate_ZoneNames(t *testing.T) {
	for _, name := range []string{"", "DMZ", "dmz zone", "dmz+1", "1dmz", strings.Repeat("a", 33)} {
		if _, err := Generate(name); err == nil {
			t.Errorf("Generate(%q) succeeded, want an error", name)
		}
	}
}

func TestFingerprintAndKeyID(t *testing.T) {
	_, z := writeZone(t, "dmz")
	if fp := Fingerprint(z.Recipient); len(fp) != 16 {
		t.Errorf("fingerprint %q, want 16 hex digits", fp)
	}
	if id := KeyID(0x1a2b); id != "00001a2b" {
		t.Errorf("KeyID = %q", id)
	}
}
