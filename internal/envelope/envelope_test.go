package envelope

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"golang.org/x/mod/sumdb/note"

	"github.com/ferrybridge/ferry/internal/keys"
)

// testPair is a sender and a recipient zone with fresh keys.
type testPair struct {
	dmz, intranet *testZone
	now           time.Time
}

func newTestPair(t testing.TB) *testPair {
	t.Helper()
	return &testPair{
		dmz:      newTestZone(t, "dmz"),
		intranet: newTestZone(t, "intranet"),
		now:      time.Date(2026, 5, 4, 10, 30, 15, 123456789, time.UTC),
	}
}

// header returns a valid header for Seal from dmz to intranet.
func (p *testPair) header() Header {
	return Header{
		ID:      NewID(),
		Kind:    KindRequests,
		From:    "dmz",
		To:      "intranet",
		Channel: "requests",
		Seq:     7,
		Prev:    sha256.Sum256([]byte("previous")),
		Created: p.now,
		Expires: p.now.Add(time.Hour),
	}
}

func (p *testPair) opener() *Opener {
	return &Opener{
		Self:     "intranet",
		Identity: p.intranet.identity,
		Sender:   p.dmz.verifier,
		Now:      func() time.Time { return p.now },
	}
}

func (p *testPair) seal(t testing.TB, h Header, body []byte) *Sealed {
	t.Helper()
	s, err := Seal(h, body, p.dmz.signer, p.intranet.recipient())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// sameHeader reports whether two headers are equal, comparing times with
// Equal.
func sameHeader(a, b *Header) bool {
	ac, bc := *a, *b
	ac.Created, bc.Created, ac.Expires, bc.Expires = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return ac == bc && a.Created.Equal(b.Created) && a.Expires.Equal(b.Expires)
}

func TestSeal_Open(t *testing.T) {
	p := newTestPair(t)
	tests := []struct {
		name string
		kind Kind
		body []byte
	}{
		{"empty", KindHeartbeat, nil},
		{"small", KindRequests, []byte(`{"requests":[]}`)},
		{"one chunk exactly", KindResults, randomBytes(64 << 10)},
		{"multi-chunk", KindRequests, randomBytes(200<<10 + 17)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := p.header()
			h.Kind = tt.kind
			s := p.seal(t, h, tt.body)

			signed, payload := splitFile(t, s.Data)
			if s.HeaderHash != sha256.Sum256(signed) {
				t.Error("HeaderHash is not the SHA-256 of the signed note")
			}
			if s.Header.PayloadSize != int64(len(payload)) || s.Header.PayloadSHA256 != sha256.Sum256(payload) {
				t.Error("Sealed header does not describe the payload")
			}
			if s.Header.FromKey != keys.KeyID(p.dmz.signer.KeyHash()) || s.Header.ToKey != keys.Fingerprint(p.intranet.recipient()) {
				t.Errorf("FromKey %s, ToKey %s: not the keys'", s.Header.FromKey, s.Header.ToKey)
			}
			if want := p.now.Truncate(time.Second); !s.Header.Created.Equal(want) || s.Header.Created.Location() != time.UTC {
				t.Errorf("Created = %v, want %v in UTC", s.Header.Created, want)
			}

			got, err := p.opener().Open(s.Data)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Body, tt.body) {
				t.Errorf("Body differs: %d bytes, want %d", len(got.Body), len(tt.body))
			}
			if !sameHeader(&got.Header, &s.Header) || got.HeaderHash != s.HeaderHash {
				t.Errorf("Open header %+v, want %+v", got.Header, s.Header)
			}
			if name := FileName(&got.Header); !ValidFileName(name) || !strings.HasPrefix(name, "requests-00000000000000000007-") {
				t.Errorf("FileName = %q", name)
			}

			vh, hh, err := Verify(s.Data, p.dmz.verifier)
			if err != nil || !sameHeader(vh, &s.Header) || hh != s.HeaderHash {
				t.Errorf("Verify = %+v, %x, %v", vh, hh, err)
			}
			ih, err := Inspect(s.Data)
			if err != nil || !sameHeader(ih, &s.Header) {
				t.Errorf("Inspect = %+v, %v", ih, err)
			}
		})
	}
}

