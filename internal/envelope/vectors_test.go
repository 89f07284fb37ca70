package envelope

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"

	"filippo.io/age"
	"golang.org/x/mod/sumdb/note"

	"github.com/ferrybridge/ferry/internal/keys"
)

// update regenerates the committed test vectors in testdata/envelope. The
// generation draws its randomness (age's file keys, ephemeral shares and
// nonces, the throwaway keys of hostile vectors) from a fixed seed, so an
// -update with unchanged code rewrites the same bytes; the committed keys
// (see vectorKeyDirs) are generated only when they are missing.
var update = flag.Bool("update", false, "regenerate the envelope test vectors in "+vectorDir)

// vectorDir holds the committed test vectors, relative to this package.
const vectorDir = "../../testdata/envelope"

// vectorManifest is the file in vectorDir that lists every vector.
const vectorManifest = "vectors.json"

// vectorNow is the time every vector is opened at.
var vectorNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// vectorSeed seeds the randomness of a vector generation run.
const vectorSeed = 20260301

// vectorKeyDirs lists the committed key directories in vectorDir, as
// keys.WriteDir writes them, and the zone each holds keys of: the sender,
// the recipient, and two more keys of the sender that only the key ring
// knows.
var vectorKeyDirs = []struct{ dir, zone string }{
	{"dmz", "dmz"},
	{"intranet", "intranet"},
	{"dmz-old", "dmz"},     // dmz's key before it rotated to dmz/
	{"dmz-revoked", "dmz"}, // a key of dmz that the intranet revoked
}

// ringDir is the directory in vectorDir that holds the peer key files of
// the key ring that vectors marked "ring" are opened with (see
// vectorRing).
const ringDir = "ring"

// The windows and revocation the ring records for dmz's keys: dmz-old
// signed until the rotation to dmz at ringRotated and is accepted for
// envelopes created before ringOldUntil (six hours of overlap); dmz is
// accepted from ringRotated; dmz-revoked was revoked at ringRevoked.
var (
	ringRotated  = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	ringOldUntil = ringRotated.Add(6 * time.Hour)
	ringRevoked  = time.Date(2026, 2, 15, 0, 0, 0, 0, time.UTC)
)

// vectorFile is the on-disk description of the vectors: vectors.json.
type vectorFile struct {
	Comment   string   `json:"comment"`
	Sender    string   `json:"sender"`    // zone name; keys in <Sender>/
	Recipient string   `json:"recipient"` // zone name; keys in <Recipient>/
	Ring      string   `json:"ring"`      // directory of the ring's peer key files
	Vectors   []vector `json:"vectors"`
}

// vector is one test vector: the file, when to open it, and what Open,
// Verify and Inspect must say about it.
type vector struct {
	File          string `json:"file"`
	Comment       string `json:"comment"`
	Now           string `json:"now"`                   // RFC 3339; the Opener's clock
	MaxSize       int64  `json:"max_size,omitempty"`    // Opener.MaxSize; 0 means the default
	Ring          bool   `json:"ring,omitempty"`        // open with the key ring, not the sender key
	Reason        string `json:"reason"`                // Opener.Open's reason, "" if it opens
	VerifyWith    string `json:"verify_with,omitempty"` // key directory of Verify's key; "" means the sender's
	VerifyReason  string `json:"verify_reason"`         // Verify's reason with that key
	InspectReason string `json:"inspect_reason"`        // Inspect's reason
	Body          string `json:"body,omitempty"`        // the body of a good vector
	HeaderSHA256  string `json:"header_sha256,omitempty"`
}

// testZone holds a zone's keys for the tests.
type testZone struct {
	name        string
	signer      note.Signer
	verifier    note.Verifier
	verifierKey string // the verifier key in note format, as in sign.pub
	identity    *age.X25519Identity
}

func (z *testZone) recipient() *age.X25519Recipient { return z.identity.Recipient() }

// newTestZone generates fresh keys for a zone.
func newTestZone(t testing.TB, name string) *testZone {
	t.Helper()
	z, err := keys.Generate(name)
	if err != nil {
		t.Fatal(err)
	}
	return &testZone{name: name, signer: z.Signer, verifier: z.Verifier, verifierKey: z.VerifierKey(), identity: z.Identity}
}

// readKey returns the first key line of a key file. Unlike keys.LoadZone it
// does not check permissions: git does not keep mode 0600, and these are
// test keys only.
func readKey(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			return line
		}
	}
	t.Fatalf("%s: no key", path)
	return ""
}

