package envelope

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"filippo.io/age"
	"golang.org/x/mod/sumdb/note"

	"github.com/ferrybridge/ferry/internal/keys"
)

// Opener opens envelopes addressed to one zone from one sender.
//
// It holds the keys either one by one (Self, Identity and Sender: one age
// identity, one sender key without a window) or as a [keys.Ring] (Ring):
// then the sender's signing key is the ring's peer key named by the
// signature line, which must not be revoked ([ReasonRevokedKey]) and whose
// window must hold the header's created time ([ReasonKeyNotValid]), and
// the identity is the ring's own identity whose fingerprint the header's
// to line names, if it still decrypts at the Opener's now. With a Ring,
// Self defaults to Ring.Zone and Identity and Sender are ignored.
type Opener struct {
	Self     string              // this zone; envelopes must be addressed To it
	Identity *age.X25519Identity // this zone's age identity
	Sender   note.Verifier       // the expected sender's signing key
	Ring     *keys.Ring          // if set, the keys (see above)
	MaxSize  int64               // 0 means DefaultMaxSize
	MaxSkew  time.Duration       // 0 means DefaultMaxSkew
	Now      func() time.Time    // nil means time.Now

	// hook, if set, is called with "decrypt" just before the payload is
	// handed to age and with "unwrap" when age asks the identity to
	// unwrap the file key. Tests use it to prove the order of checks.
	hook func(event string)
}

// Open verifies and decrypts an envelope file, in the order docs/envelope.md
// prescribes. Every rejection is a [*ParseError] (see [Reason]); other
// errors mean the Opener itself is misconfigured.
//
// The returned Body aliases a buffer Open allocated, not data.
func (o *Opener) Open(data []byte) (*Opened, error) {
	self := o.Self
	if o.Ring != nil {
		if self == "" {
			self = o.Ring.Zone
		}
		if len(o.Ring.Peers) == 0 || self == "" {
			return nil, errors.New("open envelope: opener's ring has no peer keys or no zone")
		}
	} else if o.Identity == nil || o.Sender == nil || self == "" {
		return nil, errors.New("open envelope: opener needs Self, Identity and Sender, or a Ring")
	}
	maxSize := o.MaxSize
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	maxSkew := o.MaxSkew
	if maxSkew <= 0 {
		maxSkew = DefaultMaxSkew
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}

	// 1. Size cap, before looking at any byte.
	if int64(len(data)) > maxSize {
		return nil, reject(ReasonTooLarge, "%d bytes, limit %d", len(data), maxSize)
	}
	t := now()
	// 2–4. Framing, signature, header syntax, sender; with a ring, the
	// sender key's revocation and window.
	sender, pk := o.Sender, (*keys.PeerKey)(nil)
	if o.Ring != nil {
		sender, pk = ringSender(data, o.Ring)
	}
	h, hh, payload, err := verifiedHeader(data, sender)
	if err != nil {
		return nil, err
	}
	if pk != nil {
		if pk.IsRevoked() {
			return nil, reject(ReasonRevokedKey, "signed by %s+%s, revoked at %s", sender.Name(), pk.ID(), pk.Revoked.UTC().Format(timeLayout))
		}
		if !pk.InWindow(h.Created) {
			return nil, reject(ReasonKeyNotValid, "created %s, outside the window of key %s+%s (%s)", h.Created.Format(timeLayout), sender.Name(), pk.ID(), window(pk))
		}
	}
	// 5. Recipient.
	identity := o.Identity
	if o.Ring != nil {
		identity = o.Ring.Identity(h.ToKey, t)
		if h.To != self || identity == nil {
			return nil, reject(ReasonWrongRecipient, "addressed to %s (age key %s), this is %s without a current age key of that fingerprint", h.To, h.ToKey, self)
		}
	} else if fpr := keys.Fingerprint(identity.Recipient()); h.To != self || h.ToKey != fpr {
		return nil, reject(ReasonWrongRecipient, "addressed to %s (age key %s), this is %s (age key %s)", h.To, h.ToKey, self, fpr)
	}
	// 6. Freshness.
	if !t.Before(h.Expires) {
		return nil, reject(ReasonExpired, "expired at %s, now %s", h.Expires.Format(timeLayout), t.UTC().Format(timeLayout))
	}
	if h.Created.After(t.Add(maxSkew)) {
		return nil, reject(ReasonNotYetValid, "created %s, more than %s after now %s", h.Created.Format(timeLayout), maxSkew, t.UTC().Format(timeLayout))
	}
	// 7. Payload hash and size.
	if err := checkPayload(h, payload); err != nil {
		return nil, err
	}
	// 8. Decrypt, with at most two X25519 stanzas, to the authenticated end.
	pt, err := o.decrypt(payload, identity)
	if err != nil {
		return nil, err
	}
	// 9. Manifest.
	body, err := checkManifest(h, pt)
	if err != nil {
		return nil, err
	}
	return &Opened{Header: *h, HeaderHash: hh, Body: body}, nil
}