func TestSeal_invalid(t *testing.T) {
	p := newTestPair(t)
	tests := []struct {
		name string
		edit func(h *Header)
	}{
		{"bad id", func(h *Header) { h.ID = strings.ToUpper(h.ID) }},
		{"short id", func(h *Header) { h.ID = h.ID[:31] }},
		{"bad kind", func(h *Header) { h.Kind = "keyring" }},
		{"bad from", func(h *Header) { h.From = "Dmz" }},
		{"from is not the signer", func(h *Header) { h.From = "other" }},
		{"bad to", func(h *Header) { h.To = "intranet zone" }},
		{"bad channel", func(h *Header) { h.Channel = "" }},
		{"zero created", func(h *Header) { h.Created = time.Time{} }},
		{"year 10000", func(h *Header) { h.Expires = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"expires equals created", func(h *Header) { h.Expires = h.Created }},
		{"expires within the same second", func(h *Header) { h.Expires = h.Created.Add(time.Millisecond) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := p.header()
			tt.edit(&h)
			_, err := Seal(h, nil, p.dmz.signer, p.intranet.recipient())
			if !errors.Is(err, ErrInvalidHeader) || Reason(err) != "" {
				t.Errorf("Seal: %v, want ErrInvalidHeader and no reason", err)
			}
		})
	}
	if _, err := Seal(p.header(), nil, nil, p.intranet.recipient()); !errors.Is(err, ErrInvalidHeader) {
		t.Errorf("Seal without signer: %v", err)
	}
	if _, err := Seal(p.header(), nil, p.dmz.signer, nil); !errors.Is(err, ErrInvalidHeader) {
		t.Errorf("Seal without recipient: %v", err)
	}
}

func TestOpener_Open_config(t *testing.T) {
	p := newTestPair(t)
	s := p.seal(t, p.header(), nil)
	for _, o := range []*Opener{
		{Identity: p.intranet.identity, Sender: p.dmz.verifier},
		{Self: "intranet", Sender: p.dmz.verifier},
		{Self: "intranet", Identity: p.intranet.identity},
	} {
		if _, err := o.Open(s.Data); err == nil || Reason(err) != "" {
			t.Errorf("misconfigured opener: %v, want an error without a reason", err)
		}
	}
	if _, _, err := Verify(s.Data, nil); err == nil || Reason(err) != "" {
		t.Errorf("Verify without key: %v", err)
	}
}

func TestOpener_Open_freshness(t *testing.T) {
	p := newTestPair(t)
	h := p.header()
	s := p.seal(t, h, []byte("x"))
	created, expires := s.Header.Created, s.Header.Expires
	tests := []struct {
		name    string
		now     time.Time
		maxSkew time.Duration
		want    string
	}{
		{"at created", created, 0, ""},
		{"one second before expires", expires.Add(-time.Second), 0, ""},
		{"one nanosecond before expires", expires.Add(-1), 0, ""},
		{"at expires", expires, 0, ReasonExpired},
		{"after expires", expires.Add(time.Hour), 0, ReasonExpired},
		{"created exactly skew ahead", created.Add(-DefaultMaxSkew), 0, ""},
		{"created beyond skew", created.Add(-DefaultMaxSkew - time.Nanosecond), 0, ReasonNotYetValid},
		{"custom skew allows", created.Add(-time.Hour), time.Hour, ""},
		{"custom skew refuses", created.Add(-time.Minute - time.Second), time.Minute, ReasonNotYetValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := p.opener()
			o.Now = func() time.Time { return tt.now }
			o.MaxSkew = tt.maxSkew
			_, err := o.Open(s.Data)
			if Reason(err) != tt.want || (err != nil) != (tt.want != "") {
				t.Errorf("Open at %v: %v, want reason %q", tt.now, err, tt.want)
			}
		})
	}
}

func TestOpener_Open_maxSize(t *testing.T) {
	p := newTestPair(t)
	s := p.seal(t, p.header(), randomBytes(4096))
	n := int64(len(s.Data))
	for _, tt := range []struct {
		max  int64
		want string
	}{{n, ""}, {n - 1, ReasonTooLarge}, {0, ""}} {
		o := p.opener()
		o.MaxSize = tt.max
		var events []string
		o.hook = func(e string) { events = append(events, e) }
		_, err := o.Open(s.Data)
		if Reason(err) != tt.want {
			t.Errorf("MaxSize %d for %d bytes: %v, want %q", tt.max, n, err, tt.want)
		}
		if tt.want != "" && len(events) != 0 {
			t.Errorf("MaxSize %d: hook saw %q", tt.max, events)
		}
	}
	big := make([]byte, DefaultMaxSize+1)
	if _, _, err := Verify(big, p.dmz.verifier); Reason(err) != ReasonTooLarge {
		t.Errorf("Verify of %d bytes: %v", len(big), err)
	}
	if _, err := Inspect(big); Reason(err) != ReasonTooLarge {
		t.Errorf("Inspect of %d bytes: %v", len(big), err)
	}
	if _, err := p.opener().Open(big); Reason(err) != ReasonTooLarge {
		t.Errorf("Open of %d bytes: %v", len(big), err)
	}
}