// loadTestZone reads the keys of zone that keys.WriteDir wrote into dir.
func loadTestZone(t testing.TB, dir, zone string) *testZone {
	t.Helper()
	signer, err := note.NewSigner(readKey(t, filepath.Join(dir, keys.SignKeyFile)))
	if err != nil {
		t.Fatal(err)
	}
	vkey := readKey(t, filepath.Join(dir, keys.SignPubFile))
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	id, err := age.ParseX25519Identity(readKey(t, filepath.Join(dir, keys.AgeKeyFile)))
	if err != nil {
		t.Fatal(err)
	}
	if signer.Name() != zone || verifier.KeyHash() != signer.KeyHash() {
		t.Fatalf("%s: keys are not of zone %s or do not match each other", dir, zone)
	}
	if pub := readKey(t, filepath.Join(dir, keys.AgePubFile)); pub != id.Recipient().String() {
		t.Fatalf("%s: age.pub does not match age.key", dir)
	}
	return &testZone{name: signer.Name(), signer: signer, verifier: verifier, verifierKey: vkey, identity: id}
}

// vectorKeys returns the committed sender ("dmz") and recipient
// ("intranet") keys of the vectors.
func vectorKeys(t testing.TB) (dmz, intranet *testZone) {
	t.Helper()
	return vectorKey(t, "dmz"), vectorKey(t, "intranet")
}

// vectorKey returns the keys in the committed key directory dir, one of
// vectorKeyDirs.
func vectorKey(t testing.TB, dir string) *testZone {
	t.Helper()
	for _, d := range vectorKeyDirs {
		if d.dir == dir {
			return loadTestZone(t, filepath.Join(vectorDir, dir), d.zone)
		}
	}
	t.Fatalf("%s is not a committed key directory", dir)
	return nil
}

// vectorRing returns the key ring that ring vectors are opened with: the
// recipient's own key, and the sender's keys as the intranet's key
// directory records them, read by keys.LoadPeer and keys.LoadPeerKeys from
// vectorDir/<ring>: peer-sign.pub and peer-age.pub (dmz-old, the key the
// intranet first trusted) and peer-keys (the windows and revocations).
func vectorRing(t testing.TB, intranet *testZone, ring string) *keys.Ring {
	t.Helper()
	dir := filepath.Join(vectorDir, ring)
	base, err := keys.LoadPeer(dir)
	if err != nil {
		t.Fatal(err)
	}
	peers, err := keys.LoadPeerKeys(dir, base)
	if err != nil {
		t.Fatal(err)
	}
	own := &keys.Zone{Name: intranet.name, Signer: intranet.signer, Verifier: intranet.verifier,
		Identity: intranet.identity, Recipient: intranet.recipient()}
	return &keys.Ring{Zone: intranet.name, Peer: base.Name, Own: []*keys.OwnKey{{Zone: own}}, Peers: peers}
}

// vectorOpener returns the Opener the vectors are opened with.
func vectorOpener(dmz, intranet *testZone, now time.Time, maxSize int64) *Opener {
	return &Opener{
		Self:     intranet.name,
		Identity: intranet.identity,
		Sender:   dmz.verifier,
		MaxSize:  maxSize,
		Now:      func() time.Time { return now },
	}
}

// readVectors reads vectors.json.
func readVectors(t testing.TB) *vectorFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(vectorDir, vectorManifest))
	if err != nil {
		t.Fatalf("%v (run go test ./internal/envelope -run TestVectors -update)", err)
	}
	var vf vectorFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&vf); err != nil {
		t.Fatalf("%s: %v", vectorManifest, err)
	}
	return &vf
}

