// Package audit is a zone's tamper-evident audit log: every decision and
// every crossing, appended to a Merkle tree log that an auditor verifies
// offline with the zone's audit public key alone.
//
// # The log
//
// A [Log] keeps its entries in a SQLite database (audit.db). Each entry
// is an [Entry] encoded as canonical JSON; its record hash and the hashes
// of the tree's complete interior nodes are computed and stored with
// golang.org/x/mod/sumdb/tlog, the implementation behind the Go checksum
// database (RFC 6962 hashing), not by hand. [Log.Checkpoint] signs the
// current tree (its size and root hash) as a checkpoint in the C2SP
// tlog-checkpoint format, a signed note
// (golang.org/x/mod/sumdb/note), with the zone's audit key: the log then
// commits to every entry below that size, and any change to an entry, an
// interior hash, the order or the number of entries changes the root.
//
// # Verifying
//
// [Verify] reads a copy of audit.db with only the audit public key: it
// recomputes every record hash from the entry bodies (an entry whose
// body was pruned keeps its record hash), rebuilds the tree from them,
// compares every stored hash, and checks each stored checkpoint's
// signature and root against the rebuilt tree. All checkpoints being
// roots of prefixes of one rebuilt tree, they are consistent with each
// other. It reports the first entry or checkpoint that fails, by index
// or size ([Failure]).
//
// What Verify alone cannot catch is a log rebuilt from a forged history
// and signed again with the same key; a checkpoint the other zone saw
// and cosigned catches that ([Verify] with a known checkpoint, see
// [VerifyOptions]).
//
// # Witnessing
//
// Each zone witnesses the other's log. An agent's [Exchange] puts the
// zone's newest checkpoint, with a consistency proof from the largest
// size the other zone countersigned, into every envelope it seals, and
// takes the other zone's from every envelope it receives: [Log.Witness]
// checks it against the last one countersigned, countersigns it and
// keeps it, and the countersigned note goes back in the next envelope. A
// rewritten log is refused with [ErrInconsistent] and recorded as
// [EventInconsistent]; the kept copies are what `ferryctl audit verify
// --witness` checks a log against.
//
// # Proofs
//
// [Log.Prove] writes an inclusion proof for one entry in the C2SP
// tlog-proof format, with the entry itself as the proof's extra data;
// [VerifyProof] checks it offline against the audit public key.
//
// # Personal data
//
// Entries never hold personal data. Subjects (ID numbers) and request
// parameters appear only as keyed hashes ([Hasher]: HMAC-SHA-256 with the
// zone's audit HMAC key), so an auditor given that key can search by ID
// number and anyone else learns nothing.
package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Entry is one audit record. Fields that do not apply are left empty.
// Nothing in an Entry may be personal data: subjects and parameters go
// through a [Hasher].
type Entry struct {
	Time      time.Time `json:"time"`                // when it happened, UTC, to the millisecond
	Zone      string    `json:"zone"`                // the zone whose log this is
	Event     string    `json:"event"`               // what happened: one of the Event* constants
	Actor     string    `json:"actor,omitempty"`     // who: an API client, an admin key id, or the agent itself
	Request   string    `json:"request,omitempty"`   // the request id
	Envelope  string    `json:"envelope,omitempty"`  // the envelope id
	Channel   string    `json:"channel,omitempty"`   // the envelope's channel
	Seq       uint64    `json:"seq,omitempty"`       // the envelope's sequence number
	Operation string    `json:"operation,omitempty"` // the request's operation
	Decision  string    `json:"decision,omitempty"`  // allowed, refused, held, ...
	Reason    string    `json:"reason,omitempty"`    // a reason code
	Rows      int64     `json:"rows,omitempty"`      // rows returned or written
	Subject   string    `json:"subject,omitempty"`   // Hasher.Subject of the citizen the request concerns
	Params    string    `json:"params,omitempty"`    // Hasher.Params of the request's parameters
	Count     int64     `json:"count,omitempty"`     // how many (requests in a batch, files, ...)
	Detail    string    `json:"detail,omitempty"`    // free text without personal data
}

