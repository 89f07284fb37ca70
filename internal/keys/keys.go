// Package keys manages a zone's key files: its Ed25519 signing key (in the
// C2SP signed-note key format of [golang.org/x/mod/sumdb/note]) and its age
// X25519 identity, plus the public keys of the peer zone.
//
// # Files
//
// A zone's key directory holds:
//
//	sign.key       PRIVATE+KEY+<zone>+<hash>+<base64>   (0600)
//	sign.pub       <zone>+<hash>+<base64>
//	age.key        AGE-SECRET-KEY-1…                    (0600)
//	age.pub        age1…
//	peer-sign.pub  the peer zone's sign.pub
//	peer-age.pub   the peer zone's age.pub
//	audit.key      PRIVATE+KEY+ferry.audit/<zone>+<hash>+<base64>  (0600)
//	audit.pub      ferry.audit/<zone>+<hash>+<base64>, for auditors
//	audit-hmac.key 64 hex digits: the key of the audit log's hashes  (0600)
//
// The audit files ([GenerateAudit], [LoadAudit]) are the zone's audit
// log's own keys, never its envelope keys.
//
// Rotation adds files and changes none (see docs/keys.md):
//
//	rotated/<key id>/  a later key pair of the zone, with the rotation
//	                   Statement that introduced it ([Rotate])
//	peer-keys          peer keys accepted later, and the windows and
//	                   revocations of all peer keys ([Accept], [Revoke])
//
// Private key files must be regular files (not symlinks) with no permission
// bits for group or others; [LoadZone] refuses anything looser and names the
// file. Public key files may be world-readable.
//
// # Identifiers
//
// A signing key is named by its zone and its 32-bit note key hash, printed as
// 8 lowercase hex digits ([KeyID]). An age key is named by [Fingerprint]: the
// first 8 bytes of SHA-256 over its "age1…" string, as 16 hex digits.
//
// # Rotation and revocation
//
// [LoadRing] reads a key directory into a [Ring]: the zone's own key pairs,
// each signing from its From until the next one's, its age identity
// decrypting until its Until; and the peer's keys, each accepted for
// envelopes created in its window unless revoked. [Rotate] makes a new key
// pair with a [Statement] signed by the newest and the new key; the peer
// verifies it with [Accept]; [Revoke] marks a peer key revoked.
package keys

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"filippo.io/age"
	"golang.org/x/mod/sumdb/note"
)

// File names inside a zone's key directory.
const (
	SignKeyFile     = "sign.key"
	SignPubFile     = "sign.pub"
	AgeKeyFile      = "age.key"
	AgePubFile      = "age.pub"
	PeerSignPubFile = "peer-sign.pub"
	PeerAgePubFile  = "peer-age.pub"
)

// ErrPermissions is returned (wrapped) when a private key file is readable
// or writable by group or others, or is not a regular file.
var ErrPermissions = errors.New("private key file permissions too open")

var zoneNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// ValidZoneName reports whether name may name a zone: 1 to 32 characters of
// lowercase letters, digits and '-', starting with a letter. Zone names are
// also signing-key names, so they must be safe inside a signed note.
func ValidZoneName(name string) bool { return zoneNameRE.MatchString(name) }

// CheckZonePair checks an agent's own zone name and its peer's, as both
// agents' configs must: it returns the first problem's message and the
// config key it concerns ("zone" or "peer"), or two empty strings.
func CheckZonePair(zone, peer string) (msg, key string) {
	const want = "want lowercase letters, digits and '-', starting with a letter"
	switch {
	case !ValidZoneName(zone):
		return fmt.Sprintf("invalid zone name %q: %s", zone, want), "zone"
	case !ValidZoneName(peer):
		return fmt.Sprintf("invalid zone name %q: %s", peer, want), "peer"
	case peer == zone:
		return "must differ from zone", "peer"
	}
	return "", ""
}

// Zone holds a zone's own private keys.
type Zone struct {
	Name      string
	Signer    note.Signer
	Verifier  note.Verifier
	Identity  *age.X25519Identity
	Recipient *age.X25519Recipient

	signerKey   string
	verifierKey string
}

// Peer holds the public keys of another zone.
type Peer struct {
	Name        string
	Verifier    note.Verifier
	VerifierKey string
	Recipient   *age.X25519Recipient
}

// Generate creates fresh keys for the zone called name.
func Generate(name string) (*Zone, error) {
	if !ValidZoneName(name) {
		return nil, fmt.Errorf("invalid zone name %q: want lowercase letters, digits and '-', starting with a letter", name)
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("generate age identity: %w", err)
	}
	return newZone(skey, vkey, id)
}

func newZone(skey, vkey string, id *age.X25519Identity) (*Zone, error) {
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("parse signing key: %w", err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("parse verifier key: %w", err)
	}
	if signer.Name() != verifier.Name() || signer.KeyHash() != verifier.KeyHash() {
		return nil, errors.New("signing key and verifier key do not match")
	}
	return &Zone{
		Name:        signer.Name(),
		Signer:      signer,
		Verifier:    verifier,
		Identity:    id,
		Recipient:   id.Recipient(),
		signerKey:   skey,
		verifierKey: vkey,
	}, nil
}

// Public returns the zone's public keys, as its peer sees them.
func (z *Zone) Public() *Peer {
	return &Peer{Name: z.Name, Verifier: z.Verifier, VerifierKey: z.verifierKey, Recipient: z.Recipient}
}

