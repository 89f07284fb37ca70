package keys

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/ferrybridge/ferry/internal/audit"
)

// Audit key files inside a zone's key directory, beside its envelope keys.
//
//	audit.key       PRIVATE+KEY+ferry.audit/<zone>+<hash>+<base64>  (0600)
//	audit.pub       ferry.audit/<zone>+<hash>+<base64>
//	audit-hmac.key  64 lowercase hex digits and a newline           (0600)
//
// audit.key signs the zone's audit checkpoints; it is a key of its own,
// never the envelope signing key, so that a leaked envelope key cannot
// sign a rewritten audit history and the reverse. audit.pub is the file
// auditors are given. audit-hmac.key is the key of [audit.Hasher]: it is
// given only to auditors allowed to search the log by ID number.
const (
	AuditKeyFile     = "audit.key"
	AuditPubFile     = "audit.pub"
	AuditHMACKeyFile = "audit-hmac.key"
)

// ErrAuditZone is returned (wrapped) when an audit key is not named
// [audit.Origin] of the zone it is loaded for.
var ErrAuditZone = errors.New("audit key of another zone")

// maxHMACKeyFile bounds what is read of audit-hmac.key, whose key line is
// 65 bytes: anything longer is refused as not a key.
const maxHMACKeyFile = 1 << 10

// Audit is a zone's audit keys.
type Audit struct {
	Signer   note.Signer   // signs the audit log's checkpoints, named audit.Origin(zone)
	Verifier note.Verifier // Signer's verifier, as in audit.pub
	HMACKey  []byte        // audit.HMACKeySize bytes, the key of audit.Hasher
}

// GenerateAudit writes the three audit key files for zone into dir,
// creating dir with mode 0700 if needed: a fresh Ed25519 note key named
// audit.Origin(zone) (private 0600, public world-readable) and a random
// HMAC key (0600). It refuses to replace any of them: if one exists it
// writes nothing, and if writing fails it removes what it wrote.
func GenerateAudit(dir, zone string) error {
	if err := checkZoneName(zone); err != nil {
		return err
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, audit.Origin(zone))
	if err != nil {
		return fmt.Errorf("generate audit key: %w", err)
	}
	hmacKey := make([]byte, audit.HMACKeySize)
	if _, err := rand.Read(hmacKey); err != nil {
		return fmt.Errorf("generate audit hmac key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create key directory: %w", err)
	}
	files := []struct {
		name string
		data string
		mode os.FileMode
	}{
		{AuditKeyFile, skey + "\n", 0o600},
		{AuditPubFile, vkey + "\n", 0o644},
		{AuditHMACKeyFile, hex.EncodeToString(hmacKey) + "\n", 0o600},
	}
	// Check all three first so that an existing file leaves the directory
	// as it was, rather than with a new audit.key beside an old audit.pub.
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("write key file %s: %w", path, fs.ErrExist)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("write key file: %w", err)
		}
	}
	var written []string
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		// writeNew creates with O_EXCL, so a file that appeared since the
		// check above is still never replaced.
		if err := writeNew(path, []byte(f.data), f.mode); err != nil {
			for _, w := range written {
				os.Remove(w)
			}
			return err
		}
		written = append(written, path)
	}
	return nil
}

// LoadAudit reads zone's audit keys from dir. It refuses a private file
// (audit.key, audit-hmac.key) that is not a regular file or is open to
// group or others ([ErrPermissions]), a key not named audit.Origin(zone)
// ([ErrAuditZone]), an audit.pub that is not audit.key's public key, and
// an HMAC key that is not 64 lowercase hex digits. Every error names the
// file.
func LoadAudit(dir, zone string) (*Audit, error) {
	if err := checkZoneName(zone); err != nil {
		return nil, err
	}
	want := audit.Origin(zone)
	keyPath := filepath.Join(dir, AuditKeyFile)
	skey, err := readPrivate(keyPath)
	if err != nil {
		return nil, err
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", keyPath, err)
	}
	if signer.Name() != want {
		return nil, fmt.Errorf("key file %s: %w: named %q, want %q", keyPath, ErrAuditZone, signer.Name(), want)
	}
	pubPath := filepath.Join(dir, AuditPubFile)
	verifier, err := ReadAuditPub(pubPath, zone)
	if err != nil {
		return nil, err
	}
	if err := matchKeys(signer, verifier); err != nil {
		return nil, fmt.Errorf("key files %s and %s: %w", keyPath, pubPath, err)
	}
	hmacKey, err := ReadAuditHMACKey(filepath.Join(dir, AuditHMACKeyFile))
	if err != nil {
		return nil, err
	}
	return &Audit{Signer: signer, Verifier: verifier, HMACKey: hmacKey}, nil
}