// Events. The names are stable: reports and searches select on them.
const (
	EventRequestAccepted   = "request.accepted"
	EventRequestRefused    = "request.refused"
	EventEnvelopeSealed    = "envelope.sealed"
	EventEnvelopePublished = "envelope.published"
	EventEnvelopeClaimed   = "envelope.claimed"
	EventEnvelopeVerified  = "envelope.verified"
	EventEnvelopeOpened    = "envelope.opened"
	EventEnvelopeExpired   = "envelope.expired"
	EventQuarantined       = "envelope.quarantined"
	EventPolicyDecision    = "policy.decision"
	EventApprovalExpired   = "approval.expired"
	EventResultSent        = "result.sent"
	EventResultReceived    = "result.received"
	EventAck               = "ack"
	EventGap               = "gap"
	EventAdmin             = "admin"
	// EventWitnessed: this zone checked a checkpoint of the other zone's
	// audit log (Actor, its origin; Count, its size) and countersigned it.
	EventWitnessed = "audit.witnessed"
	// EventInconsistent: a checkpoint of the other zone's audit log that
	// cannot be on the log witnessed before (a rewritten or truncated
	// history); Detail says why.
	EventInconsistent = "audit.inconsistent"
	// EventPruned: the agent dropped the bodies of entries older than the
	// retention period (Count, how many); their hashes stay.
	EventPruned = "audit.pruned"
	// EventJournal: a line of the admin journal that could not be taken
	// in, or a journal found shorter than what was taken in (replaced).
	EventJournal = "audit.journal"
)

// MaxEntrySize bounds an entry's encoding; a longer Detail is cut.
const MaxEntrySize = 4096

// Encode returns e's canonical encoding: JSON with the fields in the
// order of the struct, the time in UTC to the millisecond, no HTML
// escaping, no trailing newline. These are the bytes the log hashes.
func (e Entry) Encode() ([]byte, error) {
	e.Time = e.Time.UTC().Truncate(time.Millisecond)
	if e.Zone == "" || e.Event == "" {
		return nil, errors.New("audit: entry without zone or event")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return nil, fmt.Errorf("audit: encode entry: %w", err)
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(b) > MaxEntrySize {
		over := len(b) - MaxEntrySize
		if over >= len(e.Detail) {
			return nil, fmt.Errorf("audit: entry of %d bytes, more than %d", len(b), MaxEntrySize)
		}
		e.Detail = cutRunes(e.Detail, len(e.Detail)-over-3) + "..."
		return e.Encode()
	}
	return b, nil
}

// cutRunes returns s cut to at most n bytes at a rune boundary.
func cutRunes(s string, n int) string {
	for n > 0 && n < len(s) && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:max(n, 0)]
}

// DecodeEntry parses an entry's encoding, refusing unknown fields.
func DecodeEntry(b []byte) (Entry, error) {
	var e Entry
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Entry{}, fmt.Errorf("audit: decode entry: %w", err)
	}
	if dec.More() {
		return Entry{}, errors.New("audit: decode entry: data after the entry")
	}
	return e, nil
}

// HMACKeySize is the size of a zone's audit HMAC key.
const HMACKeySize = 32

// Hasher turns personal data into keyed hashes for entries: the same
// value always gives the same hash under one key, so an auditor who holds
// the key can search for it, and without the key the hash reveals
// nothing (an ID number has too little entropy for an unkeyed hash).
type Hasher struct{ key []byte }

// NewHasher returns a Hasher with key, which must be HMACKeySize bytes.
func NewHasher(key []byte) (*Hasher, error) {
	if len(key) != HMACKeySize {
		return nil, fmt.Errorf("audit: HMAC key of %d bytes, want %d", len(key), HMACKeySize)
	}
	return &Hasher{key: bytes.Clone(key)}, nil
}

// Subject returns the keyed hash of a subject (a citizen's ID number):
// 32 hex digits. The empty subject hashes to "".
func (h *Hasher) Subject(id string) string {
	if id == "" {
		return ""
	}
	return h.sum("subject", []byte(id))
}

// Params returns the keyed hash of a request's canonical parameters.
func (h *Hasher) Params(canonical []byte) string {
	if len(canonical) == 0 {
		return ""
	}
	return h.sum("params", canonical)
}

func (h *Hasher) sum(domain string, data []byte) string {
	m := hmac.New(sha256.New, h.key)
	m.Write([]byte("ferry audit " + domain + "\x00"))
	m.Write(data)
	return hex.EncodeToString(m.Sum(nil)[:16])
}
