// Package policy is the whitelist that decides which requests may reach the
// replica: default deny, typed parameters, subject binding, one
// parameterised SQL statement per operation. The language is specified in
// docs/policy.md.
//
// # Loading
//
// [Load] and [Parse] decode a YAML policy strictly (unknown and duplicate
// keys are errors) and validate it: operation, parameter and client names,
// known types with the keys each type allows, patterns that compile as RE2,
// date bounds, every :name placeholder of a statement declared (a
// date_range parameter p binds :p_from and :p_to) and every declared
// parameter used, the first keyword of a statement matching its mode, row
// limits, subject bindings, table declarations, masks, rate limits and
// approvals. Every problem is a [*config.Error] naming the file, the line
// and the field; several problems come back joined with [errors.Join].
// Declarations that the language will require later but does not yet
// (reads, inserts, updates) are reported by [Policy.Warnings] when absent.
//
// # Evaluating
//
// [Policy.Evaluate] is the only way a request gets an argument list for a
// statement; [Policy.Check] is Evaluate without a client, subject or clock.
// An operation the policy does not list is refused, and so is a parameter
// the operation does not declare. Every refusal is a [*RejectError] with a
// stable reason code (the Reason… constants); its message names the
// parameter concerned but never repeats the value, which may be personal
// data. Evaluate never panics, whatever the input, and reads each byte of
// a request a bounded number of times, so a megabyte of input is refused
// in well under a millisecond.
//
// # Catalogue
//
// [Policy.Catalogue] is the part of a policy the DMZ may see: operations,
// parameter rules, subject bindings, limits, but no SQL, table or column
// names. [ParseCatalogue] turns it back into a [*Policy] that evaluates
// requests exactly as the original does, so the DMZ can refuse early.
//
// # Masking
//
// [MaskValue] and [Operation.MaskRow] apply the masks a read operation
// declares to its result rows.
package policy

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"time"

	// The policy's timezone must load on hosts without system tzdata.
	_ "time/tzdata"

	"github.com/ferrybridge/ferry/internal/config"
)

// Version is the only policy language version this package reads.
const Version = 1

// Mode says whether an operation reads or writes the replica.
type Mode string

// Operation modes.
const (
	ModeRead  Mode = "read"
	ModeWrite Mode = "write"
)

// Param types.
const (
	TypeString    = "string"
	TypeInt       = "int"
	TypeEnum      = "enum"
	TypeDate      = "date"
	TypeDateRange = "date_range"
	TypeIDNumber  = "id_number"
	TypePlate     = "plate"
	TypeMobile    = "mobile"
	TypePlateType = "plate_type"
)

// Types lists every parameter type, in documentation order.
var Types = []string{
	TypeString, TypeInt, TypeEnum, TypeDate, TypeDateRange,
	TypeIDNumber, TypePlate, TypeMobile, TypePlateType,
}

// Mask kinds of a read operation's mask.
const (
	MaskName     = "name"      // first character kept, then one '*'
	MaskIDNumber = "id_number" // first 6 and last 4 characters kept
	MaskMobile   = "mobile"    // first 3 and last 4 characters kept
	MaskFull     = "full"      // replaced by "****"
)

// MaskKinds lists every mask kind, in documentation order.
var MaskKinds = []string{MaskName, MaskIDNumber, MaskMobile, MaskFull}

// Limits and defaults of the policy language.
const (
	// DefaultMaxRows is the row limit of a read operation that sets none.
	DefaultMaxRows = 100
	// MaxMaxRows is the largest max_rows a read operation may set.
	MaxMaxRows = 10000
	// MaxStringLen is the largest max_len a string parameter may set.
	MaxStringLen = 4096
	// MaxNameLen bounds operation, parameter, client, table and column names.
	MaxNameLen = 64
	// MaxEnumValues bounds the values of an enum parameter.
	MaxEnumValues = 256
	// DefaultTimezone is the timezone of "today" when a policy sets none.
	DefaultTimezone = "Asia/Shanghai"
	// DefaultApprovalWithin is how long a held write waits for approval
	// when the policy's approval sets no within.
	DefaultApprovalWithin = 72 * time.Hour
	// MinApprovalWithin and MaxApprovalWithin bound approval.within.
	MinApprovalWithin = time.Minute
	MaxApprovalWithin = 30 * 24 * time.Hour
	// MaxRateN, MinRatePer and MaxRatePer bound a rate limit N/per.
	MaxRateN   = 1_000_000
	MinRatePer = time.Second
	MaxRatePer = 24 * time.Hour
	// MaxRelativeDays bounds the n of a relative date bound today±nd.
	MaxRelativeDays = 36600
)

