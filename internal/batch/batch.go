// Package batch is the plaintext inside envelopes: the batch of requests the
// DMZ sends and the batch of results the intranet sends back. Both agents
// share it; docs/envelope.md describes the JSON.
//
// Bodies arrive from the other zone. A request batch comes from the DMZ,
// which is assumed compromisable, so [DecodeRequests] is strict: unknown
// fields, duplicate request ids, malformed ids, malformed subjects and
// oversized values are errors, never panics.
//
// # Subject
//
// A request may carry a subject: the citizen identity (a resident ID
// number) that the calling platform authenticated and asserted. This
// package checks only its shape ([ValidSubject]); whether the client may
// assert a subject, and whether it is a valid ID number, is the intranet
// policy's decision. The subject is personal data: never log it.
//
// # Held results
//
// A result with [StatusHeld] is not final: the intranet holds a write
// request until an admin approves or denies it, or its approval expires.
// It carries no rows, rows_affected or retry_after. The request's final
// result comes later, in a result envelope that need not acknowledge any
// request envelope; a receiver must accept a final result for a request it
// holds as held, and ignore a held result for a request already final.
//
// A final result travels in an envelope that acknowledges nothing, so a
// lost one is not sent again by itself. The DMZ therefore asks about
// requests it has held for a while: a requests body's [Requests.Query]
// lists their ids (at most [MaxQuery]), and the intranet answers each one
// that it has decided with its stored final result, in the result envelope
// that acknowledges the asking envelope; one still held gets no answer.
//
// The DMZ asks the same way about the requests of an envelope that
// expired (or that an admin dropped) before their results came back: the
// intranet may have applied them and lost only the answer. For a request
// it applied it answers its stored result. A request it has never
// received it settles: it records the result [StatusExpired] with reason
// [ReasonNotReceived] in its ledger, so that the request is never applied
// even if its envelope turns up later, and answers that. Asking applies
// nothing, and the first answer to a request is the only one it ever
// gets. A query may not name a request of the same body.
//
// # Received
//
// Each body may carry a [Received] report of the other direction's
// channel: the highest sequence number the sender has received from its
// peer on that channel (Through), the highest below which nothing is
// missing (Contiguous), and the ranges between them that have not arrived
// (Missing). A results body reports the requests channel, a
// requests body the results channel. It is what lets a zone re-send an
// envelope the medium lost as soon as a later one arrives, instead of
// waiting for a timeout. [DecodeRequests] and [DecodeResults] check that
// the ranges are ordered, disjoint, between Contiguous and Through, and
// at most [MaxMissing] of them.
//
// # Catalogue
//
// A results body may also carry the intranet policy's operation catalogue
// ([Results.Catalogue], the JSON of policy.Catalogue). [DecodeResults]
// checks only that it is one JSON object of at most [MaxCatalogue] bytes;
// the DMZ parses it with policy.ParseCatalogue. A results body may carry a
// catalogue and no results or acknowledgements at all.
//
// # Audit
//
// Either body may carry an [Audit] part: each zone's audit log is
// witnessed by the other (see package audit). The sender puts in its
// newest audit checkpoint with a consistency proof, and the newest
// checkpoint of the receiver's log that it has countersigned.
// [DecodeRequests] and [DecodeResults] check only sizes; the receiver
// checks the signatures and the proof (audit.Exchange).
package batch

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Limits on decoded batches.
const (
	MaxRequests    = 4096    // requests in one batch
	MaxResults     = 4096    // results in one batch
	MaxQuery       = 4096    // held requests asked about in one batch
	MaxParamsBytes = 8 << 10 // JSON parameters of one request
	MaxOpName      = 128
	MaxClientName  = 64
	MaxSubject     = 64 // bytes of a request's subject
	// MaxRetryAfter bounds a result's retry_after, in seconds: no rate
	// limit period is longer than a day.
	MaxRetryAfter = 24 * 60 * 60
	// MaxMissing bounds the ranges of a Received report.
	MaxMissing = 64
	// MaxCatalogue caps the operation catalogue a results body carries,
	// in bytes of its JSON as sent.
	MaxCatalogue = 1 << 20
	// MaxAuditNote caps each signed checkpoint of an Audit part, in
	// bytes; one with two signatures is about 300.
	MaxAuditNote = 4096
	// MaxAuditProof caps an Audit part's consistency proof, in bytes:
	// 128 base64 hashes and the spaces between them.
	MaxAuditProof = 128 * 45
)