// TestOpener_Open_signatureBeforeDecrypt shows that a payload that would
// cost age work (64 X25519 stanzas, each an X25519 operation if unwrapped
// naively) is never handed to age unless the signature holds, and that even
// then the stanza limit refuses it before unwrapping.
func TestOpener_Open_signatureBeforeDecrypt(t *testing.T) {
	p := newTestPair(t)
	recipients := []age.Recipient{p.intranet.recipient()}
	for range 63 {
		recipients = append(recipients, newTestZone(t, "escrow").recipient())
	}
	h := p.header()
	h.FromKey = keys.KeyID(p.dmz.signer.KeyHash())
	h.ToKey = keys.Fingerprint(p.intranet.recipient())
	s, err := build(&h, encodeManifest(&h), []byte("body"), recipients, []note.Signer{p.dmz.signer}, nil)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(s.Data)
	flipped[bytes.Index(flipped, []byte("\nseq 7\n"))+5] = '8'

	tests := []struct {
		name   string
		data   []byte
		want   string
		events string
	}{
		{"bad signature", flipped, ReasonBadSignature, ""},
		{"signed by another key", resign(t, s.Data, s.Data[len(s.Data)-int(s.Header.PayloadSize):], newTestZone(t, "dmz").signer), ReasonUnknownSender, ""},
		{"valid signature", s.Data, ReasonDecryptFailed, "decrypt unwrap"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var events []string
			o := p.opener()
			o.hook = func(e string) { events = append(events, e) }
			_, err := o.Open(tt.data)
			if Reason(err) != tt.want {
				t.Errorf("Open: %v, want %s", err, tt.want)
			}
			if got := strings.Join(events, " "); got != tt.events {
				t.Errorf("hook events %q, want %q", got, tt.events)
			}
			if tt.want == ReasonDecryptFailed && !errors.Is(err, errStanzas) {
				t.Errorf("Open: %v, want the stanza limit", err)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	p := newTestPair(t)
	s := p.seal(t, p.header(), []byte("body"))
	other := newTestZone(t, "dmz")
	expired := p.header()
	expired.Created, expired.Expires = p.now.Add(-48*time.Hour), p.now.Add(-24*time.Hour)
	old := p.seal(t, expired, []byte("old"))

	tests := []struct {
		name   string
		data   []byte
		sender note.Verifier
		want   string
	}{
		{"good", s.Data, p.dmz.verifier, ""},
		{"expired still verifies", old.Data, p.dmz.verifier, ""},
		{"other key", s.Data, other.verifier, ReasonUnknownSender},
		{"other zone", s.Data, p.intranet.verifier, ReasonUnknownSender},
		{"payload flipped", append(bytes.Clone(s.Data[:len(s.Data)-1]), s.Data[len(s.Data)-1]^1), p.dmz.verifier, ReasonPayloadMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, hh, err := Verify(tt.data, tt.sender)
			if Reason(err) != tt.want || (err != nil) != (tt.want != "") {
				t.Fatalf("Verify: %v, want %q", err, tt.want)
			}
			if err != nil {
				if h != nil || hh != [32]byte{} {
					t.Error("Verify returned a header with an error")
				}
				return
			}
			signed, _ := splitFile(t, tt.data)
			if hh != sha256.Sum256(signed) || h.From != "dmz" {
				t.Errorf("Verify = %+v, %x", h, hh)
			}
		})
	}
}

func TestInspect(t *testing.T) {
	p := newTestPair(t)
	s := p.seal(t, p.header(), []byte("body"))
	h, err := Inspect(s.Data)
	if err != nil || !sameHeader(h, &s.Header) {
		t.Fatalf("Inspect = %+v, %v", h, err)
	}
	// Inspect verifies nothing: a header signed by anyone, with any
	// payload, is returned as the file claims it.
	other := newTestZone(t, "dmz")
	forged := resign(t, s.Data, []byte("garbage"), other.signer)
	if h, err := Inspect(forged); err != nil || h.PayloadSize != 7 || h.ID != s.Header.ID {
		t.Errorf("Inspect(forged) = %+v, %v", h, err)
	}
	for _, data := range []string{"", "ferry-envelope/v1 3\nabc", "ferry-envelope/v3 10\n", "hello\n"} {
		if _, err := Inspect([]byte(data)); Reason(err) == "" {
			t.Errorf("Inspect(%q) = %v, want a reason", data, err)
		}
	}
}

func TestReason(t *testing.T) {
	if len(Reasons()) != len(sentinels) {
		t.Fatalf("Reasons() has %d codes, sentinels %d", len(Reasons()), len(sentinels))
	}
	for _, r := range Reasons() {
		pe := &ParseError{Reason: r, Err: errors.New("detail")}
		wrapped := fmt.Errorf("open envelope x: %w", pe)
		if Reason(wrapped) != r {
			t.Errorf("Reason(wrapped %s) = %q", r, Reason(wrapped))
		}
		for _, r2 := range Reasons() {
			if got := errors.Is(wrapped, sentinels[r2]); got != (r == r2) {
				t.Errorf("errors.Is(%s, sentinel of %s) = %v", r, r2, got)
			}
		}
		if want := sentinels[r].Error() + ": detail"; pe.Error() != want {
			t.Errorf("Error() = %q, want %q", pe.Error(), want)
		}
		if !errors.Is(pe, pe.Err) {
			t.Errorf("%s does not unwrap to its detail", r)
		}
	}
	for _, err := range []error{nil, errors.New("x"), ErrInvalidHeader, ErrBadSignature} {
		if Reason(err) != "" {
			t.Errorf("Reason(%v) = %q, want \"\"", err, Reason(err))
		}
	}
	if got := (&ParseError{Reason: "nope", Err: errors.New("d")}).Error(); got != "invalid envelope: d" {
		t.Errorf("unknown reason message %q", got)
	}
}

// TestReasons_docOrder checks that Reasons lists the codes in the order
// of the table of rules in docs/envelope.md, key reasons included.
func TestReasons_docOrder(t *testing.T) {
	doc, err := os.ReadFile("../../docs/envelope.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(doc), "\n## What a reader MUST reject\n")
	if !ok {
		t.Fatal("docs/envelope.md has no section \"What a reader MUST reject\"")
	}
	table, _, _ = strings.Cut(table, "\n## ")
	var listed []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(table, -1) {
		listed = append(listed, m[1])
	}
	if !slices.Equal(listed, Reasons()) {
		t.Errorf("docs/envelope.md lists %q, Reasons() is %q", listed, Reasons())
	}
}

func TestValidID(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := NewID()
		if !ValidID(id) || seen[id] {
			t.Fatalf("NewID() = %q: invalid or repeated", id)
		}
		seen[id] = true
	}
	for _, id := range []string{"", "0123456789abcdef0123456789abcdeF", "0123456789abcdef0123456789abcde", "0123456789abcdef0123456789abcdefa", "0123456789abcdef0123456789abcdeg"} {
		if ValidID(id) {
			t.Errorf("ValidID(%q) = true", id)
		}
	}
}

func TestFileName(t *testing.T) {
	h := &Header{Channel: "results", Seq: 42, ID: "0123456789abcdef0123456789abcdef"}
	if got, want := FileName(h), "results-00000000000000000042-0123456789abcdef0123456789abcdef.fxe"; got != want {
		t.Errorf("FileName = %q, want %q", got, want)
	}
	h.Channel, h.Seq = strings.Repeat("c", 32), ^uint64(0)
	if !ValidFileName(FileName(h)) {
		t.Errorf("longest FileName %q is not valid", FileName(h))
	}
	for _, name := range []string{"", ".fxe", "a.age", "../x.fxe", "A.fxe", "x/y.fxe", ".tmp-x.fxe"} {
		if ValidFileName(name) {
			t.Errorf("ValidFileName(%q) = true", name)
		}
	}
	for name, want := range map[string]bool{"requests": true, "r-1": true, "1r": false, "": false, "R": false} {
		if ValidChannelName(name) != want {
			t.Errorf("ValidChannelName(%q) != %v", name, want)
		}
	}
}

var benchSizes = []struct {
	name string
	n    int
}{{"1KiB", 1 << 10}, {"64KiB", 64 << 10}, {"1MiB", 1 << 20}}

func BenchmarkSeal(b *testing.B) {
	p := newTestPair(b)
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			body := randomBytes(sz.n)
			h := p.header()
			b.SetBytes(int64(sz.n))
			for b.Loop() {
				if _, err := Seal(h, body, p.dmz.signer, p.intranet.recipient()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	p := newTestPair(b)
	o := p.opener()
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			s := p.seal(b, p.header(), randomBytes(sz.n))
			b.SetBytes(int64(sz.n))
			for b.Loop() {
				if _, err := o.Open(s.Data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