// Verify checks the signature, the header fields and the payload hash of an
// envelope with the sender's public key only; it does not decrypt.
//
// Verify applies the size cap [DefaultMaxSize] and every rule of
// [Opener.Open] up to the payload hash except the recipient and freshness
// checks, so that auditors can verify envelopes long after they expired.
// It returns the header and the SHA-256 of the signed note.
func Verify(data []byte, sender note.Verifier) (*Header, [32]byte, error) {
	if sender == nil {
		return nil, [32]byte{}, errors.New("verify envelope: no sender key")
	}
	if len(data) > DefaultMaxSize {
		return nil, [32]byte{}, reject(ReasonTooLarge, "%d bytes, limit %d", len(data), DefaultMaxSize)
	}
	h, hh, payload, err := verifiedHeader(data, sender)
	if err != nil {
		return nil, [32]byte{}, err
	}
	if err := checkPayload(h, payload); err != nil {
		return nil, [32]byte{}, err
	}
	return h, hh, nil
}

// Inspect parses the header of an envelope without verifying anything. The
// header is what the file claims, signed or not; the payload is not looked
// at. Inspect applies the size cap [DefaultMaxSize] and the same syntax
// rules as [Opener.Open].
func Inspect(data []byte) (*Header, error) {
	if len(data) > DefaultMaxSize {
		return nil, reject(ReasonTooLarge, "%d bytes, limit %d", len(data), DefaultMaxSize)
	}
	signed, _, err := splitFrame(data)
	if err != nil {
		return nil, err
	}
	text, err := noteText(signed)
	if err != nil {
		return nil, err
	}
	return parseHeader(text)
}

// verifiedHeader parses the framing line, verifies the signed note with
// sender, parses the header and checks that it names sender. It returns
// the header, the SHA-256 of the signed note and the payload bytes.
func verifiedHeader(data []byte, sender note.Verifier) (*Header, [32]byte, []byte, error) {
	signed, payload, err := splitFrame(data)
	if err != nil {
		return nil, [32]byte{}, nil, err
	}
	text, err := OpenNote(signed, sender)
	if err != nil {
		return nil, [32]byte{}, nil, err
	}
	h, err := parseHeader(text)
	if err != nil {
		return nil, [32]byte{}, nil, err
	}
	if id := keys.KeyID(sender.KeyHash()); h.From != sender.Name() || h.FromKey != id {
		return nil, [32]byte{}, nil, reject(ReasonUnknownSender, "header names sender %s+%s, signed by %s+%s", h.From, h.FromKey, sender.Name(), id)
	}
	return h, sha256.Sum256(signed), payload, nil
}