// Request statuses as the DMZ reports them to clients, and result statuses.
const (
	StatusQueued   = "queued"
	StatusSent     = "sent"
	StatusDone     = "done"
	StatusRejected = "rejected"
	StatusFailed   = "failed"
	StatusExpired  = "expired"
	// StatusHeld is the one result status that is not final: the intranet
	// holds a write for an admin's approval, and a later result envelope
	// carries the request's final result (done, rejected or failed).
	StatusHeld = "held"
)

// ReasonNotReceived is the reason of the expired result the intranet
// gives a request it is asked about but never received (see the package
// doc).
const ReasonNotReceived = "not_received"

// Request is one citizen request as it crosses to the intranet.
type Request struct {
	ID        string          `json:"id"` // 32 lowercase hex digits
	Client    string          `json:"client"`
	Operation string          `json:"operation"`
	Params    json.RawMessage `json:"params"`
	Received  time.Time       `json:"received"`
	// Subject is the citizen identity the client asserted, or empty for
	// none; when set it satisfies ValidSubject. Personal data: never log.
	Subject string `json:"subject,omitempty"`
}

// Requests is the body of a requests envelope. Query lists requests the
// sender holds as "held" and asks about again (see the package doc);
// an envelope may carry queries and no requests.
type Requests struct {
	Requests []Request `json:"requests"`
	Query    []string  `json:"query,omitempty"`
	// Received reports what the DMZ has received of the results channel.
	Received *Received `json:"received,omitempty"`
	// Replaces, when not 0, is the sequence number of the envelope this
	// one re-sends: it carries that envelope's requests still unanswered,
	// and the earlier one is withdrawn. The receiver takes the earlier
	// one's place in the channel as filled and refuses the earlier one
	// if it arrives later. It must be below the envelope's own sequence
	// number.
	Replaces uint64 `json:"replaces,omitempty"`
	// Audit is the DMZ's part of the cross-zone audit witnessing.
	Audit *Audit `json:"audit,omitempty"`
}

// Audit is one zone's part of the cross-zone witnessing of audit logs
// (docs/audit.md): what it asks the other zone to countersign, and what
// it countersigned of the other zone's log. Either half may be empty.
type Audit struct {
	// Checkpoint is the sender's newest audit checkpoint, a signed note
	// (C2SP tlog-checkpoint).
	Checkpoint string `json:"checkpoint,omitempty"`
	// From is the size of the sender's log that Proof starts from: the
	// largest the receiver has countersigned, as far as the sender knows.
	From int64 `json:"from,omitempty"`
	// Proof shows that Checkpoint's tree contains the tree of size From
	// as a prefix: base64 hashes separated by spaces.
	Proof string `json:"proof,omitempty"`
	// Cosigned is the newest checkpoint of the receiver's log that the
	// sender verified and countersigned, with both signatures.
	Cosigned string `json:"cosigned,omitempty"`
}

// check validates a decoded Audit part's sizes.
func (a *Audit) check() error {
	switch {
	case len(a.Checkpoint) > MaxAuditNote || len(a.Cosigned) > MaxAuditNote:
		return fmt.Errorf("audit: a checkpoint of more than %d bytes", MaxAuditNote)
	case len(a.Proof) > MaxAuditProof:
		return fmt.Errorf("audit: a proof of more than %d bytes", MaxAuditProof)
	case a.From < 0:
		return errors.New("audit: negative from")
	case a.Checkpoint == "" && (a.From != 0 || a.Proof != ""):
		return errors.New("audit: a proof without a checkpoint")
	}
	return nil
}

