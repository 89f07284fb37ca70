package keys

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"filippo.io/age"
	"golang.org/x/mod/sumdb/note"
)

// StatementType is the first line of a rotation statement.
const StatementType = "ferry.keys.rotation/v1"

// MaxStatementSize is the largest rotation statement file a reader accepts.
const MaxStatementSize = 4096

// TimeLayout is how key files write times: RFC 3339 in UTC, whole seconds.
const TimeLayout = "2006-01-02T15:04:05Z"

// Statement is a zone's rotation statement: from From on, the zone signs
// with Key and is encrypted to Recipient; its previous key, Old, stays
// valid (for envelopes created before Until, and its age identity keeps
// decrypting) until Until. It is a C2SP signed note signed by both the old
// and the new signing key, so that a peer that trusts the old key can
// trust the new one:
//
//	ferry.keys.rotation/v1
//	zone <zone>
//	key <new verifier key>
//	age <new age recipient>
//	from <RFC 3339 UTC>
//	old <old key id>
//	until <RFC 3339 UTC>
//
//	— <zone> <signature by the old key>
//	— <zone> <signature by the new key>
type Statement struct {
	Zone      string
	Key       string // new verifier key, note format
	Recipient string // new age recipient, "age1…"
	From      time.Time
	Old       string // key id of the old signing key, KeyID
	Until     time.Time

	verifier  note.Verifier
	recipient *age.X25519Recipient
}

// Verifier returns the new signing key of a parsed statement.
func (s *Statement) Verifier() note.Verifier { return s.verifier }

// AgeRecipient returns the new age recipient of a parsed statement.
func (s *Statement) AgeRecipient() *age.X25519Recipient { return s.recipient }

// KeyID returns the id of the statement's new signing key.
func (s *Statement) KeyID() string { return KeyID(s.verifier.KeyHash()) }

// StatementError is the error for a rotation statement that a reader
// refuses. Line is the 1-based line of the text it concerns, or 0 when the
// problem is not on one line (size, signatures).
type StatementError struct {
	Line int
	Err  error
}

// Error returns "line N: detail", or the detail alone.
func (e *StatementError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %v", e.Line, e.Err)
	}
	return e.Err.Error()
}

// Unwrap returns the detail.
func (e *StatementError) Unwrap() error { return e.Err }

// Sentinels a [*StatementError] may wrap, for callers that branch.
var (
	// ErrUntrusted: no signing key the reader trusts signed the statement.
	ErrUntrusted = errors.New("rotation statement not signed by a trusted key")
	// ErrBadStatementSignature: a signature does not verify, or the
	// statement is not signed by exactly the old and the new key.
	ErrBadStatementSignature = errors.New("bad rotation statement signature")
)

func stmtErr(line int, format string, args ...any) error {
	return &StatementError{Line: line, Err: fmt.Errorf(format, args...)}
}

// text returns the statement's note text.
func (s *Statement) text() string {
	return fmt.Sprintf("%s\nzone %s\nkey %s\nage %s\nfrom %s\nold %s\nuntil %s\n",
		StatementType, s.Zone, s.Key, s.Recipient, s.From.UTC().Format(TimeLayout), s.Old, s.Until.UTC().Format(TimeLayout))
}

// SignStatement signs s with the old and the new key of its zone and
// returns the signed statement. It fills s.Zone, s.Key, s.Recipient and
// s.Old from the keys; the caller fills From and Until.
func SignStatement(s *Statement, old, newKey *Zone) ([]byte, error) {
	if old == nil || newKey == nil {
		return nil, errors.New("sign rotation statement: two keys are required")
	}
	if old.Name != newKey.Name {
		return nil, fmt.Errorf("sign rotation statement: keys of zones %s and %s", old.Name, newKey.Name)
	}
	s.Zone, s.Key, s.Recipient = newKey.Name, newKey.verifierKey, newKey.Recipient.String()
	s.Old = KeyID(old.Verifier.KeyHash())
	s.From, s.Until = s.From.UTC().Truncate(time.Second), s.Until.UTC().Truncate(time.Second)
	if s.Until.Before(s.From) {
		return nil, errors.New("sign rotation statement: until is before from")
	}
	signed, err := note.Sign(&note.Note{Text: s.text()}, old.Signer, newKey.Signer)
	if err != nil {
		return nil, fmt.Errorf("sign rotation statement: %w", err)
	}
	// Parse it back: what is written must be what a peer accepts.
	parsed, err := ParseStatement(signed, []note.Verifier{old.Verifier})
	if err != nil {
		return nil, fmt.Errorf("sign rotation statement: %w", err)
	}
	*s = *parsed
	return signed, nil
}