// ringSender returns the verifier to check an envelope's signature with:
// the ring's peer key that its signature line names, with that key; or,
// when the line names no peer key (or cannot be read), the peer's newest
// key and nil, so that the check fails with the reason it would give for
// a single sender (unknown_sender, bad_signature, malformed).
func ringSender(data []byte, ring *keys.Ring) (note.Verifier, *keys.PeerKey) {
	fallback := ring.Peers[len(ring.Peers)-1].Verifier
	signed, _, err := splitFrame(data)
	if err != nil {
		return fallback, nil
	}
	text, err := noteText(signed)
	if err != nil {
		return fallback, nil
	}
	line, _, _ := bytes.Cut(signed[len(text)+1:], []byte("\n"))
	line, ok := bytes.CutPrefix(line, []byte(sigPrefix))
	if !ok {
		return fallback, nil
	}
	name, b64, _ := bytes.Cut(line, []byte(" "))
	sig, err := base64.StdEncoding.DecodeString(string(b64))
	if err != nil || len(sig) < 4 {
		return fallback, nil
	}
	if k := ring.PeerKey(string(name), binary.BigEndian.Uint32(sig)); k != nil {
		return k.Verifier, k
	}
	return fallback, nil
}

// window describes a peer key's window for messages.
func window(k *keys.PeerKey) string {
	from, until := "-", "-"
	if !k.From.IsZero() {
		from = k.From.UTC().Format(timeLayout)
	}
	if !k.Until.IsZero() {
		until = k.Until.UTC().Format(timeLayout)
	}
	return "from " + from + " until " + until
}

// sigPrefix starts a signature line of a signed note.
const sigPrefix = "\u2014 "

// OpenNote verifies that signed is a signed note with exactly one
// signature line, canonically encoded, by sender, and returns its text.
// It is the signature check of step 3 of reading an envelope, for other
// signed formats of ferry (carry manifests) that want the same single
// encoding. Failures are [*ParseError] values with reason malformed,
// bad_signature or unknown_sender.
func OpenNote(signed []byte, sender note.Verifier) ([]byte, error) {
	text, err := noteText(signed)
	if err != nil {
		return nil, err
	}
	// Exactly one signature line. note.Open would accept more (and drop
	// duplicates), which would let the same header travel under several
	// header hashes.
	sigs := signed[len(text)+1:]
	if len(sigs) == 0 || bytes.IndexByte(sigs, '\n') != len(sigs)-1 {
		return nil, reject(ReasonBadSignature, "want exactly one signature line")
	}
	line, ok := bytes.CutPrefix(sigs[:len(sigs)-1], []byte(sigPrefix))
	if !ok {
		return nil, reject(ReasonBadSignature, "malformed signature line")
	}
	name, b64, _ := bytes.Cut(line, []byte(" "))
	sig, err := base64.StdEncoding.DecodeString(string(b64))
	// Only the canonical base64 of a 4-byte key hash and a 64-byte Ed25519
	// signature, so that the signed note has a single encoding.
	if err != nil || len(sig) != 4+64 || base64.StdEncoding.EncodeToString(sig) != string(b64) {
		return nil, reject(ReasonBadSignature, "malformed signature line")
	}
	if hash := binary.BigEndian.Uint32(sig); string(name) != sender.Name() || hash != sender.KeyHash() {
		return nil, reject(ReasonUnknownSender, "signed by key %q+%s, want %s+%s", short(string(name)), keys.KeyID(hash), sender.Name(), keys.KeyID(sender.KeyHash()))
	}
	n, err := note.Open(signed, note.VerifierList(sender))
	if err != nil {
		var invalid *note.InvalidSignatureError
		if errors.As(err, &invalid) {
			return nil, reject(ReasonBadSignature, "signature by %s+%s does not verify", sender.Name(), keys.KeyID(sender.KeyHash()))
		}
		return nil, &ParseError{Reason: ReasonMalformed, Err: fmt.Errorf("signed note: %w", err)}
	}
	if len(n.Sigs) != 1 || len(n.UnverifiedSigs) != 0 {
		// Unreachable after the checks above; kept so that a change in
		// note.Open cannot silently accept a second signature.
		return nil, reject(ReasonBadSignature, "want exactly one signature")
	}
	return []byte(n.Text), nil
}

