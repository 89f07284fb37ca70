package keys

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"filippo.io/age"
	"golang.org/x/mod/sumdb/note"
)

// Files and directories that rotation adds to a zone's key directory.
const (
	// RotatedDir holds one directory per key made by [Rotate], named by
	// its key id, with the key files of [Zone.WriteDir] and StatementFile.
	RotatedDir = "rotated"
	// StatementFile is the rotation statement that introduced a rotated key.
	StatementFile = "statement"
	// PeerKeysFile lists the peer keys accepted after peer-sign.pub, and
	// the windows and revocations of all of them (see [WritePeerKeys]).
	PeerKeysFile = "peer-keys"
)

// OwnKey is one of a zone's own key pairs with its window.
type OwnKey struct {
	*Zone
	// From is when the zone starts signing with this key; zero for the
	// zone's first key.
	From time.Time
	// To is when the next key takes over signing; zero for the newest.
	To time.Time
	// Until is when this key's age identity stops decrypting (the next
	// key's From plus the overlap); zero for the newest.
	Until time.Time
	// Dir is the directory that holds the key's files.
	Dir string
	// Statement is the rotation statement that introduced the key; nil
	// for the zone's first key.
	Statement *Statement
}

// ID returns the key's signing key id.
func (k *OwnKey) ID() string { return KeyID(k.Verifier.KeyHash()) }

// SignsAt reports whether the zone signs with k at t.
func (k *OwnKey) SignsAt(t time.Time) bool {
	return !t.Before(k.From) && (k.To.IsZero() || t.Before(k.To))
}

// DecryptsAt reports whether k's age identity decrypts at t.
func (k *OwnKey) DecryptsAt(t time.Time) bool { return k.Until.IsZero() || t.Before(k.Until) }

// PeerKey is a signing key and age recipient of the peer zone, with the
// window in which the peer's envelopes signed by it are accepted.
type PeerKey struct {
	Verifier    note.Verifier
	VerifierKey string
	Recipient   *age.X25519Recipient
	// From and Until bound the creation times of envelopes signed by the
	// key that are accepted: From ≤ created < Until. Zero means unbounded.
	From, Until time.Time
	// Revoked is when the key was revoked; zero if it is not. Nothing
	// signed by a revoked key is accepted.
	Revoked time.Time
}

// ID returns the key's signing key id.
func (k *PeerKey) ID() string { return KeyID(k.Verifier.KeyHash()) }

// IsRevoked reports whether the key has been revoked.
func (k *PeerKey) IsRevoked() bool { return !k.Revoked.IsZero() }

// InWindow reports whether t lies in the key's window, revoked or not.
func (k *PeerKey) InWindow(t time.Time) bool {
	return (k.From.IsZero() || !t.Before(k.From)) && (k.Until.IsZero() || t.Before(k.Until))
}

// ValidAt reports whether the key is not revoked and t lies in its window.
func (k *PeerKey) ValidAt(t time.Time) bool { return !k.IsRevoked() && k.InWindow(t) }

// Ring is a zone's keys as loaded from its key directory: its own key
// pairs and the peer's public keys, each with its window. A Ring is not
// changed after it is made; a reload makes a new one.
type Ring struct {
	Zone  string
	Peer  string
	Own   []*OwnKey  // by From; Own[0] is the first key, From zero
	Peers []*PeerKey // peer-sign.pub first, then accepted keys by From
}

// SignerAt returns the own key the zone signs with at t.
func (r *Ring) SignerAt(t time.Time) *OwnKey {
	for i := len(r.Own) - 1; i > 0; i-- {
		if !t.Before(r.Own[i].From) {
			return r.Own[i]
		}
	}
	return r.Own[0]
}

// Identity returns the own age identity whose recipient has fingerprint
// fpr, if it still decrypts at t, or nil.
func (r *Ring) Identity(fpr string, t time.Time) *age.X25519Identity {
	for _, k := range r.Own {
		if Fingerprint(k.Recipient) == fpr && k.DecryptsAt(t) {
			return k.Identity
		}
	}
	return nil
}

// PeerKey returns the peer key with the given name and key hash, revoked
// or not, or nil.
func (r *Ring) PeerKey(name string, hash uint32) *PeerKey {
	if name != r.Peer {
		return nil
	}
	for _, k := range r.Peers {
		if k.Verifier.KeyHash() == hash {
			return k
		}
	}
	return nil
}

// RecipientAt returns the peer key to encrypt to at t: the newest
// unrevoked one whose From is not after t, else the unrevoked one with the
// earliest From, else nil (every peer key is revoked).
func (r *Ring) RecipientAt(t time.Time) *PeerKey {
	var best *PeerKey
	for _, k := range r.Peers {
		if k.IsRevoked() {
			continue
		}
		switch {
		case best == nil:
			best = k
		case !k.From.After(t) && k.From.After(best.From):
			best = k
		case best.From.After(t) && k.From.Before(best.From):
			best = k
		}
	}
	return best
}

// SealKeys returns what an envelope created at t is sealed with: the own
// signing key in force at t, and the recipient of RecipientAt(t) (nil if
// every peer key is revoked, which envelope.Seal refuses; LoadAgentRing
// never returns such a ring).
func (r *Ring) SealKeys(t time.Time) (note.Signer, *age.X25519Recipient) {
	signer := r.SignerAt(t).Signer
	if pk := r.RecipientAt(t); pk != nil {
		return signer, pk.Recipient
	}
	return signer, nil
}

