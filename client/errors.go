package client

import (
	"fmt"
	"net/http"
	"time"
)

// Error is an error answer of the API, or the refusal that ended a
// request (Request.Err). errors.Is(err, ErrX) matches it by reason code.
type Error struct {
	// StatusCode is the HTTP status of an error answer; 0 for a request
	// that ended rejected, failed or expired.
	StatusCode int
	// Reason is the stable code; docs/api.md lists them.
	Reason string
	// Message is English for people, and may change.
	Message string
	// Param names the field or parameter concerned, if any.
	Param string
	// RetryAfter is how long to wait before trying again, when the agent
	// (Retry-After) or the intranet's rate limit said.
	RetryAfter time.Duration
	// Request is the final status of a request's refusal ("rejected",
	// "failed", "expired"), "" for an error answer.
	Request string
}

func (e *Error) Error() string {
	var s string
	switch {
	case e.Request != "":
		s = "request " + e.Request + ": " + e.Reason
	case e.Reason != "":
		s = fmt.Sprintf("HTTP %d %s", e.StatusCode, e.Reason)
	default:
		s = fmt.Sprintf("HTTP %d", e.StatusCode)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return "client: " + s
}

// Is reports whether target is the sentinel of e's reason code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.sentinel() && t.Reason == e.Reason
}

func (e *Error) sentinel() bool { return e.StatusCode == 0 && e.Request == "" && e.Message == "" }

// Temporary reports whether the same request may succeed later: the
// agent is overloaded, starting, draining, has no catalogue yet, could
// not reach its spool, or a rate limit or the long-poll cap refused it.
func (e *Error) Temporary() bool {
	switch e.Reason {
	case reasonRateLimited, reasonTooManyWaits, reasonOverloaded, reasonUnavailable, reasonShuttingDown,
		reasonCatalogueUnavailable, reasonNotReady:
		return true
	}
	return e.Reason == "" && (e.StatusCode == http.StatusTooManyRequests || e.StatusCode >= 500)
}

func sentinel(reason string) *Error { return &Error{Reason: reason} }

const (
	reasonRateLimited          = "rate_limited"
	reasonTooManyWaits         = "too_many_waits"
	reasonOverloaded           = "overloaded"
	reasonUnavailable          = "unavailable"
	reasonShuttingDown         = "shutting_down"
	reasonCatalogueUnavailable = "catalogue_unavailable"
	reasonNotReady             = "not_ready"
	reasonNoSuchRequest        = "not_found"
	reasonIdempotencyConflict  = "idempotency_conflict"
	reasonUnsupportedMediaType = "unsupported_media_type"
	reasonCertificateRequired  = "certificate_required"
	reasonOperationForbidden   = "operation_forbidden"
	reasonIPForbidden          = "ip_forbidden"
	reasonInvalidToken         = "invalid_token"
	reasonMissingToken         = "missing_token"
	reasonMethodNotAllowed     = "method_not_allowed"
	reasonBodyTooLarge         = "body_too_large"
	reasonBadBody              = "bad_body"
	reasonBadSubject           = "bad_subject"
	reasonParamsTooLarge       = "params_too_large"
	reasonBadIdempotencyKey    = "bad_idempotency_key"
	reasonBadWait              = "bad_wait"
	reasonPolicyRejected       = "policy_rejected"
	reasonUnknownOperation     = "unknown_operation"
	reasonBadParams            = "bad_params"
	reasonUnknownParam         = "unknown_param"
	reasonMissingParam         = "missing_param"
	reasonBadType              = "bad_type"
	reasonBadValue             = "bad_value"
	reasonTooLong              = "too_long"
	reasonBadPattern           = "bad_pattern"
	reasonOutOfRange           = "out_of_range"
	reasonNotInEnum            = "not_in_enum"
	reasonBadDate              = "bad_date"
	reasonBadRange             = "bad_range"
	reasonBadIDNumber          = "bad_id_number"
	reasonBadPlate             = "bad_plate"
	reasonBadMobile            = "bad_mobile"
	reasonBadPlateType         = "bad_plate_type"
	reasonSubjectNotTrusted    = "subject_not_trusted"
	reasonMissingSubject       = "missing_subject"
	reasonForbiddenSubject     = "forbidden_subject"
	reasonApprovalExpired      = "approval_expired"
	reasonApprovalDenied       = "approval_denied"
	reasonNoResult             = "no_result"
	reasonNotReceived          = "not_received"
)