// checkPayload checks the payload against the size and hash in the header.
func checkPayload(h *Header, payload []byte) error {
	if int64(len(payload)) != h.PayloadSize {
		return reject(ReasonPayloadMismatch, "payload is %d bytes, header says %d", len(payload), h.PayloadSize)
	}
	if sha256.Sum256(payload) != h.PayloadSHA256 {
		return reject(ReasonPayloadMismatch, "payload SHA-256 differs from the header's")
	}
	return nil
}

// decrypt decrypts an age payload with identity, behind a
// stanza limit, and reads it to its authenticated end.
func (o *Opener) decrypt(payload []byte, identity *age.X25519Identity) ([]byte, error) {
	if o.hook != nil {
		o.hook("decrypt")
	}
	r, err := age.Decrypt(bytes.NewReader(payload), &limitedIdentity{id: identity, hook: o.hook})
	if err != nil {
		return nil, &ParseError{Reason: ReasonDecryptFailed, Err: err}
	}
	// The plaintext is shorter than the ciphertext, so one buffer of the
	// ciphertext's size holds it without growing. A plaintext that filled
	// it would be a bug in age; it is refused rather than grown.
	buf := make([]byte, len(payload))
	n := 0
	for {
		if n == len(buf) {
			return nil, reject(ReasonDecryptFailed, "plaintext longer than ciphertext")
		}
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, &ParseError{Reason: ReasonDecryptFailed, Err: err}
		}
	}
	return buf[:n], nil
}

// checkManifest checks that the plaintext starts with the manifest of h and
// returns the body that follows it.
func checkManifest(h *Header, pt []byte) ([]byte, error) {
	want := encodeManifest(h)
	if bytes.HasPrefix(pt, want) {
		return pt[len(want):], nil
	}
	// Name the first line that differs, never its contents: they come from
	// inside the ciphertext.
	wantLines := bytes.SplitAfter(want, []byte("\n"))
	for i, wl := range wantLines {
		got, rest, found := bytes.Cut(pt, []byte("\n"))
		if !found || !bytes.Equal(got, wl[:len(wl)-1]) {
			key, _, _ := bytes.Cut(wl, []byte(" "))
			return nil, reject(ReasonManifestMismatch, "manifest line %d (%q) differs from the header", i+1, bytes.TrimSpace(key))
		}
		pt = rest
	}
	return nil, reject(ReasonManifestMismatch, "manifest differs from the header")
}

// maxStanzas is how many recipient stanzas an envelope may carry: the
// recipient zone's key and, optionally, one escrow key.
const maxStanzas = 2

// errStanzas is the detail of a decrypt_failed rejection by limitedIdentity.
var errStanzas = errors.New("age header refused")

// limitedIdentity wraps an X25519 identity and refuses, before any
// unwrapping work, an age header with more than maxStanzas stanzas or with
// any stanza that is not X25519. age hands Unwrap every stanza of the
// header, so this bounds the work a hostile header can cause.
type limitedIdentity struct {
	id   *age.X25519Identity
	hook func(event string)
}

// Unwrap implements [age.Identity].
func (l *limitedIdentity) Unwrap(stanzas []*age.Stanza) ([]byte, error) {
	if l.hook != nil {
		l.hook("unwrap")
	}
	if len(stanzas) > maxStanzas {
		return nil, fmt.Errorf("%w: %d stanzas, at most %d allowed", errStanzas, len(stanzas), maxStanzas)
	}
	for _, s := range stanzas {
		if s.Type != "X25519" {
			return nil, fmt.Errorf("%w: stanza type %q, only X25519 allowed", errStanzas, short(s.Type))
		}
	}
	return l.id.Unwrap(stanzas)
}

// short returns s, cut to 40 bytes, for quoting untrusted input in errors.
func short(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
