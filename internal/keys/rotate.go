package keys

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// DefaultOverlap is how long a rotated-out key stays valid after the new
// key's From, unless the admin says otherwise: long enough for envelopes
// sealed before the switch to arrive and be answered.
const DefaultOverlap = 24 * time.Hour

// Sentinel errors of [Rotate], [Accept] and [Revoke], for callers that
// branch.
var (
	// ErrWrongZone: the statement is for another zone than the peer.
	ErrWrongZone = errors.New("rotation statement for another zone")
	// ErrNotNewest: the statement's old key is not the peer's newest key.
	ErrNotNewest = errors.New("rotation statement does not follow the newest key")
	// ErrNoSuchKey: no peer key has the given id.
	ErrNoSuchKey = errors.New("no such peer key")
	// ErrLastKey: revoking the key would leave no valid peer key.
	ErrLastKey = errors.New("the only valid peer key")
)

// Rotate makes a new signing key and age identity for the zone whose key
// directory is dir. The zone goes on signing with its newest key until
// from and with the new key from then on; the newest key's age identity
// keeps decrypting until from+overlap, and peers accept envelopes it
// signed that were created before then.
//
// The new keys and the rotation statement (signed by the newest and the
// new key) go into dir/rotated/<new key id>/, written into a hidden
// temporary directory with every file synced, then renamed into place, so
// that a crash leaves either no rotation or a complete one. No existing
// file is changed. It returns the statement and the path of its file,
// which the peer's admin accepts with [Accept].
func Rotate(dir string, from time.Time, overlap time.Duration) (*Statement, string, error) {
	if overlap < 0 {
		return nil, "", fmt.Errorf("rotate: negative overlap %s", overlap)
	}
	own, err := loadOwn(dir)
	if err != nil {
		return nil, "", fmt.Errorf("rotate: %w", err)
	}
	newest := own[len(own)-1]
	from = from.UTC().Truncate(time.Second)
	if !from.After(newest.From) {
		return nil, "", fmt.Errorf("rotate: from %s is not after the newest key's from %s", from.Format(TimeLayout), newest.From.Format(TimeLayout))
	}
	z, err := Generate(newest.Name)
	if err != nil {
		return nil, "", fmt.Errorf("rotate: %w", err)
	}
	s := &Statement{From: from, Until: from.Add(overlap)}
	signed, err := SignStatement(s, newest.Zone, z)
	if err != nil {
		return nil, "", fmt.Errorf("rotate: %w", err)
	}
	rdir := filepath.Join(dir, RotatedDir)
	if err := os.MkdirAll(rdir, 0o700); err != nil {
		return nil, "", fmt.Errorf("rotate: %w", err)
	}
	final := filepath.Join(rdir, s.KeyID())
	if _, err := os.Lstat(final); err == nil {
		return nil, "", fmt.Errorf("rotate: %s already exists", final)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(rdir, ".tmp-"+s.KeyID()+"-"+hex.EncodeToString(rnd[:]))
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	if err := z.WriteDir(tmp); err != nil {
		return nil, "", fmt.Errorf("rotate: %w", err)
	}
	if err := writeNew(filepath.Join(tmp, StatementFile), signed, 0o644); err != nil {
		return nil, "", fmt.Errorf("rotate: %w", err)
	}
	if err := syncDir(tmp); err != nil {
		return nil, "", fmt.Errorf("rotate: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, "", fmt.Errorf("rotate: %w", err)
	}
	done = true
	if err := syncDir(rdir); err != nil {
		return nil, "", fmt.Errorf("rotate: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return nil, "", fmt.Errorf("rotate: %w", err)
	}
	return s, filepath.Join(final, StatementFile), nil
}

// Accept verifies a peer's rotation statement against the peer keys that
// dir trusts and records the new key in dir's peer-keys file: valid from
// the statement's From, and the old key valid until its Until. The old
// key must be the peer's newest key and not revoked, and both it and the
// new key must have signed the statement. If the new key is already
// accepted, Accept changes nothing and returns already true. Refusals of
// the statement are [*StatementError] values, [ErrWrongZone] or
// [ErrNotNewest].
func Accept(dir string, data []byte) (s *Statement, already bool, err error) {
	base, err := LoadPeer(dir)
	if err != nil {
		return nil, false, fmt.Errorf("accept: load peer keys: %w", err)
	}
	peers, err := LoadPeerKeys(dir, base)
	if err != nil {
		return nil, false, fmt.Errorf("accept: %w", err)
	}
	if zone := peekStatementZone(data); zone != "" && zone != base.Name {
		return nil, false, fmt.Errorf("accept: %w: statement for zone %q, the peer of this key directory is %q", ErrWrongZone, zone, base.Name)
	}
	var trusted []*PeerKey
	for _, k := range peers {
		if !k.IsRevoked() {
			trusted = append(trusted, k)
		}
	}
	vs := make([]note.Verifier, 0, len(trusted))
	for _, k := range trusted {
		vs = append(vs, k.Verifier)
	}
	s, err = ParseStatement(data, vs)
	if err != nil {
		return nil, false, err
	}
	for _, k := range peers {
		if k.Verifier.KeyHash() == s.Verifier().KeyHash() {
			if k.VerifierKey == s.Key && k.Recipient.String() == s.Recipient {
				return s, true, nil
			}
			return nil, false, &StatementError{Line: 3, Err: fmt.Errorf("a different key with id %s is already known", s.KeyID())}
		}
	}
	newest := peers[0]
	for _, k := range peers[1:] {
		if !k.From.Before(newest.From) {
			newest = k
		}
	}
	if newest.ID() != s.Old || newest.IsRevoked() {
		return nil, false, fmt.Errorf("accept: %w: it replaces key %s, the newest key of %s is %s", ErrNotNewest, s.Old, base.Name, newest.ID())
	}
	if !s.From.After(newest.From) {
		return nil, false, &StatementError{Line: 5, Err: fmt.Errorf("from %s is not after the old key's from %s", s.From.Format(TimeLayout), newest.From.Format(TimeLayout))}
	}
	newest.Until = s.Until
	peers = append(peers, &PeerKey{Verifier: s.Verifier(), VerifierKey: s.Key, Recipient: s.AgeRecipient(), From: s.From})
	if err := WritePeerKeys(dir, peers); err != nil {
		return nil, false, fmt.Errorf("accept: %w", err)
	}
	return s, false, nil
}

// peekStatementZone returns the zone line of a statement without verifying
// it, or "", for a clearer message than "untrusted" when an admin gives
// the statement to the wrong zone.
func peekStatementZone(data []byte) string {
	i := bytes.Index(data, []byte("\n\n"))
	if i < 0 {
		return ""
	}
	for _, line := range strings.Split(string(data[:i]), "\n") {
		if z, ok := strings.CutPrefix(line, "zone "); ok && ValidZoneName(z) {
			return z
		}
	}
	return ""
}

// Revoke marks the peer key with the given id revoked at now in dir's
// peer-keys file. It refuses ([ErrLastKey]) to revoke the only peer key
// that is still valid at now unless force is set, and returns [ErrNoSuchKey]
// for an unknown id. Revoking a revoked key changes nothing and returns
// already true.
func Revoke(dir, id string, now time.Time, force bool) (k *PeerKey, already bool, err error) {
	base, err := LoadPeer(dir)
	if err != nil {
		return nil, false, fmt.Errorf("revoke: load peer keys: %w", err)
	}
	peers, err := LoadPeerKeys(dir, base)
	if err != nil {
		return nil, false, fmt.Errorf("revoke: %w", err)
	}
	var ids []string
	others := 0
	for _, p := range peers {
		ids = append(ids, p.ID())
		if p.ID() == id {
			k = p
		} else if p.ValidAt(now) {
			others++
		}
	}
	if k == nil {
		return nil, false, fmt.Errorf("revoke: %w %q of %s (known: %s)", ErrNoSuchKey, short(id), base.Name, strings.Join(ids, ", "))
	}
	if k.IsRevoked() {
		return k, true, nil
	}
	if k.ValidAt(now) && others == 0 && !force {
		return nil, false, fmt.Errorf("revoke: key %s is %w of %s", id, ErrLastKey, base.Name)
	}
	k.Revoked = now.UTC().Truncate(time.Second)
	if err := WritePeerKeys(dir, peers); err != nil {
		return nil, false, fmt.Errorf("revoke: %w", err)
	}
	return k, false, nil
}