// Received reports how much of a channel a zone has received from its
// peer. Through is the highest sequence number received (0 for none).
// Contiguous is the highest up to which nothing is missing: every
// envelope up to it has arrived, or is so far behind Through (more than
// the receiver's bound on sequence jumps) that the receiver no longer
// waits for it. Missing lists ranges between them that have not arrived,
// each [first, last] inclusive, in increasing order, disjoint and not
// adjacent: the most recent MaxMissing of them when there are more.
type Received struct {
	Contiguous uint64      `json:"contiguous"`
	Through    uint64      `json:"through"`
	Missing    [][2]uint64 `json:"missing,omitempty"`
}

// IsMissing reports whether seq is in one of the missing ranges.
func (r *Received) IsMissing(seq uint64) bool {
	for _, m := range r.Missing {
		if seq >= m[0] && seq <= m[1] {
			return true
		}
	}
	return false
}

// check validates a decoded report.
func (r *Received) check() error {
	if r.Contiguous > r.Through {
		return errors.New("received: contiguous is above through")
	}
	if len(r.Missing) > MaxMissing {
		return fmt.Errorf("received: %d missing ranges, limit %d", len(r.Missing), MaxMissing)
	}
	if (r.Contiguous < r.Through) != (len(r.Missing) > 0) {
		return errors.New("received: missing ranges must be listed exactly when contiguous is below through")
	}
	last := r.Contiguous // the end of the previous range, or of what is contiguous
	for i, m := range r.Missing {
		if m[0] > m[1] || m[1] >= r.Through || m[0] <= last+1 && (i > 0 || m[0] <= r.Contiguous) {
			return fmt.Errorf("received: missing range %d is not ordered, disjoint, above contiguous and below through", i)
		}
		last = m[1]
	}
	if len(r.Missing) > 0 && len(r.Missing) < MaxMissing && r.Missing[0][0] != r.Contiguous+1 {
		return errors.New("received: the first missing range must start right after contiguous")
	}
	return nil
}

// Result is the outcome of one request.
type Result struct {
	RequestID    string           `json:"request_id"`
	Status       string           `json:"status"` // done, rejected, failed, expired or held
	Reason       string           `json:"reason,omitempty"`
	Message      string           `json:"message,omitempty"`
	Rows         []map[string]any `json:"rows,omitempty"`
	RowsAffected int64            `json:"rows_affected,omitempty"`
	// RetryAfter is, for a request refused with reason rate_limited, the
	// whole seconds to wait before the same request may succeed.
	RetryAfter int64 `json:"retry_after,omitempty"`
}

// Results is the body of a results envelope. Acks lists the ids of the
// request envelopes whose requests these results (and earlier ones) answer.
// Catalogue, when present, is the intranet policy's operation catalogue
// (policy.Catalogue as JSON, one object of at most MaxCatalogue bytes);
// the envelope's sequence number orders catalogues.
type Results struct {
	Acks      []string        `json:"acks"`
	Results   []Result        `json:"results"`
	Catalogue json.RawMessage `json:"catalogue,omitempty"`
	// Received reports what the intranet has received of the requests
	// channel.
	Received *Received `json:"received,omitempty"`
	// Audit is the intranet's part of the cross-zone audit witnessing.
	Audit *Audit `json:"audit,omitempty"`
}

// ValidID reports whether s is 32 lowercase hex digits.
func ValidID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ValidSubject reports whether s has the shape of a request's subject: 1
// to MaxSubject bytes of printable ASCII without spaces (0x21 to 0x7e). It
// does not check that s is a resident ID number; the intranet's policy
// does. The empty string is not a subject (it means none).
func ValidSubject(s string) bool {
	if len(s) == 0 || len(s) > MaxSubject {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// NewID returns 128 random bits as 32 hex digits.
func NewID(random io.Reader) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(random, b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after JSON value")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after JSON value")
	}
	return nil
}

