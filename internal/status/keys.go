package status

import (
	"os"
	"path/filepath"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/ferrybridge/ferry/internal/keys"
)

// KeysOf returns the Keys part of a snapshot: the signing key of r in
// force at now with the time it began signing (its rotation's From, or,
// for a zone's first key, the time its sign.key file was written) and
// when it reaches maxAge, the peer's valid keys, and the ids of the two
// audit keys.
func KeysOf(r *keys.Ring, ownAudit, peerAudit note.Verifier, maxAge time.Duration, now time.Time) Keys {
	k := Keys{Peer: []string{}}
	if own := r.SignerAt(now); own != nil {
		k.Signing = own.ID()
		k.Since = own.From
		if k.Since.IsZero() {
			if fi, err := os.Stat(filepath.Join(own.Dir, keys.SignKeyFile)); err == nil {
				k.Since = fi.ModTime()
			}
		}
		if !k.Since.IsZero() {
			k.Expires = k.Since.Add(maxAge)
		}
	}
	for _, p := range r.ValidPeers(now) {
		k.Peer = append(k.Peer, p.ID())
	}
	if ownAudit != nil {
		k.Audit = keys.KeyID(ownAudit.KeyHash())
	}
	if peerAudit != nil {
		k.PeerAudit = keys.KeyID(peerAudit.KeyHash())
	}
	return k
}