// PeerIDs returns the ids of the peer keys, in ring order, a revoked one
// marked " (revoked)", for logs.
func (r *Ring) PeerIDs() []string {
	ids := make([]string, len(r.Peers))
	for i, k := range r.Peers {
		ids[i] = k.ID()
		if k.IsRevoked() {
			ids[i] += " (revoked)"
		}
	}
	return ids
}

// ValidPeers returns the peer keys that are not revoked and whose window
// holds t.
func (r *Ring) ValidPeers(t time.Time) []*PeerKey {
	var out []*PeerKey
	for _, k := range r.Peers {
		if k.ValidAt(t) {
			out = append(out, k)
		}
	}
	return out
}

// LoadRing reads a zone's key directory: its first keys and rotated keys,
// with their statements, and the peer's keys with peer-keys. It refuses
// private key files with loose permissions, naming the file, and any
// inconsistency between the files.
func LoadRing(dir string) (*Ring, error) {
	own, err := loadOwn(dir)
	if err != nil {
		return nil, fmt.Errorf("load zone keys: %w", err)
	}
	base, err := LoadPeer(dir)
	if err != nil {
		return nil, fmt.Errorf("load peer keys: %w", err)
	}
	peers, err := LoadPeerKeys(dir, base)
	if err != nil {
		return nil, fmt.Errorf("load peer keys: %w", err)
	}
	return &Ring{Zone: own[0].Name, Peer: base.Name, Own: own, Peers: peers}, nil
}

// ErrAllRevoked is returned (wrapped) by [LoadAgentRing] when every key of
// the peer is revoked: the agent would have nobody to encrypt to.
var ErrAllRevoked = errors.New("every key of the peer is revoked")

// LoadAgentRing is [LoadRing] for an agent: the keys must be zone's and
// the peer keys peer's, and at least one peer key must not be revoked.
func LoadAgentRing(dir, zone, peer string) (*Ring, error) {
	r, err := LoadRing(dir)
	if err != nil {
		return nil, err
	}
	if r.Zone != zone {
		return nil, fmt.Errorf("key directory %s holds the keys of zone %q, but the config says zone %q", dir, r.Zone, zone)
	}
	if r.Peer != peer {
		return nil, fmt.Errorf("key directory %s holds peer keys of zone %q, but the config says peer %q", dir, r.Peer, peer)
	}
	if r.RecipientAt(time.Now()) == nil {
		return nil, fmt.Errorf("key directory %s: %w (%s): accept a new key of %s first", dir, ErrAllRevoked, peer, peer)
	}
	return r, nil
}

// loadOwn reads the zone's first key from dir and its rotated keys from
// dir/rotated, verifies each rotation statement against the key before
// it, and returns the keys by From with their windows set.
func loadOwn(dir string) ([]*OwnKey, error) {
	first, err := LoadZone(dir)
	if err != nil {
		return nil, err
	}
	own := []*OwnKey{{Zone: first, Dir: dir}}
	rdir := filepath.Join(dir, RotatedDir)
	entries, err := os.ReadDir(rdir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", rdir, err)
	}
	var rotated []*OwnKey
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue // an unfinished rotation (see Rotate)
		}
		kdir := filepath.Join(rdir, e.Name())
		z, err := LoadZone(kdir)
		if err != nil {
			return nil, err
		}
		if z.Name != first.Name {
			return nil, fmt.Errorf("key directory %s holds keys of zone %q, not %q", kdir, z.Name, first.Name)
		}
		if e.Name() != KeyID(z.Verifier.KeyHash()) {
			return nil, fmt.Errorf("key directory %s holds key %s, want it named so", kdir, KeyID(z.Verifier.KeyHash()))
		}
		rotated = append(rotated, &OwnKey{Zone: z, Dir: kdir})
	}
	verifiers := []note.Verifier{first.Verifier}
	for _, k := range rotated {
		verifiers = append(verifiers, k.Verifier)
	}
	for _, k := range rotated {
		path := filepath.Join(k.Dir, StatementFile)
		data, err := readSmall(path, MaxStatementSize)
		if err != nil {
			return nil, err
		}
		s, err := ParseStatement(data, verifiers)
		if err != nil {
			return nil, fmt.Errorf("rotation statement %s: %w", path, err)
		}
		if s.Key != k.VerifierKey() || s.Recipient != k.Recipient.String() {
			return nil, fmt.Errorf("rotation statement %s names other keys than those beside it", path)
		}
		k.Statement, k.From = s, s.From
	}
	slices.SortFunc(rotated, func(a, b *OwnKey) int { return a.From.Compare(b.From) })
	own = append(own, rotated...)
	for i := 1; i < len(own); i++ {
		prev, k := own[i-1], own[i]
		if k.Statement.Old != prev.ID() || (i > 1 && !k.From.After(prev.From)) {
			return nil, fmt.Errorf("rotation statement %s: its old key %s is not the key before it (%s): the rotations do not form a chain",
				filepath.Join(k.Dir, StatementFile), k.Statement.Old, prev.ID())
		}
		prev.To, prev.Until = k.From, k.Statement.Until
	}
	return own, nil
}

// readSmall reads a file of at most limit bytes.
func readSmall(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("file %s is missing", path)
		}
		return nil, fmt.Errorf("read %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return data, nil
}

// LoadOwnKeys reads a zone's own keys from dir: its first key and those
// [Rotate] added, by From, with their windows; like [LoadRing] it refuses
// private key files with loose permissions and rotation statements that
// do not verify.
func LoadOwnKeys(dir string) ([]*OwnKey, error) { return loadOwn(dir) }