// DecodeRequests parses and validates a requests body.
func DecodeRequests(data []byte) (*Requests, error) {
	var b Requests
	if err := decodeStrict(data, &b); err != nil {
		return nil, fmt.Errorf("requests batch: %w", err)
	}
	if len(b.Requests) > MaxRequests {
		return nil, fmt.Errorf("requests batch: %d requests, limit %d", len(b.Requests), MaxRequests)
	}
	if len(b.Query) > MaxQuery {
		return nil, fmt.Errorf("requests batch: %d queries, limit %d", len(b.Query), MaxQuery)
	}
	if b.Received != nil {
		if err := b.Received.check(); err != nil {
			return nil, fmt.Errorf("requests batch: %w", err)
		}
	}
	if b.Audit != nil {
		if err := b.Audit.check(); err != nil {
			return nil, fmt.Errorf("requests batch: %w", err)
		}
	}
	asked := make(map[string]bool, len(b.Query))
	for i, id := range b.Query {
		if !ValidID(id) || asked[id] {
			return nil, fmt.Errorf("requests batch: query %d: invalid or repeated request id", i)
		}
		asked[id] = true
	}
	seen := make(map[string]bool, len(b.Requests))
	for i, r := range b.Requests {
		switch {
		case !ValidID(r.ID):
			return nil, fmt.Errorf("requests batch: request %d: invalid id", i)
		case seen[r.ID]:
			return nil, fmt.Errorf("requests batch: request %d: duplicate id %s", i, r.ID)
		case asked[r.ID]:
			return nil, fmt.Errorf("requests batch: request %s is also in the query", r.ID)
		case r.Operation == "" || len(r.Operation) > MaxOpName:
			return nil, fmt.Errorf("requests batch: request %s: invalid operation name", r.ID)
		case len(r.Client) > MaxClientName:
			return nil, fmt.Errorf("requests batch: request %s: client name too long", r.ID)
		case len(r.Params) > MaxParamsBytes:
			return nil, fmt.Errorf("requests batch: request %s: parameters larger than %d bytes", r.ID, MaxParamsBytes)
		case r.Subject != "" && !ValidSubject(r.Subject):
			// The value is personal data: the error does not quote it.
			return nil, fmt.Errorf("requests batch: request %s: invalid subject", r.ID)
		}
		seen[r.ID] = true
	}
	return &b, nil
}

// DecodeResults parses and validates a results body.
func DecodeResults(data []byte) (*Results, error) {
	var b Results
	if err := decodeStrict(data, &b); err != nil {
		return nil, fmt.Errorf("results batch: %w", err)
	}
	if len(b.Results) > MaxResults || len(b.Acks) > MaxResults {
		return nil, fmt.Errorf("results batch: more than %d entries", MaxResults)
	}
	if b.Received != nil {
		if err := b.Received.check(); err != nil {
			return nil, fmt.Errorf("results batch: %w", err)
		}
	}
	if b.Audit != nil {
		if err := b.Audit.check(); err != nil {
			return nil, fmt.Errorf("results batch: %w", err)
		}
	}
	for i, a := range b.Acks {
		if !ValidID(a) {
			return nil, fmt.Errorf("results batch: ack %d: invalid envelope id", i)
		}
	}
	for i, r := range b.Results {
		if !ValidID(r.RequestID) {
			return nil, fmt.Errorf("results batch: result %d: invalid request id", i)
		}
		if r.RetryAfter < 0 || r.RetryAfter > MaxRetryAfter {
			return nil, fmt.Errorf("results batch: result %s: retry_after out of range", r.RequestID)
		}
		switch r.Status {
		case StatusDone, StatusRejected, StatusFailed:
		case StatusHeld, StatusExpired:
			if r.Rows != nil || r.RowsAffected != 0 || r.RetryAfter != 0 {
				return nil, fmt.Errorf("results batch: result %s: status %s carries no rows, rows_affected or retry_after", r.RequestID, r.Status)
			}
		default:
			return nil, fmt.Errorf("results batch: result %s: invalid status %q", r.RequestID, r.Status)
		}
	}
	if b.Catalogue != nil {
		// The decoder has checked that it is valid JSON; a JSON null is
		// kept as "null" and refused here like any other non-object.
		c := bytes.TrimSpace(b.Catalogue)
		switch {
		case len(c) > MaxCatalogue:
			return nil, fmt.Errorf("results batch: catalogue of %d bytes, limit %d", len(c), MaxCatalogue)
		case len(c) == 0 || c[0] != '{':
			return nil, errors.New("results batch: catalogue is not a JSON object")
		}
		b.Catalogue = c
	}
	return &b, nil
}

// Encode marshals a batch body.
func Encode(v any) ([]byte, error) { return json.Marshal(v) }