// checkZoneName returns an error unless zone is a valid zone name.
func checkZoneName(zone string) error {
	if !ValidZoneName(zone) {
		return fmt.Errorf("invalid zone name %q: want lowercase letters, digits and '-', starting with a letter", zone)
	}
	return nil
}

// matchKeys checks that v is s's verifier: same name and key hash, and a
// signature by s verifies (the 32-bit hash alone could collide).
func matchKeys(s note.Signer, v note.Verifier) error {
	if s.Name() != v.Name() || s.KeyHash() != v.KeyHash() {
		return errors.New("signing key and verifier key do not match")
	}
	msg := []byte("ferry audit key check\n")
	sig, err := s.Sign(msg)
	if err != nil {
		return fmt.Errorf("sign with audit key: %w", err)
	}
	if !v.Verify(msg, sig) {
		return errors.New("signing key and verifier key do not match")
	}
	return nil
}

// ReadAuditHMACKey checks and reads an audit-hmac.key file alone (for an
// auditor who may search by ID number and holds no other key of the
// zone): a private file (see [CheckPrivate]) of exactly 64 lowercase hex
// digits, optionally followed by one newline.
func ReadAuditHMACKey(path string) ([]byte, error) {
	if err := CheckPrivate(path); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxHMACKeyFile))
	if err != nil {
		return nil, fmt.Errorf("read key file %s: %w", path, err)
	}
	data = bytes.TrimSuffix(data, []byte("\n"))
	const want = 2 * audit.HMACKeySize
	if len(data) != want || strings.Trim(string(data), "0123456789abcdef") != "" {
		return nil, fmt.Errorf("key file %s: not an audit hmac key: want %d lowercase hex digits and a newline", path, want)
	}
	key := make([]byte, audit.HMACKeySize)
	if _, err := hex.Decode(key, data); err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return key, nil
}

// ReadAuditPub reads an audit verifier key file (audit.pub, as given to
// auditors). With zone "" it accepts a key named "ferry.audit/<zone>" for
// any valid zone name; otherwise the name must be audit.Origin(zone)
// ([ErrAuditZone]). Errors name the file.
func ReadAuditPub(file, zone string) (note.Verifier, error) {
	vkey, err := readKeyLine(file)
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", file, err)
	}
	if zone != "" {
		if want := audit.Origin(zone); v.Name() != want {
			return nil, fmt.Errorf("key file %s: %w: named %q, want %q", file, ErrAuditZone, v.Name(), want)
		}
		return v, nil
	}
	if z, ok := strings.CutPrefix(v.Name(), audit.Origin("")); !ok || !ValidZoneName(z) {
		return nil, fmt.Errorf("key file %s: not an audit key: named %q, want %q", file, v.Name(), audit.Origin("<zone>"))
	}
	return v, nil
}

// PeerAuditPubFile is the other zone's audit.pub, installed in a zone's
// key directory: the agent checks the other zone's audit checkpoints with
// it before countersigning them.
const PeerAuditPubFile = "peer-audit.pub"

// CopyAuditPub installs the audit.pub in the key directory from, which
// must be the audit key of zone, as peer-audit.pub in the key directory
// to. It never overwrites a file.
func CopyAuditPub(from, zone, to string) error {
	file := filepath.Join(from, AuditPubFile)
	if _, err := ReadAuditPub(file, zone); err != nil {
		return err
	}
	vkey, err := readKeyLine(file)
	if err != nil {
		return err
	}
	return writeNew(filepath.Join(to, PeerAuditPubFile), []byte(vkey+"\n"), 0o644)
}

// LoadPeerAudit reads dir's peer-audit.pub, which must be the audit key
// of the zone peer. A missing file is an error that says what to copy.
func LoadPeerAudit(dir, peer string) (note.Verifier, error) {
	file := filepath.Join(dir, PeerAuditPubFile)
	if _, err := os.Lstat(file); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("key file %s is missing: copy the %s zone's %s there (the agent checks the other zone's audit log with it)",
			file, peer, AuditPubFile)
	}
	return ReadAuditPub(file, peer)
}