// ParseStatement verifies and parses a rotation statement. trusted are the
// signing keys of the zone that the reader already trusts; one of them
// must be the statement's old key and have signed it, and the new key it
// names must have signed it too, with no other signature. Every refusal is
// a [*StatementError].
//
// It checks, in this order: the size; that a trusted key signed the note
// ([ErrUntrusted] otherwise); the text, line by line; that the old key is
// the trusted key that signed; that the note carries exactly two
// signatures, by the old and by the new key ([ErrBadStatementSignature]).
func ParseStatement(data []byte, trusted []note.Verifier) (*Statement, error) {
	if len(data) > MaxStatementSize {
		return nil, stmtErr(0, "%d bytes, at most %d allowed", len(data), MaxStatementSize)
	}
	if len(trusted) == 0 {
		return nil, &StatementError{Err: fmt.Errorf("%w: no trusted keys", ErrUntrusted)}
	}
	n, err := note.Open(data, note.VerifierList(trusted...))
	if err != nil {
		var unknown *note.UnknownVerifierError
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unknown), errors.As(err, &unverified):
			return nil, &StatementError{Err: fmt.Errorf("%w: no signature by %s", ErrUntrusted, keyList(trusted))}
		case errors.As(err, &invalid):
			return nil, &StatementError{Err: fmt.Errorf("%w: %v", ErrBadStatementSignature, err)}
		}
		return nil, stmtErr(0, "not a signed note: %v", err)
	}
	s, err := parseStatementText(n.Text)
	if err != nil {
		return nil, err
	}
	var old note.Verifier
	for _, sig := range n.Sigs {
		if KeyID(sig.Hash) == s.Old && sig.Name == s.Zone {
			for _, v := range trusted {
				if v.Name() == sig.Name && v.KeyHash() == sig.Hash {
					old = v
				}
			}
		}
	}
	if old == nil {
		return nil, stmtErr(6, "old key %s+%s is not the trusted key that signed (%s)", s.Zone, s.Old, keyList(trusted))
	}
	if old.KeyHash() == s.verifier.KeyHash() {
		return nil, stmtErr(3, "the new key is the old key")
	}
	// Exactly two signature lines, by the old and the new key.
	sigs := data[len(n.Text)+1:]
	if bytes.Count(sigs, []byte("\n")) != 2 {
		return nil, &StatementError{Err: fmt.Errorf("%w: want exactly two signatures, by the old and the new key", ErrBadStatementSignature)}
	}
	both, err := note.Open(data, note.VerifierList(old, s.verifier))
	if err != nil || len(both.Sigs) != 2 || len(both.UnverifiedSigs) != 0 {
		return nil, &StatementError{Err: fmt.Errorf("%w: want signatures by %s+%s and by the new key %s+%s",
			ErrBadStatementSignature, s.Zone, s.Old, s.Zone, s.KeyID())}
	}
	return s, nil
}

// keyList names verifiers for messages.
func keyList(vs []note.Verifier) string {
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = v.Name() + "+" + KeyID(v.KeyHash())
	}
	return strings.Join(names, ", ")
}

// parseStatementText parses the seven lines of a statement's text strictly.
func parseStatementText(text string) (*Statement, error) {
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if !strings.HasSuffix(text, "\n") {
		return nil, stmtErr(len(lines), "text does not end with a newline")
	}
	names := []string{"", "zone", "key", "age", "from", "old", "until"}
	if len(lines) != len(names) {
		return nil, stmtErr(min(len(lines), len(names))+1, "want %d lines, found %d", len(names), len(lines))
	}
	if lines[0] != StatementType {
		return nil, stmtErr(1, "want %q", StatementType)
	}
	vals := make([]string, len(names))
	for i := 1; i < len(names); i++ {
		v, ok := strings.CutPrefix(lines[i], names[i]+" ")
		if !ok || v == "" || strings.ContainsAny(v, " \t\r") {
			return nil, stmtErr(i+1, "want %q followed by one value", names[i])
		}
		vals[i] = v
	}
	s := &Statement{Zone: vals[1], Key: vals[2], Recipient: vals[3], Old: vals[5]}
	if !ValidZoneName(s.Zone) {
		return nil, stmtErr(2, "invalid zone name")
	}
	v, err := note.NewVerifier(s.Key)
	if err != nil {
		return nil, stmtErr(3, "invalid verifier key: %v", err)
	}
	if v.Name() != s.Zone {
		return nil, stmtErr(3, "key of zone %q, statement is for zone %q", short(v.Name()), s.Zone)
	}
	s.verifier = v
	r, err := age.ParseX25519Recipient(s.Recipient)
	if err != nil || r.String() != s.Recipient {
		return nil, stmtErr(4, "invalid age recipient")
	}
	s.recipient = r
	if s.From, err = parseTime(vals[4]); err != nil {
		return nil, stmtErr(5, "from: %v", err)
	}
	if len(s.Old) != 8 || !isLowerHex(s.Old) {
		return nil, stmtErr(6, "old key id: want 8 lowercase hex digits")
	}
	if s.Until, err = parseTime(vals[6]); err != nil {
		return nil, stmtErr(7, "until: %v", err)
	}
	if s.Until.Before(s.From) {
		return nil, stmtErr(7, "until is before from")
	}
	return s, nil
}

// parseTime parses a time in [TimeLayout], refusing any other form.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(TimeLayout, s)
	if err != nil || t.Format(TimeLayout) != s {
		return time.Time{}, fmt.Errorf("want a time like %s", TimeLayout)
	}
	return t, nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// short cuts untrusted text for messages.
func short(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