// TestVectors opens every committed vector at its fixed time, with the
// sender key or the key ring as the vector says, and checks the reason
// Open, Verify and Inspect give, and the body of good ones. With -update
// it first regenerates the vectors.
func TestVectors(t *testing.T) {
	if *update {
		generateVectors(t)
	}
	vf := readVectors(t)
	dmz, intranet := vectorKeys(t)
	if vf.Sender != dmz.name || vf.Recipient != intranet.name {
		t.Fatalf("vectors.json names %s→%s, keys are %s→%s", vf.Sender, vf.Recipient, dmz.name, intranet.name)
	}
	ring := vectorRing(t, intranet, vf.Ring)
	if ring.Peer != dmz.name {
		t.Fatalf("the ring in %s holds keys of %s, want %s", vf.Ring, ring.Peer, dmz.name)
	}
	listed := map[string]bool{}
	seen := map[string]bool{}
	for _, v := range vf.Vectors {
		listed[v.File] = true
		seen[v.Reason] = true
		t.Run(strings.TrimSuffix(v.File, FileExt), func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(vectorDir, v.File))
			if err != nil {
				t.Fatal(err)
			}
			now, err := time.Parse(time.RFC3339, v.Now)
			if err != nil {
				t.Fatal(err)
			}
			var events []string
			o := vectorOpener(dmz, intranet, now, v.MaxSize)
			if v.Ring {
				o = &Opener{Ring: ring, MaxSize: v.MaxSize, Now: o.Now}
			}
			o.hook = func(e string) { events = append(events, e) }
			got, err := o.Open(data)
			if r := Reason(err); r != v.Reason || (err != nil) != (v.Reason != "") {
				t.Fatalf("Open: reason %q (%v), want %q", r, err, v.Reason)
			}
			if err != nil && !errors.Is(err, sentinels[v.Reason]) {
				t.Errorf("Open: %v does not match its sentinel", err)
			}
			// The reader never hands the payload to age before steps 1–7
			// held: only vectors rejected at step 8 or later reach it.
			switch v.Reason {
			case "", ReasonDecryptFailed, ReasonManifestMismatch:
				if len(events) == 0 || events[0] != "decrypt" {
					t.Errorf("hook events %q, want decrypt first", events)
				}
			default:
				if len(events) != 0 {
					t.Errorf("rejected with %s but the hook saw %q", v.Reason, events)
				}
			}
			if err == nil {
				if string(got.Body) != v.Body {
					t.Errorf("Body = %q, want %q", got.Body, v.Body)
				}
				if hh := hex.EncodeToString(got.HeaderHash[:]); hh != v.HeaderSHA256 {
					t.Errorf("HeaderHash = %s, want %s", hh, v.HeaderSHA256)
				}
				if !ValidFileName(FileName(&got.Header)) {
					t.Errorf("FileName %q is not valid", FileName(&got.Header))
				}
			}
			verifier := dmz.verifier
			if v.VerifyWith != "" {
				verifier = vectorKey(t, v.VerifyWith).verifier
			}
			_, _, err = Verify(data, verifier)
			if r := Reason(err); r != v.VerifyReason || (err != nil) != (v.VerifyReason != "") {
				t.Errorf("Verify: reason %q (%v), want %q", r, err, v.VerifyReason)
			}
			_, err = Inspect(data)
			if r := Reason(err); r != v.InspectReason || (err != nil) != (v.InspectReason != "") {
				t.Errorf("Inspect: reason %q (%v), want %q", r, err, v.InspectReason)
			}
		})
	}
	// Every rule has a vector, and every file in the directory is listed.
	for _, r := range append(Reasons(), "") {
		if !seen[r] {
			t.Errorf("no vector for reason %q", r)
		}
	}
	files, err := filepath.Glob(filepath.Join(vectorDir, "*"+FileExt))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !listed[filepath.Base(f)] {
			t.Errorf("%s is not listed in %s", f, vectorManifest)
		}
	}
}

// vectorSpec describes how to make one vector. The zero value is a good
// requests envelope from dmz to intranet, created a minute before
// vectorNow and expiring an hour after it.
type vectorSpec struct {
	name    string
	comment string
	reason  string
	verify  string // Verify's reason; see verifyDefault
	inspect string // Inspect's reason
	maxSize int64
	body    string
	ring    bool   // opened with the key ring
	key     string // the committed key directory that signs it; "" means dmz

	header     func(g *vectorGen, h *Header)          // edits the header before build
	manifest   func(h Header) []byte                  // replaces the manifest
	recipients func(g *vectorGen) []age.Recipient     // replaces [intranet]
	signers    func(g *vectorGen) []note.Signer       // replaces [dmz]
	editText   func(text []byte) []byte               // edits the signed text
	post       func(g *vectorGen, data []byte) []byte // edits the finished file
}

// vectorGen holds the keys a vector generation run uses: the committed
// ones and throwaway ones for hostile vectors.
type vectorGen struct {
	t         testing.TB
	dmz       *testZone
	intranet  *testZone
	committed map[string]*testZone // by directory, every one of vectorKeyDirs
	dmz2      *testZone            // another key named "dmz"
	other     *testZone            // a third zone, "other"
	hashes    map[string][32]byte
}

// baseHeader returns the header of a good vector called name.
func (g *vectorGen) baseHeader(name string) Header {
	id := sha256.Sum256([]byte("ferry test vector " + name))
	return Header{
		ID:      hex.EncodeToString(id[:16]),
		Kind:    KindRequests,
		From:    g.dmz.name,
		FromKey: keys.KeyID(g.dmz.signer.KeyHash()),
		To:      g.intranet.name,
		ToKey:   keys.Fingerprint(g.intranet.recipient()),
		Channel: "requests",
		Seq:     1,
		Created: vectorNow.Add(-time.Minute),
		Expires: vectorNow.Add(time.Hour),
	}
}

