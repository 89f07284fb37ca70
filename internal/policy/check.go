package policy

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// Check evaluates a request; a refusal is a *RejectError.
//
// params must be one JSON object (empty input counts as {}), whose keys are
// declared parameters of op, each at most once. A parameter that is absent
// or null is bound as NULL when it is optional and refused as
// missing_param when it is required. The returned Args hold one
// sql.Named value per placeholder of the statement, in statement order:
// strings, enum values and dates as string, ints as int64.
func (p *Policy) Check(op string, params json.RawMessage) (*Checked, error) {
	o, ok := p.Operation(op)
	if !ok {
		return nil, reject(ReasonUnknownOperation, "", "operation %s is not allowed", quote(op))
	}
	vals, rej := o.decode(params)
	if rej != nil {
		return nil, rej
	}
	bound := make(map[string]any, len(o.Params))
	for _, pa := range o.Params {
		raw, ok := vals[pa.Name]
		if !ok || string(raw) == "null" {
			if pa.Required {
				return nil, reject(ReasonMissingParam, pa.Name, "parameter %s is required", pa.Name)
			}
			bound[pa.Name] = nil
			continue
		}
		v, rej := pa.check(raw)
		if rej != nil {
			return nil, rej
		}
		bound[pa.Name] = v
	}
	args := make([]any, len(o.Placeholders))
	for i, name := range o.Placeholders {
		args[i] = sql.Named(name, bound[name])
	}
	return &Checked{Op: o, Args: args}, nil
}

// decode splits params into its members without interpreting the values,
// refusing anything but one object of distinct, declared keys.
func (o *Operation) decode(params json.RawMessage) (map[string]json.RawMessage, *RejectError) {
	vals := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(params)) == 0 {
		return vals, nil
	}
	bad := func() *RejectError {
		return reject(ReasonBadParams, "", "parameters must be one JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(params))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, bad()
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, bad()
		}
		key, ok := tok.(string)
		if !ok {
			return nil, bad()
		}
		if _, ok := o.byName[key]; !ok {
			// Name the parameter in Param only when it is a well-formed
			// name; anything else is the client's noise, quoted and cut
			// short in the message.
			name := ""
			if len(key) <= MaxNameLen && paramNameRE.MatchString(key) {
				name = key
			}
			return nil, reject(ReasonUnknownParam, name, "parameter %s is not declared by operation %s", quote(key), o.Name)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, bad()
		}
		if _, dup := vals[key]; dup {
			return nil, reject(ReasonBadParams, key, "parameter %s is given more than once", key)
		}
		vals[key] = raw
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, bad()
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, bad()
	}
	return vals, nil
}

// check validates one present, non-null value and returns what to bind.
func (pa *Param) check(raw json.RawMessage) (any, *RejectError) {
	switch pa.Type {
	case TypeInt:
		if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
			return nil, reject(ReasonBadType, pa.Name, "parameter %s must be an integer", pa.Name)
		}
		v, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return nil, reject(ReasonBadType, pa.Name, "parameter %s must be an integer written without fraction or exponent, within 64 bits", pa.Name)
		}
		if (pa.Min != nil && v < *pa.Min) || (pa.Max != nil && v > *pa.Max) {
			return nil, reject(ReasonOutOfRange, pa.Name, "parameter %s must be %s", pa.Name, rangeText(pa.Min, pa.Max))
		}
		return v, nil
	case TypeString, TypeEnum, TypeDate:
	default:
		// The loader admits no other type; refuse rather than bind.
		return nil, reject(ReasonBadType, pa.Name, "parameter %s has an unsupported type", pa.Name)
	}

	s, rej := pa.text(raw)
	if rej != nil {
		return nil, rej
	}
	switch pa.Type {
	case TypeEnum:
		for _, v := range pa.Values {
			if s == v {
				return s, nil
			}
		}
		return nil, reject(ReasonNotInEnum, pa.Name, "parameter %s must be one of its listed values", pa.Name)
	case TypeDate:
		if len(s) != len(time.DateOnly) {
			return nil, reject(ReasonBadDate, pa.Name, "parameter %s must be a date written YYYY-MM-DD", pa.Name)
		}
		if _, err := time.Parse(time.DateOnly, s); err != nil {
			return nil, reject(ReasonBadDate, pa.Name, "parameter %s must be a date written YYYY-MM-DD", pa.Name)
		}
		return s, nil
	}
	if n := utf8.RuneCountInString(s); pa.MaxLen > 0 && n > pa.MaxLen {
		return nil, reject(ReasonTooLong, pa.Name, "parameter %s is longer than %d characters", pa.Name, pa.MaxLen)
	}
	if pa.re != nil && !pa.re.MatchString(s) {
		return nil, reject(ReasonBadPattern, pa.Name, "parameter %s does not match its pattern", pa.Name)
	}
	return s, nil
}

// text decodes a JSON string value and refuses text that is not plain:
// invalid UTF-8 (which encoding/json would silently replace), escaped lone
// surrogates (which decode to U+FFFD), control and format characters.
func (pa *Param) text(raw json.RawMessage) (string, *RejectError) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", reject(ReasonBadType, pa.Name, "parameter %s must be a string", pa.Name)
	}
	if !utf8.Valid(raw) {
		return "", reject(ReasonBadValue, pa.Name, "parameter %s is not valid UTF-8", pa.Name)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", reject(ReasonBadType, pa.Name, "parameter %s must be a string", pa.Name)
	}
	if i := badRune(s); i >= 0 {
		return "", reject(ReasonBadValue, pa.Name, "parameter %s contains a control, format or replacement character", pa.Name)
	}
	return s, nil
}

// badRune returns the index of the first rune that has no place in a
// parameter value (C0/C1 controls, Unicode format characters such as bidi
// overrides and zero-width spaces, U+FFFD), or -1.
func badRune(s string) int {
	for i, r := range s {
		if r == utf8.RuneError || unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cf, r) {
			return i
		}
	}
	return -1
}

func rangeText(lo, hi *int64) string {
	switch {
	case lo != nil && hi != nil:
		return fmt.Sprintf("between %d and %d", *lo, *hi)
	case lo != nil:
		return fmt.Sprintf("at least %d", *lo)
	default:
		return fmt.Sprintf("at most %d", *hi)
	}
}

func reject(reason, param, format string, args ...any) *RejectError {
	return &RejectError{Reason: reason, Param: param, Message: fmt.Sprintf(format, args...)}
}

// quote renders a client-chosen name for a message: quoted, and cut short
// so that a refusal cannot echo a large or odd value.
func quote(s string) string {
	const max = 64
	if utf8.RuneCountInString(s) > max {
		r := []rune(s)
		s = string(r[:max]) + "…"
	}
	return strconv.Quote(s)
}
