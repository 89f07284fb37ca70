package carry

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/ferrybridge/ferry/internal/envelope"
	"github.com/ferrybridge/ferry/internal/keys"
)

// typeLine is the first line of a carry manifest of format v1.
const typeLine = "ferry.carry/v1"

// timeLayout is RFC 3339 in UTC with whole seconds, as in envelopes.
const timeLayout = "2006-01-02T15:04:05Z"

// sigPrefix starts a signature line of a signed note.
const sigPrefix = "\u2014 "

// Manifest is the content of a carry manifest: what a carry set holds, in
// order.
type Manifest struct {
	ID      string    // 32 lowercase hex digits: 128 random bits
	From    string    // sender zone; the signing key's name
	FromKey string    // sender signing key id, keys.KeyID
	To      string    // recipient zone
	Created time.Time // UTC, whole seconds
	Files   []File    // in (channel, sequence) order, at least one
	Bytes   int64     // the sum of the files' sizes
}

// Reason codes of a [*ParseError]. They are stable; docs/carry.md lists
// which rule each one stands for.
const (
	ReasonTooLarge       = "too_large"
	ReasonMalformed      = "malformed"
	ReasonBadVersion     = "bad_version"
	ReasonBadSignature   = "bad_signature"
	ReasonUnknownSender  = "unknown_sender"
	ReasonWrongRecipient = "wrong_recipient"
)

// Sentinel errors, one per reason code; a [*ParseError] matches the
// sentinel of its reason with [errors.Is].
var (
	ErrTooLarge       = errors.New("carry manifest too large")
	ErrMalformed      = errors.New("malformed carry manifest")
	ErrBadVersion     = errors.New("unsupported carry manifest version")
	ErrBadSignature   = errors.New("bad carry manifest signature")
	ErrUnknownSender  = errors.New("carry manifest from an unexpected sender")
	ErrWrongRecipient = errors.New("carry manifest addressed to another zone")
)

var sentinels = map[string]error{
	ReasonTooLarge:       ErrTooLarge,
	ReasonMalformed:      ErrMalformed,
	ReasonBadVersion:     ErrBadVersion,
	ReasonBadSignature:   ErrBadSignature,
	ReasonUnknownSender:  ErrUnknownSender,
	ReasonWrongRecipient: ErrWrongRecipient,
}

// ParseError is the error for every manifest a reader rejects. Reason is
// one of the Reason… codes; Err says what exactly was wrong.
type ParseError struct {
	Reason string
	Err    error
}

// Error returns the sentinel's message followed by the detail.
func (e *ParseError) Error() string {
	if s, ok := sentinels[e.Reason]; ok {
		return s.Error() + ": " + e.Err.Error()
	}
	return "invalid carry manifest: " + e.Err.Error()
}

// Unwrap returns the detail error.
func (e *ParseError) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel of e's reason.
func (e *ParseError) Is(target error) bool {
	s, ok := sentinels[e.Reason]
	return ok && s == target
}

