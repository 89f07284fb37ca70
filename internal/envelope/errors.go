package envelope

import (
	"errors"
	"fmt"
)

// Reason codes, returned by [Reason] and carried by [ParseError]. They are
// stable: operators grep for them, quarantine records store them, and
// docs/envelope.md lists which rule each one stands for.
const (
	ReasonTooLarge         = "too_large"
	ReasonMalformed        = "malformed"
	ReasonBadVersion       = "bad_version"
	ReasonBadSignature     = "bad_signature"
	ReasonUnknownSender    = "unknown_sender"
	ReasonWrongRecipient   = "wrong_recipient"
	ReasonExpired          = "expired"
	ReasonNotYetValid      = "not_yet_valid"
	ReasonPayloadMismatch  = "payload_mismatch"
	ReasonDecryptFailed    = "decrypt_failed"
	ReasonManifestMismatch = "manifest_mismatch"
	// ReasonRevokedKey and ReasonKeyNotValid come only from an [Opener]
	// with a [keys.Ring]: a signature by a revoked peer key, and a header
	// created outside the signing key's window. [Verify] and an Opener
	// with a single sender key know no revocation or window.
	ReasonRevokedKey  = "revoked_key"
	ReasonKeyNotValid = "key_not_valid"
)

// Sentinel errors, one per reason code. A [*ParseError] matches the sentinel
// of its reason with [errors.Is].
var (
	ErrTooLarge         = errors.New("envelope too large")
	ErrMalformed        = errors.New("malformed envelope")
	ErrBadVersion       = errors.New("unsupported envelope version")
	ErrBadSignature     = errors.New("bad envelope signature")
	ErrUnknownSender    = errors.New("envelope from an unexpected sender")
	ErrWrongRecipient   = errors.New("envelope addressed to another recipient")
	ErrExpired          = errors.New("envelope expired")
	ErrNotYetValid      = errors.New("envelope created in the future")
	ErrPayloadMismatch  = errors.New("envelope payload does not match its header")
	ErrDecryptFailed    = errors.New("envelope payload does not decrypt")
	ErrManifestMismatch = errors.New("envelope manifest does not match its header")
	ErrRevokedKey       = errors.New("envelope signed by a revoked key")
	ErrKeyNotValid      = errors.New("envelope created outside its signing key's window")
)

// sentinels maps each reason code to its sentinel error.
var sentinels = map[string]error{
	ReasonTooLarge:         ErrTooLarge,
	ReasonMalformed:        ErrMalformed,
	ReasonBadVersion:       ErrBadVersion,
	ReasonBadSignature:     ErrBadSignature,
	ReasonUnknownSender:    ErrUnknownSender,
	ReasonWrongRecipient:   ErrWrongRecipient,
	ReasonExpired:          ErrExpired,
	ReasonNotYetValid:      ErrNotYetValid,
	ReasonPayloadMismatch:  ErrPayloadMismatch,
	ReasonDecryptFailed:    ErrDecryptFailed,
	ReasonManifestMismatch: ErrManifestMismatch,
	ReasonRevokedKey:       ErrRevokedKey,
	ReasonKeyNotValid:      ErrKeyNotValid,
}

// sentinel returns the sentinel error of a reason code, or nil.
func sentinel(reason string) error { return sentinels[reason] }

// Reasons returns every reason code, in the order docs/envelope.md lists
// the rules: those of the nine reading steps, then the two that only an
// [Opener] with a [keys.Ring] gives ([ReasonRevokedKey],
// [ReasonKeyNotValid]). The committed test vectors in testdata/envelope
// have at least one vector for each.
func Reasons() []string {
	return []string{
		ReasonTooLarge, ReasonMalformed, ReasonBadVersion, ReasonBadSignature,
		ReasonUnknownSender, ReasonWrongRecipient, ReasonExpired, ReasonNotYetValid,
		ReasonPayloadMismatch, ReasonDecryptFailed, ReasonManifestMismatch,
		ReasonRevokedKey, ReasonKeyNotValid,
	}
}

// ParseError is the error for every envelope that a reader rejects. Reason
// is one of the Reason… codes; Err says what exactly was wrong and may wrap
// an underlying error (from age, for instance). Messages never quote the
// plaintext.
type ParseError struct {
	Reason string
	Err    error
}

// Error returns the sentinel's message followed by the detail.
func (e *ParseError) Error() string {
	if s := sentinel(e.Reason); s != nil {
		return s.Error() + ": " + e.Err.Error()
	}
	return "invalid envelope: " + e.Err.Error()
}

// Unwrap returns the detail error.
func (e *ParseError) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel of e's reason.
func (e *ParseError) Is(target error) bool {
	s := sentinel(e.Reason)
	return s != nil && s == target
}

// Reason returns the stable reason code of an error from [Opener.Open],
// [Verify] or [Inspect], or "" if err is nil or was not caused by the
// envelope (a misconfigured [Opener], for instance).
func Reason(err error) string {
	var pe *ParseError
	if errors.As(err, &pe) {
		return pe.Reason
	}
	return ""
}

// reject returns a *ParseError with the given reason and a formatted detail.
func reject(reason, format string, args ...any) error {
	return &ParseError{Reason: reason, Err: fmt.Errorf(format, args...)}
}