// Reason codes of a [RejectError]. They are stable: clients and audit
// records branch on them.
const (
	ReasonUnknownOperation  = "unknown_operation"   // the policy does not list the operation
	ReasonBadParams         = "bad_params"          // params is not one JSON object (or repeats a key)
	ReasonUnknownParam      = "unknown_param"       // a parameter the operation does not declare
	ReasonMissingParam      = "missing_param"       // a required parameter is absent or null
	ReasonBadType           = "bad_type"            // wrong JSON type, or an int that is not an int64 literal
	ReasonBadValue          = "bad_value"           // invalid UTF-8, control or format characters
	ReasonTooLong           = "too_long"            // more characters than max_len or than the type allows
	ReasonBadPattern        = "bad_pattern"         // a string that does not match the pattern
	ReasonOutOfRange        = "out_of_range"        // an int or date below min or above max
	ReasonNotInEnum         = "not_in_enum"         // an enum value not listed in values
	ReasonBadDate           = "bad_date"            // not a calendar date written YYYY-MM-DD
	ReasonBadRange          = "bad_range"           // a date range that is malformed, reversed or too long
	ReasonBadIDNumber       = "bad_id_number"       // not a valid resident ID number
	ReasonBadPlate          = "bad_plate"           // not a valid plate number
	ReasonBadMobile         = "bad_mobile"          // not a valid mobile number
	ReasonBadPlateType      = "bad_plate_type"      // not a listed plate type code
	ReasonSubjectNotTrusted = "subject_not_trusted" // the client may not assert a subject
	ReasonBadSubject        = "bad_subject"         // the asserted subject is not a valid ID number
	ReasonMissingSubject    = "missing_subject"     // the operation needs a subject and none was asserted
	ReasonForbiddenSubject  = "forbidden_subject"   // a subject-bound parameter names someone else
	ReasonRateLimited       = "rate_limited"        // set by the replica's rate limiter; see RejectError.RetryAfter
	ReasonApprovalExpired   = "approval_expired"    // set by the replica: a held write was not approved in time
	ReasonApprovalDenied    = "approval_denied"     // set by the replica: an admin denied a held write
)

// ReasonApprovalRequired is the reason of a "held" result: the write waits
// for an admin's approval. It is not a refusal; the request's final result
// follows once an admin decides or the approval expires.
const ReasonApprovalRequired = "approval_required"

// Reasons lists every reason code a refusal may carry, in documentation
// order. Evaluate returns all but rate_limited, approval_expired and
// approval_denied, which the replica sets.
var Reasons = []string{
	ReasonUnknownOperation, ReasonBadParams, ReasonUnknownParam, ReasonMissingParam,
	ReasonBadType, ReasonBadValue, ReasonTooLong, ReasonBadPattern, ReasonOutOfRange,
	ReasonNotInEnum, ReasonBadDate, ReasonBadRange, ReasonBadIDNumber, ReasonBadPlate,
	ReasonBadMobile, ReasonBadPlateType, ReasonSubjectNotTrusted, ReasonBadSubject,
	ReasonMissingSubject, ReasonForbiddenSubject, ReasonRateLimited, ReasonApprovalExpired,
	ReasonApprovalDenied,
}

// Policy is a loaded, validated whitelist.
type Policy struct {
	Version int
	// Timezone is the IANA name of the zone that "today" is taken in.
	Timezone   string
	Clients    []Client
	Operations []*Operation

	loc      *time.Location
	byName   map[string]*Operation
	clients  map[string]Client
	warnings []string
}

// Client is a DMZ client the policy knows about.
type Client struct {
	Name string
	// AssertsSubject says whether requests from this client may carry a
	// subject (a citizen identity the client has authenticated).
	AssertsSubject bool
}

// Operation is one allowed operation.
type Operation struct {
	Name        string
	Description string
	Mode        Mode
	Params      []*Param // in declaration order
	Statement   string   // SQL with :name placeholders; "" in a catalogue
	MaxRows     int      // read operations: most rows returned

	// Subject is the name of the id_number parameter bound to the
	// request's subject, or "".
	Subject string
	// Reads maps each table the statement may read to its columns.
	Reads map[string][]string
	// Inserts lists the tables a write operation may insert into.
	Inserts []string
	// Updates maps each table a write operation may update to the
	// columns it may set.
	Updates map[string][]string
	// Mask maps result columns of a read operation to mask kinds.
	Mask map[string]string
	// Limits are the operation's rate limits.
	Limits Limits
	// Approval, when not nil, holds a write until an admin approves it.
	Approval *Approval

	// Placeholders are the placeholder names of Statement in order of
	// first use; Checked.Args follows this order. A date_range parameter
	// p appears as p_from and p_to.
	Placeholders []string

	byName map[string]*Param
	slots  []slot // one per placeholder
}

