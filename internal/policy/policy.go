// Package policy is the whitelist that decides which requests may reach the
// replica: default deny, typed parameters, one parameterised SQL statement
// per operation. The language is specified in docs/policy.md.
//
// # Loading
//
// [Load] and [Parse] decode a YAML policy strictly (unknown and duplicate
// keys are errors) and validate it: operation and parameter names, known
// types with the keys each type allows, patterns that compile as RE2, every
// :name placeholder of a statement declared and every declared parameter
// used, the first keyword of a statement matching its mode, row limits.
// Every problem is a [*config.Error] naming the file, the line and the field;
// several problems come back joined with [errors.Join].
//
// # Checking
//
// [Policy.Check] is the only way a request gets an argument list for a
// statement. An operation the policy does not list is refused, and so is a
// parameter the operation does not declare. Every refusal is a
// [*RejectError] with a stable reason code (the Reason… constants); its
// message names the parameter concerned but never repeats the value, which
// may be personal data. Check never panics, whatever the input.
package policy

import (
	"encoding/json"
	"fmt"
	"regexp"

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
	TypeString = "string"
	TypeInt    = "int"
	TypeEnum   = "enum"
	TypeDate   = "date"
)

// Limits and defaults of the policy language.
const (
	// DefaultMaxRows is the row limit of a read operation that sets none.
	DefaultMaxRows = 100
	// MaxMaxRows is the largest max_rows a read operation may set.
	MaxMaxRows = 10000
	// MaxStringLen is the largest max_len a string parameter may set.
	MaxStringLen = 4096
	// MaxNameLen bounds operation and parameter names.
	MaxNameLen = 64
	// MaxEnumValues bounds the values of an enum parameter.
	MaxEnumValues = 256
)

// Reason codes of a [RejectError]. They are stable: clients and audit
// records branch on them.
const (
	ReasonUnknownOperation = "unknown_operation" // the policy does not list the operation
	ReasonBadParams        = "bad_params"        // params is not one JSON object (or repeats a key)
	ReasonUnknownParam     = "unknown_param"     // a parameter the operation does not declare
	ReasonMissingParam     = "missing_param"     // a required parameter is absent or null
	ReasonBadType          = "bad_type"          // wrong JSON type, or an int that is not an int64 literal
	ReasonBadValue         = "bad_value"         // invalid UTF-8, control or format characters
	ReasonTooLong          = "too_long"          // more characters than max_len
	ReasonBadPattern       = "bad_pattern"       // a string that does not match the pattern
	ReasonOutOfRange       = "out_of_range"      // an int below min or above max
	ReasonNotInEnum        = "not_in_enum"       // an enum value not listed in values
	ReasonBadDate          = "bad_date"          // not a calendar date written YYYY-MM-DD
)

// Reasons lists every reason code Check may return, in documentation order.
var Reasons = []string{
	ReasonUnknownOperation, ReasonBadParams, ReasonUnknownParam, ReasonMissingParam,
	ReasonBadType, ReasonBadValue, ReasonTooLong, ReasonBadPattern, ReasonOutOfRange,
	ReasonNotInEnum, ReasonBadDate,
}

// Policy is a loaded, validated whitelist.
type Policy struct {
	Version    int
	Operations []*Operation

	byName map[string]*Operation
}

// Operation is one allowed operation.
type Operation struct {
	Name        string
	Description string
	Mode        Mode
	Params      []*Param // in declaration order
	Statement   string   // SQL with :name placeholders
	MaxRows     int      // read operations: most rows returned

	// Placeholders are the parameter names of Statement in order of first
	// use; Checked.Args follows this order.
	Placeholders []string

	byName map[string]*Param
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
	// Example is a valid value as JSON, when the policy gives one; the
	// loader checks it against the parameter.
	Example json.RawMessage

	re *regexp.Regexp
}

// Checked is a request that passed the policy.
type Checked struct {
	Op   *Operation
	Args []any // sql.Named values for Op.Statement, in Op.Placeholders order
}

// RejectError says why a request was refused. Reason is a stable code.
type RejectError struct {
	Reason  string
	Param   string // the parameter concerned, if any
	Message string
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

// Param returns the named parameter of the operation.
func (o *Operation) Param(name string) (*Param, bool) {
	if o == nil {
		return nil, false
	}
	pa, ok := o.byName[name]
	return pa, ok
}