// VerifierKey returns the zone's public signing key in note verifier format.
func (z *Zone) VerifierKey() string { return z.verifierKey }

// WriteDir writes the zone's key files into dir, creating it with mode 0700.
// Existing key files are never overwritten.
func (z *Zone) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create key directory: %w", err)
	}
	files := []struct {
		name string
		data string
		mode os.FileMode
	}{
		{SignKeyFile, z.signerKey + "\n", 0o600},
		{SignPubFile, z.verifierKey + "\n", 0o644},
		{AgeKeyFile, z.Identity.String() + "\n", 0o600},
		{AgePubFile, z.Recipient.String() + "\n", 0o644},
	}
	for _, f := range files {
		if err := writeNew(filepath.Join(dir, f.name), []byte(f.data), f.mode); err != nil {
			return err
		}
	}
	return nil
}

// WritePeer writes p's public keys into dir as the peer key files.
func WritePeer(dir string, p *Peer) error {
	if err := writeNew(filepath.Join(dir, PeerSignPubFile), []byte(p.VerifierKey+"\n"), 0o644); err != nil {
		return err
	}
	return writeNew(filepath.Join(dir, PeerAgePubFile), []byte(p.Recipient.String()+"\n"), 0o644)
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write key file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	// The umask may have narrowed the mode; public files should stay readable.
	return os.Chmod(path, mode)
}

// CheckPrivate returns an error naming path unless it is a regular file
// (not a symlink) without any group or other permission bits.
func CheckPrivate(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("private key file %s is missing", path)
		}
		return fmt.Errorf("private key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: %w: not a regular file", path, ErrPermissions)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s: %w: mode %04o, want 0600", path, ErrPermissions, perm)
	}
	return nil
}

// readPrivate checks and reads a private key file, returning its first
// non-comment line.
func readPrivate(path string) (string, error) {
	if err := CheckPrivate(path); err != nil {
		return "", err
	}
	return readKeyLine(path)
}

func readKeyLine(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("key file %s is missing", path)
		}
		return "", fmt.Errorf("read key file: %w", err)
	}
	if len(data) > 64<<10 {
		return "", fmt.Errorf("key file %s: too large", path)
	}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		return line, nil
	}
	return "", fmt.Errorf("key file %s: no key found", path)
}

// LoadZone reads a zone's own keys from dir, refusing private key files
// with loose permissions.
func LoadZone(dir string) (*Zone, error) {
	skey, err := readPrivate(filepath.Join(dir, SignKeyFile))
	if err != nil {
		return nil, err
	}
	vkey, err := readKeyLine(filepath.Join(dir, SignPubFile))
	if err != nil {
		return nil, err
	}
	akey, err := readPrivate(filepath.Join(dir, AgeKeyFile))
	if err != nil {
		return nil, err
	}
	id, err := age.ParseX25519Identity(akey)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", filepath.Join(dir, AgeKeyFile), err)
	}
	z, err := newZone(skey, vkey, id)
	if err != nil {
		return nil, fmt.Errorf("key directory %s: %w", dir, err)
	}
	return z, nil
}

// LoadAgent reads an agent's keys from dir: its own zone's keys, which
// must be zone's, and the peer's public keys, which must be peer's. Both
// agents start with it.
func LoadAgent(dir, zone, peer string) (*Zone, *Peer, error) {
	z, err := LoadZone(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("load zone keys: %w", err)
	}
	if z.Name != zone {
		return nil, nil, fmt.Errorf("key directory %s holds the keys of zone %q, but the config says zone %q", dir, z.Name, zone)
	}
	p, err := LoadPeer(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("load peer keys: %w", err)
	}
	if p.Name != peer {
		return nil, nil, fmt.Errorf("key directory %s holds peer keys of zone %q, but the config says peer %q", dir, p.Name, peer)
	}
	return z, p, nil
}

// LoadPeer reads the peer zone's public keys from dir.
func LoadPeer(dir string) (*Peer, error) {
	return LoadPublic(filepath.Join(dir, PeerSignPubFile), filepath.Join(dir, PeerAgePubFile))
}

// LoadPublic reads a zone's public keys from a verifier key file and an age
// recipient file.
func LoadPublic(signPubPath, agePubPath string) (*Peer, error) {
	vkey, err := readKeyLine(signPubPath)
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", signPubPath, err)
	}
	akey, err := readKeyLine(agePubPath)
	if err != nil {
		return nil, err
	}
	r, err := age.ParseX25519Recipient(akey)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", agePubPath, err)
	}
	return &Peer{Name: v.Name(), Verifier: v, VerifierKey: vkey, Recipient: r}, nil
}

// LoadVerifier reads a note verifier key from a file.
func LoadVerifier(path string) (note.Verifier, error) {
	vkey, err := readKeyLine(path)
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return v, nil
}

// KeyID returns the 8-hex-digit identifier of a signing key.
func KeyID(hash uint32) string { return fmt.Sprintf("%08x", hash) }

// Fingerprint returns the 16-hex-digit fingerprint of an age recipient.
func Fingerprint(r *age.X25519Recipient) string {
	sum := sha256.Sum256([]byte(r.String()))
	return hex.EncodeToString(sum[:8])
}