// The reason codes, one sentinel each (docs/api.md, "Errors"; the
// catalogue's in docs/policy.md).
var (
	ErrRateLimited          = sentinel(reasonRateLimited)
	ErrTooManyWaits         = sentinel(reasonTooManyWaits)
	ErrOverloaded           = sentinel(reasonOverloaded)
	ErrUnavailable          = sentinel(reasonUnavailable)
	ErrShuttingDown         = sentinel(reasonShuttingDown)
	ErrCatalogueUnavailable = sentinel(reasonCatalogueUnavailable)
	ErrNotReady             = sentinel(reasonNotReady)
	ErrNotFound             = sentinel(reasonNoSuchRequest)
	ErrIdempotencyConflict  = sentinel(reasonIdempotencyConflict)
	ErrUnsupportedMediaType = sentinel(reasonUnsupportedMediaType)
	ErrCertificateRequired  = sentinel(reasonCertificateRequired)
	ErrOperationForbidden   = sentinel(reasonOperationForbidden)
	ErrIPForbidden          = sentinel(reasonIPForbidden)
	ErrInvalidToken         = sentinel(reasonInvalidToken)
	ErrMissingToken         = sentinel(reasonMissingToken)
	ErrMethodNotAllowed     = sentinel(reasonMethodNotAllowed)
	ErrBodyTooLarge         = sentinel(reasonBodyTooLarge)
	ErrBadBody              = sentinel(reasonBadBody)
	ErrBadSubject           = sentinel(reasonBadSubject)
	ErrParamsTooLarge       = sentinel(reasonParamsTooLarge)
	ErrBadIdempotencyKey    = sentinel(reasonBadIdempotencyKey)
	ErrBadWait              = sentinel(reasonBadWait)
	ErrPolicyRejected       = sentinel(reasonPolicyRejected)
	ErrUnknownOperation     = sentinel(reasonUnknownOperation)
	ErrBadParams            = sentinel(reasonBadParams)
	ErrUnknownParam         = sentinel(reasonUnknownParam)
	ErrMissingParam         = sentinel(reasonMissingParam)
	ErrBadType              = sentinel(reasonBadType)
	ErrBadValue             = sentinel(reasonBadValue)
	ErrTooLong              = sentinel(reasonTooLong)
	ErrBadPattern           = sentinel(reasonBadPattern)
	ErrOutOfRange           = sentinel(reasonOutOfRange)
	ErrNotInEnum            = sentinel(reasonNotInEnum)
	ErrBadDate              = sentinel(reasonBadDate)
	ErrBadRange             = sentinel(reasonBadRange)
	ErrBadIDNumber          = sentinel(reasonBadIDNumber)
	ErrBadPlate             = sentinel(reasonBadPlate)
	ErrBadMobile            = sentinel(reasonBadMobile)
	ErrBadPlateType         = sentinel(reasonBadPlateType)
	ErrSubjectNotTrusted    = sentinel(reasonSubjectNotTrusted)
	ErrMissingSubject       = sentinel(reasonMissingSubject)
	ErrForbiddenSubject     = sentinel(reasonForbiddenSubject)
	ErrApprovalExpired      = sentinel(reasonApprovalExpired)
	ErrApprovalDenied       = sentinel(reasonApprovalDenied)
	// ErrNoResult: the intranet acknowledged the request without a
	// result (a failed request).
	ErrNoResult = sentinel(reasonNoResult)
	// ErrNotReceived: the request's envelope expired before the intranet
	// received it (an expired request).
	ErrNotReceived = sentinel(reasonNotReceived)
)

// Reasons are the reason codes the package has a sentinel for.
func Reasons() []string {
	var out []string
	for _, e := range sentinels {
		out = append(out, e.Reason)
	}
	return out
}

var sentinels = []*Error{
	ErrRateLimited, ErrTooManyWaits, ErrOverloaded, ErrUnavailable, ErrShuttingDown, ErrCatalogueUnavailable,
	ErrNotReady, ErrNotFound, ErrIdempotencyConflict, ErrUnsupportedMediaType, ErrCertificateRequired,
	ErrOperationForbidden, ErrIPForbidden, ErrInvalidToken, ErrMissingToken, ErrMethodNotAllowed, ErrBodyTooLarge,
	ErrBadBody, ErrBadSubject, ErrParamsTooLarge, ErrBadIdempotencyKey, ErrBadWait, ErrPolicyRejected,
	ErrUnknownOperation, ErrBadParams, ErrUnknownParam, ErrMissingParam, ErrBadType, ErrBadValue, ErrTooLong,
	ErrBadPattern, ErrOutOfRange, ErrNotInEnum, ErrBadDate, ErrBadRange, ErrBadIDNumber, ErrBadPlate, ErrBadMobile,
	ErrBadPlateType, ErrSubjectNotTrusted, ErrMissingSubject, ErrForbiddenSubject, ErrApprovalExpired,
	ErrApprovalDenied, ErrNoResult, ErrNotReceived,
}
