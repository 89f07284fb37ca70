package keys

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/ferrybridge/ferry/internal/audit"
)

// writeAudit generates zone's audit keys into a fresh directory.
func writeAudit(t *testing.T, zone string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	if err := GenerateAudit(dir, zone); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestGenerateAudit_Files(t *testing.T) {
	dir := writeAudit(t, "dmz")
	for _, f := range []struct {
		name string
		mode os.FileMode
		re   string
	}{
		{AuditKeyFile, 0o600, `^PRIVATE\+KEY\+ferry\.audit/dmz\+[0-9a-f]{8}\+[A-Za-z0-9+/=]+\n$`},
		{AuditPubFile, 0o644, `^ferry\.audit/dmz\+[0-9a-f]{8}\+[A-Za-z0-9+/=]+\n$`},
		{AuditHMACKeyFile, 0o600, `^[0-9a-f]{64}\n$`},
	} {
		path := filepath.Join(dir, f.name)
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm() != f.mode {
			t.Errorf("%s: mode %v, want a regular file %04o", f.name, fi.Mode(), f.mode)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(f.re).Match(data) {
			t.Errorf("%s: content does not match %s", f.name, f.re)
		}
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("key directory mode %04o, want 0700", fi.Mode().Perm())
	}
}

func TestLoadAudit_RoundTrip(t *testing.T) {
	dir := writeAudit(t, "intranet")
	a, err := LoadAudit(dir, "intranet")
	if err != nil {
		t.Fatal(err)
	}
	if a.Signer.Name() != audit.Origin("intranet") || a.Verifier.Name() != audit.Origin("intranet") {
		t.Errorf("names %q, %q, want %q", a.Signer.Name(), a.Verifier.Name(), audit.Origin("intranet"))
	}
	if a.Signer.KeyHash() != a.Verifier.KeyHash() {
		t.Error("signer and verifier key hashes differ")
	}
	hexKey, err := os.ReadFile(filepath.Join(dir, AuditHMACKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.HMACKey) != audit.HMACKeySize || string(hexKey) != hex.EncodeToString(a.HMACKey)+"\n" {
		t.Errorf("HMAC key %x does not match the file %q", a.HMACKey, hexKey)
	}
	if bytes.Equal(a.HMACKey, make([]byte, audit.HMACKeySize)) {
		t.Error("HMAC key is all zeros")
	}
	if _, err := audit.NewHasher(a.HMACKey); err != nil {
		t.Errorf("audit.NewHasher refuses the loaded key: %v", err)
	}

	// A second zone's keys are independent of the first's.
	other, err := LoadAudit(writeAudit(t, "intranet"), "intranet")
	if err != nil {
		t.Fatal(err)
	}
	if other.Signer.KeyHash() == a.Signer.KeyHash() || bytes.Equal(other.HMACKey, a.HMACKey) {
		t.Error("two generated audit key sets share a key")
	}
}

// A signature made with the loaded Signer verifies with the verifier an
// auditor reads from audit.pub, both for a bare note and for a checkpoint
// opened by the audit package; another zone's key does not.
func TestReadAuditPub_VerifiesSigner(t *testing.T) {
	dir := writeAudit(t, "dmz")
	a, err := LoadAudit(dir, "dmz")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := note.Sign(&note.Note{Text: "ferry.audit/dmz\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"}, a.Signer)
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(dir, AuditPubFile)
	for _, zone := range []string{"dmz", ""} {
		v, err := ReadAuditPub(pub, zone)
		if err != nil {
			t.Fatalf("ReadAuditPub(%q): %v", zone, err)
		}
		if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
			t.Errorf("ReadAuditPub(%q): signature does not verify: %v", zone, err)
		}
		cp, err := audit.OpenCheckpoint(msg, v, audit.Origin("dmz"))
		if err != nil {
			t.Errorf("ReadAuditPub(%q): audit.OpenCheckpoint: %v", zone, err)
		} else if cp.Size != 3 {
			t.Errorf("checkpoint size %d, want 3", cp.Size)
		}
	}

	otherPub := filepath.Join(writeAudit(t, "dmz"), AuditPubFile)
	v, err := ReadAuditPub(otherPub, "dmz")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(msg, note.VerifierList(v)); err == nil {
		t.Error("a signature verified with another audit key")
	}
}

func TestReadAuditPub_Refusals(t *testing.T) {
	dir := writeAudit(t, "dmz")
	pub := filepath.Join(dir, AuditPubFile)
	z, err := Generate("dmz")
	if err != nil {
		t.Fatal(err)
	}
	envelopePub := filepath.Join(t.TempDir(), "sign.pub")
	if err := os.WriteFile(envelopePub, []byte(z.VerifierKey()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, otherVkey, err := note.GenerateKey(rand.Reader, "ferry.audit/Bad_Zone")
	if err != nil {
		t.Fatal(err)
	}
	badName := filepath.Join(t.TempDir(), "bad.pub")
	if err := os.WriteFile(badName, []byte(otherVkey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(t.TempDir(), "garbage.pub")
	if err := os.WriteFile(garbage, []byte("ferry.audit/dmz+zzzz\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file, zone string
		is               error
		want             string
	}{
		{"other zone", pub, "intranet", ErrAuditZone, `named "ferry.audit/dmz", want "ferry.audit/intranet"`},
		{"envelope key for zone", envelopePub, "dmz", ErrAuditZone, `named "dmz"`},
		{"envelope key for any zone", envelopePub, "", nil, "not an audit key"},
		{"invalid zone in name", badName, "", nil, "not an audit key"},
		{"malformed", garbage, "", nil, "malformed verifier"},
		{"missing", filepath.Join(dir, "nope.pub"), "dmz", nil, "missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadAuditPub(tc.file, tc.zone)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.file) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q: want it to name %s and say %q", err, tc.file, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %v", err, tc.is)
			}
		})
	}
}

func TestLoadAudit_RefusesLoosePermissions(t *testing.T) {
	for _, f := range []string{AuditKeyFile, AuditHMACKeyFile} {
		for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o644, 0o700 | 0o007} {
			t.Run(f+"/"+mode.String(), func(t *testing.T) {
				dir := writeAudit(t, "dmz")
				path := filepath.Join(dir, f)
				if err := os.Chmod(path, mode); err != nil {
					t.Fatal(err)
				}
				_, err := LoadAudit(dir, "dmz")
				if !errors.Is(err, ErrPermissions) {
					t.Fatalf("got %v, want ErrPermissions", err)
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name the file %s", err, path)
				}
			})
		}
	}
	// The public key may be world-readable.
	dir := writeAudit(t, "dmz")
	if err := os.Chmod(filepath.Join(dir, AuditPubFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadAudit(dir, "dmz"); err != nil {
		t.Errorf("world-readable audit.pub refused: %v", err)
	}
}

func TestLoadAudit_RefusesSymlinkAndMissing(t *testing.T) {
	for _, f := range []string{AuditKeyFile, AuditPubFile, AuditHMACKeyFile} {
		t.Run(f, func(t *testing.T) {
			dir := writeAudit(t, "dmz")
			path := filepath.Join(dir, f)
			moved := filepath.Join(t.TempDir(), "elsewhere")
			if err := os.Rename(path, moved); err != nil {
				t.Fatal(err)
			}
			_, err := LoadAudit(dir, "dmz")
			if err == nil || !strings.Contains(err.Error(), "missing") || !strings.Contains(err.Error(), path) {
				t.Fatalf("missing %s: got %v, want an error naming it as missing", f, err)
			}
			if f == AuditPubFile {
				return // a public file may be a symlink
			}
			if err := os.Symlink(moved, path); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadAudit(dir, "dmz"); !errors.Is(err, ErrPermissions) || !strings.Contains(err.Error(), "not a regular file") {
				t.Fatalf("symlinked %s: got %v, want a refusal", f, err)
			}
		})
	}
}

func TestLoadAudit_WrongZone(t *testing.T) {
	dir := writeAudit(t, "dmz")
	_, err := LoadAudit(dir, "intranet")
	if !errors.Is(err, ErrAuditZone) || !strings.Contains(err.Error(), filepath.Join(dir, AuditKeyFile)) {
		t.Fatalf("got %v, want ErrAuditZone naming audit.key", err)
	}
	if _, err := LoadAudit(dir, "Bad Zone"); err == nil || !strings.Contains(err.Error(), "invalid zone name") {
		t.Fatalf("invalid zone name: got %v", err)
	}

	// An envelope signing key put in audit.key's place is refused: it is
	// named after the zone, not its audit log.
	z, err := Generate("dmz")
	if err != nil {
		t.Fatal(err)
	}
	if err := z.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, SignKeyFile), filepath.Join(dir, AuditKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadAudit(dir, "dmz"); !errors.Is(err, ErrAuditZone) {
		t.Fatalf("envelope key as audit key: got %v, want ErrAuditZone", err)
	}
}

// audit.pub of another key set with the same name does not match audit.key.
func TestLoadAudit_MismatchedPub(t *testing.T) {
	dir := writeAudit(t, "dmz")
	other := writeAudit(t, "dmz")
	data, err := os.ReadFile(filepath.Join(other, AuditPubFile))
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(dir, AuditPubFile)
	if err := os.WriteFile(pub, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadAudit(dir, "dmz"); err == nil || !strings.Contains(err.Error(), "do not match") || !strings.Contains(err.Error(), pub) {
		t.Fatalf("got %v, want a mismatch naming %s", err, pub)
	}
}

func TestLoadAudit_CorruptHMACKey(t *testing.T) {
	valid := strings.Repeat("0123456789abcdef", 4)
	for _, tc := range []struct {
		name string
		data string
		ok   bool
	}{
		{"valid", valid + "\n", true},
		{"valid without newline", valid, true},
		{"empty", "", false},
		{"newline only", "\n", false},
		{"short", valid[:62] + "\n", false},
		{"long", valid + "00\n", false},
		{"upper case", strings.ToUpper(valid) + "\n", false},
		{"not hex", valid[:63] + "g\n", false},
		{"two newlines", valid + "\n\n", false},
		{"crlf", valid + "\r\n", false},
		{"leading space", " " + valid[1:] + "\n", false},
		{"binary key", string(make([]byte, 32)), false},
		{"huge", strings.Repeat("a", 1<<20), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeAudit(t, "dmz")
			path := filepath.Join(dir, AuditHMACKeyFile)
			if err := os.WriteFile(path, []byte(tc.data), 0o600); err != nil {
				t.Fatal(err)
			}
			a, err := LoadAudit(dir, "dmz")
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				if hex.EncodeToString(a.HMACKey) != valid {
					t.Errorf("key %x, want %s", a.HMACKey, valid)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted a corrupt HMAC key file")
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file %s", err, path)
			}
		})
	}
}

func TestGenerateAudit_NeverOverwrites(t *testing.T) {
	for _, f := range []string{AuditKeyFile, AuditPubFile, AuditHMACKeyFile} {
		t.Run(f, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "keys")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, f)
			if err := os.WriteFile(path, []byte("precious\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			err := GenerateAudit(dir, "dmz")
			if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), path) {
				t.Fatalf("got %v, want fs.ErrExist naming %s", err, path)
			}
			if data, _ := os.ReadFile(path); string(data) != "precious\n" {
				t.Errorf("%s was replaced", f)
			}
			// Nothing else was written either.
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 {
				t.Errorf("directory holds %d files after a refused generate, want 1", len(entries))
			}
		})
	}

	// A complete set is not replaced by a second generate.
	dir := writeAudit(t, "dmz")
	before, err := LoadAudit(dir, "dmz")
	if err != nil {
		t.Fatal(err)
	}
	if err := GenerateAudit(dir, "dmz"); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second GenerateAudit: got %v, want fs.ErrExist", err)
	}
	after, err := LoadAudit(dir, "dmz")
	if err != nil {
		t.Fatal(err)
	}
	if after.Signer.KeyHash() != before.Signer.KeyHash() || !bytes.Equal(after.HMACKey, before.HMACKey) {
		t.Error("second GenerateAudit changed the keys")
	}
}

func TestGenerateAudit_BesideZoneKeys(t *testing.T) {
	dir, z := writeZone(t, "dmz")
	if err := GenerateAudit(dir, "dmz"); err != nil {
		t.Fatal(err)
	}
	a, err := LoadAudit(dir, "dmz")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadZone(dir); err != nil {
		t.Fatalf("zone keys no longer load beside the audit keys: %v", err)
	}
	if a.Signer.KeyHash() == z.Signer.KeyHash() {
		t.Error("audit key is the envelope signing key")
	}
	if err := GenerateAudit(filepath.Join(t.TempDir(), "k"), "Bad_Zone"); err == nil {
		t.Error("GenerateAudit accepted an invalid zone name")
	}
}

// otherKeyVerifier claims a signer's name and key hash but holds another
// key: what a 32-bit key hash collision would give.
type otherKeyVerifier struct {
	note.Verifier
	name string
	hash uint32
}

func (v otherKeyVerifier) Name() string    { return v.name }
func (v otherKeyVerifier) KeyHash() uint32 { return v.hash }

func TestMatchKeys(t *testing.T) {
	a, err := LoadAudit(writeAudit(t, "dmz"), "dmz")
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadAudit(writeAudit(t, "dmz"), "dmz")
	if err != nil {
		t.Fatal(err)
	}
	if err := matchKeys(a.Signer, a.Verifier); err != nil {
		t.Fatalf("a key pair does not match itself: %v", err)
	}
	if err := matchKeys(a.Signer, b.Verifier); err == nil {
		t.Error("keys with different hashes match")
	}
	colliding := otherKeyVerifier{Verifier: b.Verifier, name: a.Signer.Name(), hash: a.Signer.KeyHash()}
	if err := matchKeys(a.Signer, colliding); err == nil {
		t.Error("a verifier of another key with the same name and hash matches")
	}
}

// TestCopyAuditPub: one zone's audit.pub installed as the other's
// peer-audit.pub loads as that zone's key; a missing file says what to
// copy; the wrong zone's key and an existing file are refused.
func TestCopyAuditPub(t *testing.T) {
	dmz, intra := t.TempDir(), t.TempDir()
	if err := GenerateAudit(dmz, "dmz"); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPeerAudit(intra, "dmz"); err == nil || !strings.Contains(err.Error(), "copy the dmz zone's audit.pub") {
		t.Fatalf("a missing peer-audit.pub: %v", err)
	}
	if err := CopyAuditPub(dmz, "intranet", intra); !errors.Is(err, ErrAuditZone) {
		t.Fatalf("copying the dmz key as the intranet's: %v, want ErrAuditZone", err)
	}
	if err := CopyAuditPub(dmz, "dmz", intra); err != nil {
		t.Fatal(err)
	}
	v, err := LoadPeerAudit(intra, "dmz")
	if err != nil {
		t.Fatal(err)
	}
	own, err := LoadAudit(dmz, "dmz")
	if err != nil {
		t.Fatal(err)
	}
	if v.KeyHash() != own.Verifier.KeyHash() || v.Name() != own.Verifier.Name() {
		t.Fatal("peer-audit.pub is not the dmz's audit key")
	}
	if _, err := LoadPeerAudit(intra, "intranet"); !errors.Is(err, ErrAuditZone) {
		t.Fatalf("loading it as another zone's: %v, want ErrAuditZone", err)
	}
	if err := CopyAuditPub(dmz, "dmz", intra); err == nil {
		t.Fatal("CopyAuditPub overwrote peer-audit.pub")
	}
}