// make builds the file of one vector.
func (g *vectorGen) make(s *vectorSpec) (*Sealed, []byte) {
	g.t.Helper()
	h := g.baseHeader(s.name)
	signer := g.dmz
	if s.key != "" {
		if signer = g.committed[s.key]; signer == nil {
			g.t.Fatalf("%s: no committed key directory %s", s.name, s.key)
		}
		h.FromKey = keys.KeyID(signer.signer.KeyHash())
	}
	if s.header != nil {
		s.header(g, &h)
	}
	manifest := encodeManifest(&h)
	if s.manifest != nil {
		manifest = s.manifest(h)
	}
	recipients := []age.Recipient{g.intranet.recipient()}
	if s.recipients != nil {
		recipients = s.recipients(g)
	}
	signers := []note.Signer{signer.signer}
	if s.signers != nil {
		signers = s.signers(g)
	}
	sealed, err := build(&h, manifest, []byte(s.body), recipients, signers, s.editText)
	if err != nil {
		g.t.Fatalf("%s: %v", s.name, err)
	}
	data := sealed.Data
	if s.post != nil {
		data = s.post(g, bytes.Clone(data))
	}
	return sealed, data
}

// verifyDefault returns the reason Verify gives for a vector that Open
// rejects with reason: Verify skips the recipient, freshness, decryption
// and manifest steps, and with the public key of the key that signed the
// vector (verify_with) it knows no revocation or window.
func verifyDefault(reason string) string {
	switch reason {
	case ReasonWrongRecipient, ReasonExpired, ReasonNotYetValid, ReasonDecryptFailed, ReasonManifestMismatch,
		ReasonRevokedKey, ReasonKeyNotValid:
		return ""
	}
	return reason
}

// splitFile splits a well-formed file into its signed note and payload.
func splitFile(t testing.TB, data []byte) (signed, payload []byte) {
	t.Helper()
	signed, payload, err := splitFrame(data)
	if err != nil {
		t.Fatal(err)
	}
	return signed, payload
}

// frame returns the framing line for a signed note.
func frame(signed []byte) []byte {
	return []byte(frameV1 + strconv.Itoa(len(signed)) + "\n")
}

// resign replaces the payload of data and signs a header that matches it,
// so that the file passes every check up to the payload hash.
func resign(t testing.TB, data, payload []byte, signer note.Signer) []byte {
	t.Helper()
	h, err := Inspect(data)
	if err != nil {
		t.Fatal(err)
	}
	h.PayloadSHA256 = sha256.Sum256(payload)
	h.PayloadSize = int64(len(payload))
	signed, err := note.Sign(&note.Note{Text: string(encodeHeader(h))}, signer)
	if err != nil {
		t.Fatal(err)
	}
	return append(append(frame(signed), signed...), payload...)
}

// replaceOnce replaces the single occurrence of old in b, failing the test
// if there is not exactly one.
func replaceOnce(t testing.TB, b []byte, old, new string) []byte {
	t.Helper()
	if n := bytes.Count(b, []byte(old)); n != 1 {
		t.Fatalf("%q occurs %d times, want 1", old, n)
	}
	return bytes.Replace(b, []byte(old), []byte(new), 1)
}

// editSig decodes the signature of a well-formed file's note, lets edit
// change its base64 text, and returns the file with the new note.
func editSig(t testing.TB, data []byte, edit func(b64 string) string) []byte {
	t.Helper()
	signed, payload := splitFile(t, data)
	i := bytes.LastIndex(signed, []byte(" "))
	b64 := string(signed[i+1 : len(signed)-1])
	signed = append(append(bytes.Clone(signed[:i+1]), edit(b64)...), '\n')
	return append(append(frame(signed), signed...), payload...)
}

// otherStanza is an age recipient that writes a stanza of a type that is
// not X25519.
type otherStanza struct{}

func (otherStanza) Wrap(fileKey []byte) ([]*age.Stanza, error) {
	body := make([]byte, 32)
	rand.Read(body)
	return []*age.Stanza{{Type: "ferry-test", Args: []string{"other"}, Body: body}}, nil
}