func reject(reason, format string, args ...any) error {
	return &ParseError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// NewID returns a fresh random carry set id: 128 bits from crypto/rand as
// 32 lowercase hex digits.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// envName is an envelope file name split into its ordering parts.
type envName struct {
	channel string
	seq     uint64
	id      string
}

// parseEnvName splits an envelope file name "<channel>-<seq, 20
// digits>-<id>.fxe". It accepts only names that [envelope.ValidFileName]
// accepts, with a valid channel, a sequence number that fits in 64 bits
// and a valid envelope id.
func parseEnvName(name string) (envName, bool) {
	if !envelope.ValidFileName(name) {
		return envName{}, false
	}
	base, ok := strings.CutSuffix(name, envelope.FileExt)
	// base = channel "-" 20 digits "-" 32 hex; the channel may contain '-'.
	if !ok || len(base) < 1+1+20+1+32 {
		return envName{}, false
	}
	id := base[len(base)-32:]
	seq := base[len(base)-32-1-20 : len(base)-32-1]
	channel := base[:len(base)-32-1-20-1]
	if base[len(base)-32-1] != '-' || base[len(base)-32-1-20-1] != '-' ||
		!envelope.ValidID(id) || !envelope.ValidChannelName(channel) {
		return envName{}, false
	}
	for i := 0; i < len(seq); i++ {
		if seq[i] < '0' || seq[i] > '9' {
			return envName{}, false
		}
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil {
		return envName{}, false
	}
	return envName{channel: channel, seq: n, id: id}, true
}

// compareEnvNames orders envelope names by channel, then sequence, then id.
func compareEnvNames(a, b envName) int {
	return cmp.Or(strings.Compare(a.channel, b.channel), cmp.Compare(a.seq, b.seq), strings.Compare(a.id, b.id))
}

// text returns the manifest's text, the part the signature covers. It
// checks that m is valid, as [ParseManifest] would.
func (m *Manifest) text() ([]byte, error) {
	var b bytes.Buffer
	m.writeHeader(&b)
	for _, f := range m.Files {
		writeFileLine(&b, f)
	}
	if _, err := parseText(b.Bytes()); err != nil {
		return nil, fmt.Errorf("invalid manifest: %w", err)
	}
	return b.Bytes(), nil
}

func (m *Manifest) writeHeader(b *bytes.Buffer) {
	fmt.Fprintf(b, "%s\nid %s\nfrom %s %s\nto %s\ncreated %s\nfiles %d\nbytes %d\n",
		typeLine, m.ID, m.From, m.FromKey, m.To, m.Created.UTC().Format(timeLayout), len(m.Files), m.Bytes)
}

func writeFileLine(b *bytes.Buffer, f File) {
	fmt.Fprintf(b, "file %s sha256:%x %d\n", f.Name, f.SHA256, f.Size)
}

// fileLineLen is the length of f's line in a manifest.
func fileLineLen(f File) int {
	return len("file  sha256: \n") + len(f.Name) + 64 + len(strconv.FormatInt(f.Size, 10))
}

// signedLen returns the length of the signed manifest of m with files
// files of total size total (m.Files and m.Bytes are ignored), plus extra
// bytes of file lines, for a signature by a key named m.From.
func (m *Manifest) signedLen(files int, total int64, fileLines int) int {
	var b bytes.Buffer
	h := *m
	h.Files = make([]File, files)
	h.Bytes = total
	h.writeHeader(&b)
	sig := len(sigPrefix) + len(m.From) + 1 + base64.StdEncoding.EncodedLen(4+64) + 1
	return b.Len() + fileLines + 1 + sig
}

// Sign returns the signed manifest: its text as a signed note signed by
// signer, whose name must be m.From.
func (m *Manifest) Sign(signer note.Signer) ([]byte, error) {
	if signer.Name() != m.From || keys.KeyID(signer.KeyHash()) != m.FromKey {
		return nil, fmt.Errorf("sign manifest: key %s+%s is not the manifest's sender %s+%s",
			signer.Name(), keys.KeyID(signer.KeyHash()), m.From, m.FromKey)
	}
	text, err := m.text()
	if err != nil {
		return nil, err
	}
	signed, err := note.Sign(&note.Note{Text: string(text)}, signer)
	if err != nil {
		return nil, fmt.Errorf("sign manifest: %w", err)
	}
	return signed, nil
}

// ParseManifest verifies and parses a signed carry manifest. It checks, in
// this order: the size, the signature (exactly one, by sender, canonical),
// the text, that the text names the signing key, and that the manifest is
// addressed to zone. Every failure is a [*ParseError].
func ParseManifest(data []byte, sender note.Verifier, zone string) (*Manifest, error) {
	if len(data) > MaxManifestSize {
		return nil, reject(ReasonTooLarge, "%d bytes, at most %d allowed", len(data), MaxManifestSize)
	}
	text, err := openNote(data, sender)
	if err != nil {
		return nil, err
	}
	m, err := parseText(text)
	if err != nil {
		return nil, err
	}
	if m.From != sender.Name() || m.FromKey != keys.KeyID(sender.KeyHash()) {
		return nil, reject(ReasonUnknownSender, "from %s %s, but signed by %s+%s", m.From, m.FromKey, sender.Name(), keys.KeyID(sender.KeyHash()))
	}
	if m.To != zone {
		return nil, reject(ReasonWrongRecipient, "addressed to zone %q, this is zone %q", m.To, zone)
	}
	return m, nil
}

// openNote verifies that signed is a signed note with exactly one
// signature line, canonically encoded, by sender (envelope.OpenNote, the
// check envelopes get), and that its text is printable ASCII lines, and
// returns the text. The reasons are the envelope's, which carry shares.
func openNote(signed []byte, sender note.Verifier) ([]byte, error) {
	text, err := envelope.OpenNote(signed, sender)
	if err != nil {
		var pe *envelope.ParseError
		if errors.As(err, &pe) {
			return nil, &ParseError{Reason: pe.Reason, Err: pe.Err}
		}
		return nil, err
	}
	for _, c := range text {
		if c != '\n' && (c < 0x20 || c > 0x7e) {
			return nil, reject(ReasonMalformed, "text is not printable ASCII")
		}
	}
	return text, nil
}

// short truncates an untrusted string for an error message.
func short(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// parseText parses a manifest's text strictly; see docs/carry.md.
func parseText(text []byte) (*Manifest, error) {
	if len(text) == 0 || text[len(text)-1] != '\n' {
		return nil, reject(ReasonMalformed, "text does not end in a newline")
	}
	lines := strings.Split(string(text[:len(text)-1]), "\n")
	if lines[0] != typeLine {
		if strings.HasPrefix(lines[0], "ferry.carry/") {
			return nil, reject(ReasonBadVersion, "type line %q", short(lines[0]))
		}
		return nil, reject(ReasonMalformed, "type line %q, want %q", short(lines[0]), typeLine)
	}
	const headerLines = 7
	if len(lines) < headerLines {
		return nil, reject(ReasonMalformed, "header ends after %d lines", len(lines))
	}
	m := &Manifest{}
	field := func(i int, key string) (string, error) {
		v, ok := strings.CutPrefix(lines[i], key+" ")
		if !ok {
			return "", reject(ReasonMalformed, "line %d: want %q", i+1, key)
		}
		return v, nil
	}
	var err error
	if m.ID, err = field(1, "id"); err != nil {
		return nil, err
	}
	if !envelope.ValidID(m.ID) {
		return nil, reject(ReasonMalformed, "line 2: invalid id")
	}
	from, err := field(2, "from")
	if err != nil {
		return nil, err
	}
	var ok bool
	m.From, m.FromKey, ok = strings.Cut(from, " ")
	if !ok || !keys.ValidZoneName(m.From) || !isLowerHex(m.FromKey, 8) {
		return nil, reject(ReasonMalformed, "line 3: invalid from")
	}
	if m.To, err = field(3, "to"); err != nil {
		return nil, err
	}
	if !keys.ValidZoneName(m.To) {
		return nil, reject(ReasonMalformed, "line 4: invalid zone")
	}
	created, err := field(4, "created")
	if err != nil {
		return nil, err
	}
	if m.Created, err = parseTime(created); err != nil {
		return nil, reject(ReasonMalformed, "line 5: %v", err)
	}
	files, err := field(5, "files")
	if err != nil {
		return nil, err
	}
	n, err := parseDecimal(files, MaxFiles)
	if err != nil || n < 1 {
		return nil, reject(ReasonMalformed, "line 6: file count must be 1 to %d", MaxFiles)
	}
	total, err := field(6, "bytes")
	if err != nil {
		return nil, err
	}
	if m.Bytes, err = parseDecimal(total, MaxFiles*MaxFileSize); err != nil {
		return nil, reject(ReasonMalformed, "line 7: %v", err)
	}
	if len(lines) != headerLines+int(n) {
		return nil, reject(ReasonMalformed, "%d file lines, header says %d", len(lines)-headerLines, n)
	}
	m.Files = make([]File, 0, n)
	var sum int64
	var prev envName
	for i := headerLines; i < len(lines); i++ {
		f, en, err := parseFileLine(lines[i])
		if err != nil {
			return nil, reject(ReasonMalformed, "line %d: %v", i+1, err)
		}
		if i > headerLines && compareEnvNames(prev, en) >= 0 {
			return nil, reject(ReasonMalformed, "line %d: file out of order or repeated", i+1)
		}
		prev = en
		sum += f.Size
		m.Files = append(m.Files, f)
	}
	if sum != m.Bytes {
		return nil, reject(ReasonMalformed, "files add up to %d bytes, header says %d", sum, m.Bytes)
	}
	return m, nil
}

func parseFileLine(line string) (File, envName, error) {
	rest, ok := strings.CutPrefix(line, "file ")
	if !ok {
		return File{}, envName{}, errors.New(`want "file"`)
	}
	parts := strings.Split(rest, " ")
	if len(parts) != 3 {
		return File{}, envName{}, errors.New("want name, hash and size")
	}
	en, ok := parseEnvName(parts[0])
	if !ok {
		return File{}, envName{}, errors.New("invalid envelope file name")
	}
	h, ok := strings.CutPrefix(parts[1], "sha256:")
	if !ok || !isLowerHex(h, 64) {
		return File{}, envName{}, errors.New("invalid hash")
	}
	size, err := parseDecimal(parts[2], MaxFileSize)
	if err != nil {
		return File{}, envName{}, err
	}
	f := File{Name: parts[0], Size: size}
	_, _ = hex.Decode(f.SHA256[:], []byte(h))
	return f, en, nil
}

// parseDecimal parses a canonical decimal (no sign, no leading zero) of at
// most max.
func parseDecimal(s string, max int64) (int64, error) {
	if s == "" || len(s) > 20 || (s[0] == '0' && len(s) > 1) {
		return 0, fmt.Errorf("invalid number %q", short(s))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("invalid number %q", short(s))
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > max {
		return 0, fmt.Errorf("number %s out of range (at most %d)", short(s), max)
	}
	return n, nil
}

// parseTime parses a canonical time: RFC 3339, UTC, whole seconds, years
// 1970 to 9999.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(timeLayout, s)
	if err != nil || t.Format(timeLayout) != s || t.Year() < 1970 {
		return time.Time{}, fmt.Errorf("invalid time %q", short(s))
	}
	return t, nil
}

// isLowerHex reports whether s is exactly n lowercase hex digits.
func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