// slot says where the value of a placeholder comes from.
type slot struct {
	param int // index in Params
	half  int // 0: the value; 1: a date range's from; 2: its to
}

// Limits are an operation's rate limits; a zero Rate is no limit.
type Limits struct {
	PerSubject Rate // per subject per operation
	PerClient  Rate // per client per operation
}

// Rate is at most N requests per Per. The zero Rate is unlimited.
type Rate struct {
	N   int
	Per time.Duration
}

// IsZero reports whether r sets no limit.
func (r Rate) IsZero() bool { return r.N == 0 }

// String renders r as the policy writes it ("10/1m", "1000/1h"), or ""
// for the zero Rate.
func (r Rate) String() string {
	if r.IsZero() {
		return ""
	}
	return fmt.Sprintf("%d/%s", r.N, shortDuration(r.Per))
}

// Approval says that a write operation's requests wait until an admin
// approves them, for at most Within.
type Approval struct {
	Within time.Duration
}

// Param is one declared parameter.
type Param struct {
	Name        string
	Type        string
	Description string
	Required    bool
	MaxLen      int      // string: most characters
	Pattern     string   // string: RE2, anchored by the loader as ^(?:…)$
	Min, Max    *int64   // int: inclusive bounds
	Values      []string // enum
	// DateMin and DateMax are the inclusive bounds of a date or
	// date_range as written ("2020-01-01", "today-30d"), or "".
	DateMin, DateMax string
	// MaxDays is the most days a date_range may cover, counting both
	// ends; 0 is no limit.
	MaxDays int
	// Example is a valid value as JSON, when the policy gives one; the
	// loader checks it against the parameter.
	Example json.RawMessage

	index      int
	pattern    string // as written, before anchoring
	re         *regexp.Regexp
	lo, hi     *dateBound
	maxChars   int    // most characters a value may have
	maxRawJSON int    // most bytes its JSON text may take
	longReason string // the reason for a value longer than maxChars
}

// Request is what Evaluate decides on.
type Request struct {
	Client    string          // DMZ client name that submitted the request
	Subject   string          // citizen identity (resident ID number) asserted by the client; "" if none
	Operation string          // operation name
	Params    json.RawMessage // one JSON object
	Now       time.Time       // evaluation time, for relative date bounds; zero means time.Now()
}

// Checked is a request that passed the policy.
type Checked struct {
	Op   *Operation
	Args []any // sql.Named values for Op.Statement, in Op.Placeholders order
	// Subject is the request's subject, normalised (an upper-case X), or
	// "" if it had none.
	Subject string
}

// RejectError says why a request was refused. Reason is a stable code.
type RejectError struct {
	Reason  string
	Param   string // the parameter concerned, if any
	Message string
	// RetryAfter is how long to wait before the same request may succeed;
	// the replica's rate limiter sets it with rate_limited. Zero otherwise.
	RetryAfter time.Duration
}

func (e *RejectError) Error() string { return e.Message }

// Load reads and validates a policy file.
func Load(path string) (*Policy, error) {
	data, err := config.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	return Parse(path, data)
}

// Parse validates a policy; name is used in error messages.
func Parse(name string, data []byte) (*Policy, error) {
	return parse(name, data)
}

// Operation returns the named operation.
func (p *Policy) Operation(name string) (*Operation, bool) {
	if p == nil {
		return nil, false
	}
	op, ok := p.byName[name]
	return op, ok
}

// Client returns the named client, if the policy lists it.
func (p *Policy) Client(name string) (Client, bool) {
	if p == nil {
		return Client{}, false
	}
	c, ok := p.clients[name]
	return c, ok
}

// Location returns the timezone that "today" is taken in.
func (p *Policy) Location() *time.Location {
	if p == nil || p.loc == nil {
		return time.UTC
	}
	return p.loc
}

// Warnings returns the problems that do not stop the policy from loading
// (today: missing reads, inserts and updates declarations), as
// "file:line: field: message" lines in file order.
func (p *Policy) Warnings() []string {
	if p == nil {
		return nil
	}
	return slices.Clone(p.warnings)
}

// Param returns the named parameter of the operation.
func (o *Operation) Param(name string) (*Param, bool) {
	if o == nil {
		return nil, false
	}
	pa, ok := o.byName[name]
	return pa, ok
}

// shortDuration renders d without zero units: 1m, 1h, 90s, 1h30m → 90m.
func shortDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return d.String()
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.String()
}