// vectorSpecs lists every vector. Good ones come first; then one or more
// per rejection rule, in the order of Reasons.
func vectorSpecs() []*vectorSpec {
	const goodBody = `{"requests":[{"id":"7f3a","operation":"exam_slots","params":{}}]}` + "\n"
	return []*vectorSpec{
		{name: "good_requests", body: goodBody,
			comment: "a requests envelope, the first on its channel: the worked example of docs/envelope.md"},
		{name: "good_heartbeat_empty", comment: "a heartbeat with an empty body, second on the channel: prev is good_requests' header hash",
			header: func(g *vectorGen, h *Header) { h.Kind, h.Seq, h.Prev = KindHeartbeat, 2, g.hashes["good_requests"] }},
		{name: "good_escrow", body: goodBody, comment: "two X25519 stanzas, the recipient's and an escrow key's: the most a reader accepts",
			header: func(g *vectorGen, h *Header) { h.Seq, h.Prev = 3, g.hashes["good_heartbeat_empty"] },
			recipients: func(g *vectorGen) []age.Recipient {
				return []age.Recipient{g.other.recipient(), g.intranet.recipient()}
			}},
		{name: "good_ring_new_key", ring: true, body: goodBody,
			comment: "opened with the ring: signed by dmz, which the ring accepts for envelopes created from 2026-03-01T00:00:00Z"},
		{name: "good_ring_old_key", ring: true, key: "dmz-old", body: goodBody,
			comment: "opened with the ring: signed by dmz-old, created 05:59, a minute before its until 06:00, and read at 12:00",
			header:  func(_ *vectorGen, h *Header) { h.Created = ringOldUntil.Add(-time.Minute) }},

		{name: "too_large_note", reason: ReasonTooLarge, inspect: ReasonTooLarge, comment: "the framing line announces a signed note of 4097 bytes",
			post: func(g *vectorGen, d []byte) []byte {
				signed, _ := splitFile(g.t, d)
				return replaceOnce(g.t, d, string(frame(signed)), frameV1+"4097\n")
			}},
		{name: "too_large_file", reason: ReasonTooLarge, verify: "-", maxSize: 1024, body: strings.Repeat("x", 1024),
			comment: "a good envelope opened with max_size 1024; Verify and Inspect use the default cap"},

		{name: "malformed_empty", reason: ReasonMalformed, inspect: ReasonMalformed, comment: "an empty file: no framing line",
			post: func(*vectorGen, []byte) []byte { return nil }},
		{name: "malformed_no_frame", reason: ReasonMalformed, inspect: ReasonMalformed, comment: "a bare age file: the first line is not a framing line",
			post: func(g *vectorGen, d []byte) []byte { _, p := splitFile(g.t, d); return p }},
		{name: "malformed_long_frame", reason: ReasonMalformed, inspect: ReasonMalformed, comment: "no newline within the first 32 bytes",
			post: func(g *vectorGen, d []byte) []byte { d[bytes.IndexByte(d, '\n')] = ' '; return d }},
		{name: "malformed_bad_length", reason: ReasonMalformed, inspect: ReasonMalformed, comment: "the note length has a leading zero",
			post: func(g *vectorGen, d []byte) []byte { return replaceOnce(g.t, d, frameV1, frameV1+"0") }},
		{name: "malformed_truncated_note", reason: ReasonMalformed, inspect: ReasonMalformed, comment: "the file ends inside the signed note",
			post: func(g *vectorGen, d []byte) []byte { return d[:len(frame(nil))+200] }},
		{name: "malformed_unsigned", reason: ReasonMalformed, inspect: ReasonMalformed, comment: "the note has no signature block",
			post: func(g *vectorGen, d []byte) []byte {
				signed, p := splitFile(g.t, d)
				text := signed[:bytes.Index(signed, []byte("\n\n"))+1]
				return append(append(frame(text), text...), p...)
			}},
		{name: "malformed_noncanonical_seq", reason: ReasonMalformed, inspect: ReasonMalformed, comment: "validly signed, but seq is written 01",
			editText: func(b []byte) []byte { return bytes.Replace(b, []byte("\nseq 1\n"), []byte("\nseq 01\n"), 1) }},
		{name: "malformed_noncanonical_time", reason: ReasonMalformed, inspect: ReasonMalformed, comment: "validly signed, but created is written with +00:00",
			editText: func(b []byte) []byte { return bytes.Replace(b, []byte("11:59:00Z"), []byte("11:59:00+00:00"), 1) }},
		{name: "malformed_unknown_line", reason: ReasonMalformed, inspect: ReasonMalformed, comment: "validly signed, with a line after payload",
			editText: func(b []byte) []byte { return append(b, "reply-to 0123\n"...) }},
		{name: "malformed_missing_line", reason: ReasonMalformed, inspect: ReasonMalformed, comment: "validly signed, without the channel line",
			editText: func(b []byte) []byte { return bytes.Replace(b, []byte("channel requests\n"), nil, 1) }},
		{name: "malformed_expires_before_created", reason: ReasonMalformed, inspect: ReasonMalformed, comment: "validly signed, expires is before created",
			header: func(_ *vectorGen, h *Header) { h.Expires = h.Created.Add(-time.Second) }},

		{name: "bad_version_frame", reason: ReasonBadVersion, inspect: ReasonBadVersion, comment: "framing line ferry-envelope/v2",
			post: func(g *vectorGen, d []byte) []byte {
				return replaceOnce(g.t, d, "ferry-envelope/v1 ", "ferry-envelope/v2 ")
			}},
		{name: "bad_version_header", reason: ReasonBadVersion, inspect: ReasonBadVersion, comment: "validly signed header of type ferry.envelope/v2",
			editText: func(b []byte) []byte { return bytes.Replace(b, []byte(typeLine), []byte("ferry.envelope/v2"), 1) }},

		{name: "bad_signature_flipped_text", reason: ReasonBadSignature, comment: "seq 1 changed to seq 3 after signing",
			post: func(g *vectorGen, d []byte) []byte { return replaceOnce(g.t, d, "\nseq 1\n", "\nseq 3\n") }},
		{name: "bad_signature_flipped_sig", reason: ReasonBadSignature, comment: "one bit of the Ed25519 signature flipped",
			post: func(g *vectorGen, d []byte) []byte {
				return editSig(g.t, d, func(s string) string {
					sig, _ := base64.StdEncoding.DecodeString(s)
					sig[4+10] ^= 0x01
					return base64.StdEncoding.EncodeToString(sig)
				})
			}},
		{name: "bad_signature_two_sigs", reason: ReasonBadSignature, comment: "signed by dmz and by a second key",
			signers: func(g *vectorGen) []note.Signer { return []note.Signer{g.dmz.signer, g.other.signer} }},
		{name: "bad_signature_noncanonical_b64", reason: ReasonBadSignature, comment: "the signature's base64 has non-zero padding bits",
			post: func(g *vectorGen, d []byte) []byte {
				return editSig(g.t, d, func(s string) string {
					// 68 bytes end in "X=": X carries 4 bits of data and 2
					// zero padding bits; set the lowest one.
					const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
					last := strings.IndexByte(alphabet, s[len(s)-2])
					return s[:len(s)-2] + string(alphabet[last|1]) + "="
				})
			}},

		{name: "unknown_sender_other_key", reason: ReasonUnknownSender, comment: "signed by another key that is also named dmz",
			signers: func(g *vectorGen) []note.Signer { return []note.Signer{g.dmz2.signer} }},
		{name: "unknown_sender_other_zone", reason: ReasonUnknownSender, comment: "from zone other, signed by other's key",
			header:  func(g *vectorGen, h *Header) { h.From, h.FromKey = g.other.name, keys.KeyID(g.other.signer.KeyHash()) },
			signers: func(g *vectorGen) []note.Signer { return []note.Signer{g.other.signer} }},
		{name: "unknown_sender_header_from", reason: ReasonUnknownSender, comment: "signed by dmz, but the header says from other",
			header: func(_ *vectorGen, h *Header) { h.From = "other" }},
		{name: "unknown_sender_header_key", reason: ReasonUnknownSender, comment: "signed by dmz, but the header names key id 00000000",
			header: func(_ *vectorGen, h *Header) { h.FromKey = "00000000" }},
		{name: "unknown_sender_ring_other_key", ring: true, reason: ReasonUnknownSender,
			comment: "opened with the ring: signed by another key named dmz, which the ring does not hold",
			header:  func(g *vectorGen, h *Header) { h.FromKey = keys.KeyID(g.dmz2.signer.KeyHash()) },
			signers: func(g *vectorGen) []note.Signer { return []note.Signer{g.dmz2.signer} }},

		{name: "wrong_recipient_zone", reason: ReasonWrongRecipient, comment: "addressed to zone other (with intranet's age key)",
			header: func(_ *vectorGen, h *Header) { h.To = "other" }},
		{name: "wrong_recipient_age_key", reason: ReasonWrongRecipient, comment: "addressed to intranet, but to and encrypted to another age key",
			header:     func(g *vectorGen, h *Header) { h.ToKey = keys.Fingerprint(g.other.recipient()) },
			recipients: func(g *vectorGen) []age.Recipient { return []age.Recipient{g.other.recipient()} }},

		{name: "expired", reason: ReasonExpired, comment: "expired an hour before now",
			header: func(_ *vectorGen, h *Header) {
				h.Created, h.Expires = vectorNow.Add(-2*time.Hour), vectorNow.Add(-time.Hour)
			}},
		{name: "not_yet_valid", reason: ReasonNotYetValid, comment: "created 5m01s after now, beyond the 5m skew",
			header: func(_ *vectorGen, h *Header) {
				h.Created, h.Expires = vectorNow.Add(DefaultMaxSkew+time.Second), vectorNow.Add(2*time.Hour)
			}},

		{name: "payload_mismatch_flipped_byte", reason: ReasonPayloadMismatch, comment: "the last ciphertext byte flipped",
			post: func(g *vectorGen, d []byte) []byte { d[len(d)-1] ^= 0x01; return d }},
		{name: "payload_mismatch_truncated", reason: ReasonPayloadMismatch, comment: "the last 16 bytes of the payload removed",
			post: func(g *vectorGen, d []byte) []byte { return d[:len(d)-16] }},
		{name: "payload_mismatch_appended", reason: ReasonPayloadMismatch, comment: "one byte appended after the payload",
			post: func(g *vectorGen, d []byte) []byte { return append(d, 0) }},

		{name: "decrypt_failed_three_stanzas", reason: ReasonDecryptFailed, body: goodBody, comment: "three X25519 stanzas, one of them intranet's",
			recipients: func(g *vectorGen) []age.Recipient {
				return []age.Recipient{g.intranet.recipient(), g.other.recipient(), g.dmz.recipient()}
			}},
		{name: "decrypt_failed_other_stanza", reason: ReasonDecryptFailed, body: goodBody, comment: "intranet's X25519 stanza and a ferry-test stanza",
			recipients: func(g *vectorGen) []age.Recipient { return []age.Recipient{g.intranet.recipient(), otherStanza{}} }},
		{name: "decrypt_failed_corrupted", reason: ReasonDecryptFailed, body: goodBody, comment: "last ciphertext byte flipped, then the header re-signed with the new hash",
			post: func(g *vectorGen, d []byte) []byte {
				_, p := splitFile(g.t, d)
				p = bytes.Clone(p)
				p[len(p)-1] ^= 0x01
				return resign(g.t, d, p, g.dmz.signer)
			}},
		{name: "decrypt_failed_not_age", reason: ReasonDecryptFailed, comment: "the payload is not an age file, header re-signed with its hash",
			post: func(g *vectorGen, d []byte) []byte { return resign(g.t, d, []byte("not an age file\n"), g.dmz.signer) }},

		{name: "manifest_mismatch_seq", reason: ReasonManifestMismatch, body: goodBody, comment: "validly signed and encrypted, but the manifest says seq 2",
			manifest: func(h Header) []byte { h.Seq = 2; return encodeManifest(&h) }},
		{name: "manifest_mismatch_missing", reason: ReasonManifestMismatch, body: goodBody, comment: "validly signed and encrypted, but the plaintext has no manifest",
			manifest: func(Header) []byte { return nil }},

		{name: "revoked_key", ring: true, key: "dmz-revoked", reason: ReasonRevokedKey, body: goodBody,
			comment: "opened with the ring: signed by dmz-revoked, which the ring records as revoked at 2026-02-15T00:00:00Z; otherwise good"},

		{name: "key_not_valid_after_until", ring: true, key: "dmz-old", reason: ReasonKeyNotValid, body: goodBody,
			comment: "opened with the ring: signed by dmz-old, created 11:59, after its until 06:00; otherwise good"},
		{name: "key_not_valid_before_from", ring: true, reason: ReasonKeyNotValid, body: goodBody,
			comment: "opened with the ring: signed by dmz, created 2026-02-28T23:59:00Z, before its from 2026-03-01T00:00:00Z; otherwise good",
			header:  func(_ *vectorGen, h *Header) { h.Created = ringRotated.Add(-time.Minute) }},
	}
}

