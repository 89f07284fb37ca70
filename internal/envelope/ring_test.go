package envelope

import (
	"errors"
	"testing"
	"time"

	"filippo.io/age"
	"golang.org/x/mod/sumdb/note"

	"github.com/ferrybridge/ferry/internal/keys"
)

// ringFixture is a DMZ that rotated from old to cur, as the intranet's
// ring sees it, and the intranet's keys (rotated too: two identities).
type ringFixture struct {
	old, cur, stranger *keys.Zone
	inOld, inCur       *keys.Zone
	ring               *keys.Ring
	from, until        time.Time
}

func newRingFixture(t *testing.T) *ringFixture {
	t.Helper()
	gen := func(name string) *keys.Zone {
		z, err := keys.Generate(name)
		if err != nil {
			t.Fatal(err)
		}
		return z
	}
	f := &ringFixture{old: gen("dmz"), cur: gen("dmz"), stranger: gen("dmz"), inOld: gen("intranet"), inCur: gen("intranet")}
	f.from, f.until = vectorNow.Add(-time.Hour), vectorNow.Add(time.Hour)
	peer := func(z *keys.Zone) *keys.PeerKey {
		return &keys.PeerKey{Verifier: z.Verifier, VerifierKey: z.VerifierKey(), Recipient: z.Recipient}
	}
	po, pc := peer(f.old), peer(f.cur)
	po.Until, pc.From = f.until, f.from
	f.ring = &keys.Ring{Zone: "intranet", Peer: "dmz",
		Own: []*keys.OwnKey{
			{Zone: f.inOld, To: f.from, Until: f.until},
			{Zone: f.inCur, From: f.from},
		},
		Peers: []*keys.PeerKey{po, pc},
	}
	return f
}

func (f *ringFixture) seal(t *testing.T, signer note.Signer, to *age.X25519Recipient, created time.Time) []byte {
	t.Helper()
	s, err := Seal(Header{ID: NewID(), Kind: KindRequests, From: "dmz", To: "intranet", Channel: "requests", Seq: 1,
		Created: created, Expires: created.Add(24 * time.Hour)}, []byte(`{"requests":[]}`), signer, to)
	if err != nil {
		t.Fatal(err)
	}
	return s.Data
}

func TestOpener_Ring(t *testing.T) {
	f := newRingFixture(t)
	before, during, after := f.from.Add(-time.Minute), vectorNow, f.until.Add(time.Minute)
	cases := []struct {
		name    string
		signer  *keys.Zone
		to      *keys.Zone
		created time.Time
		now     time.Time
		revoke  bool
		reason  string
	}{
		{"old key before from", f.old, f.inOld, before, before, false, ""},
		{"old key in overlap", f.old, f.inCur, during, during, false, ""},
		{"new key to old identity in overlap", f.cur, f.inOld, during, during, false, ""},
		{"new key after overlap", f.cur, f.inCur, after, after, false, ""},
		{"old key after until", f.old, f.inCur, after, after, false, ReasonKeyNotValid},
		{"new key before from", f.cur, f.inCur, before, before, false, ReasonKeyNotValid},
		{"old identity after until", f.cur, f.inOld, after, after, false, ReasonWrongRecipient},
		{"revoked key", f.old, f.inCur, before, during, true, ReasonRevokedKey},
		{"unknown key", f.stranger, f.inCur, during, during, false, ReasonUnknownSender},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ring := *f.ring
			if c.revoke {
				po := *ring.Peers[0]
				po.Revoked = vectorNow.Add(-time.Minute)
				ring.Peers = []*keys.PeerKey{&po, ring.Peers[1]}
			}
			data := f.seal(t, c.signer.Signer, c.to.Recipient, c.created)
			o := &Opener{Ring: &ring, Now: func() time.Time { return c.now }}
			_, err := o.Open(data)
			if got := Reason(err); got != c.reason {
				t.Fatalf("Open: reason %q (%v), want %q", got, err, c.reason)
			}
			if c.reason != "" && !errors.Is(err, sentinel(c.reason)) {
				t.Errorf("%v does not match its sentinel", err)
			}
		})
	}
}

func TestOpener_RingMisconfigured(t *testing.T) {
	o := &Opener{Ring: &keys.Ring{Zone: "intranet", Peer: "dmz"}}
	if _, err := o.Open([]byte("x")); err == nil || Reason(err) != "" {
		t.Fatalf("Open with an empty ring: %v, want a configuration error", err)
	}
}