// generateVectors writes the vectors, the ring's peer key files and
// vectors.json, generating the committed keys first if they are missing.
// From then on it draws its randomness from vectorSeed.
func generateVectors(t *testing.T) {
	t.Helper()
	for _, d := range vectorKeyDirs {
		dir := filepath.Join(vectorDir, d.dir)
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			z, err := keys.Generate(d.zone)
			if err != nil {
				t.Fatal(err)
			}
			if err := z.WriteDir(dir); err != nil {
				t.Fatal(err)
			}
		}
	}
	cryptotest.SetGlobalRandom(t, vectorSeed)
	old, err := filepath.Glob(filepath.Join(vectorDir, "*"+FileExt))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	committed := map[string]*testZone{}
	for _, d := range vectorKeyDirs {
		committed[d.dir] = vectorKey(t, d.dir)
	}
	dmz, intranet := committed["dmz"], committed["intranet"]
	writeRing(t, committed["dmz-old"], dmz, committed["dmz-revoked"])
	g := &vectorGen{t: t, dmz: dmz, intranet: intranet, committed: committed,
		dmz2: newTestZone(t, "dmz"), other: newTestZone(t, "other"), hashes: map[string][32]byte{}}
	vf := vectorFile{
		Comment: "ferry envelope v1 test vectors, made by go test ./internal/envelope -run TestVectors -update. " +
			"Open each file as zone intranet (keys in intranet/) at now: from sender dmz (keys in dmz/), or, " +
			"if ring is true, with the key ring of intranet's own key and the dmz keys that ring/ records " +
			"(peer-sign.pub, peer-age.pub and peer-keys, as in an intranet key directory). " +
			"reason is what Opener.Open must reject it with, \"\" if it opens to body; " +
			"verify_reason is what Verify gives with the sign.pub of verify_with (dmz/ if absent).",
		Sender:    dmz.name,
		Recipient: intranet.name,
		Ring:      ringDir,
	}
	for _, s := range vectorSpecs() {
		sealed, data := g.make(s)
		g.hashes[s.name] = sealed.HeaderHash
		v := vector{
			File: s.name + FileExt, Comment: s.comment, Now: vectorNow.Format(time.RFC3339), MaxSize: s.maxSize,
			Ring: s.ring, Reason: s.reason, VerifyWith: s.key, VerifyReason: verifyDefault(s.reason), InspectReason: s.inspect,
		}
		if s.verify == "-" {
			v.VerifyReason = ""
		} else if s.verify != "" {
			v.VerifyReason = s.verify
		}
		if s.reason == "" {
			v.Body = s.body
			v.HeaderSHA256 = hex.EncodeToString(sealed.HeaderHash[:])
		}
		if err := os.WriteFile(filepath.Join(vectorDir, v.File), data, 0o644); err != nil {
			t.Fatal(err)
		}
		vf.Vectors = append(vf.Vectors, v)
	}
	out, err := json.MarshalIndent(&vf, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vectorDir, vectorManifest), append(out, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d vectors to %s", len(vf.Vectors), vectorDir)
}

// writeRing writes the peer key files of the ring into vectorDir/ringDir,
// as an intranet key directory holds them after dmz rotated from old to
// cur and the intranet revoked revoked: peer-sign.pub and peer-age.pub
// with old, the key it first trusted, and a peer-keys file with the
// windows and revocation of all three.
func writeRing(t *testing.T, old, cur, revoked *testZone) {
	t.Helper()
	dir := filepath.Join(vectorDir, ringDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{keys.PeerSignPubFile, keys.PeerAgePubFile} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	if err := keys.WritePeer(dir, &keys.Peer{Name: old.name, Verifier: old.verifier, VerifierKey: old.verifierKey, Recipient: old.recipient()}); err != nil {
		t.Fatal(err)
	}
	peer := func(z *testZone) *keys.PeerKey {
		return &keys.PeerKey{Verifier: z.verifier, VerifierKey: z.verifierKey, Recipient: z.recipient()}
	}
	o, c, r := peer(old), peer(cur), peer(revoked)
	o.Until, c.From, r.Revoked = ringOldUntil, ringRotated, ringRevoked
	if err := keys.WritePeerKeys(dir, []*keys.PeerKey{o, c, r}); err != nil {
		t.Fatal(err)
	}
}

// TestVectors_docExample checks that the worked example in
// docs/envelope.md shows the current good_requests.fxe: its framing line
// and signed note verbatim, its header hash and its manifest. After
// -update, copy them into the document.
func TestVectors_docExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/envelope.md")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(vectorDir, "good_requests.fxe"))
	if err != nil {
		t.Fatal(err)
	}
	dmz, intranet := vectorKeys(t)
	o, err := vectorOpener(dmz, intranet, vectorNow, 0).Open(data)
	if err != nil {
		t.Fatal(err)
	}
	signed, payload := splitFile(t, data)
	ageHeader := payload[:bytes.Index(payload, []byte("\n--- "))+1]
	next, err := os.ReadFile(filepath.Join(vectorDir, "good_heartbeat_empty.fxe"))
	if err != nil {
		t.Fatal(err)
	}
	if h, err := Inspect(next); err != nil || h.Prev != o.HeaderHash || h.Seq != o.Header.Seq+1 {
		t.Errorf("good_heartbeat_empty.fxe does not follow good_requests.fxe: %+v, %v", h, err)
	}
	for what, want := range map[string][]byte{
		"framing line and signed note": append(frame(signed), signed...),
		"header hash":                  []byte(hex.EncodeToString(o.HeaderHash[:])),
		"manifest and body":            append(encodeManifest(&o.Header), o.Body...),
		"age stanza":                   ageHeader,
		"file name":                    []byte(FileName(&o.Header)),
		"dmz verifier key":             []byte(readKey(t, filepath.Join(vectorDir, "dmz", keys.SignPubFile))),
		"intranet age key":             []byte(intranet.recipient().String()),
		"intranet fingerprint":         []byte(keys.Fingerprint(intranet.recipient())),
	} {
		if !bytes.Contains(doc, want) {
			t.Errorf("docs/envelope.md does not show the %s of good_requests.fxe:\n%s", what, want)
		}
	}
}
