package policy

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// Check evaluates a request that carries no client, subject or clock: it
// is Evaluate with only Operation and Params set. A refusal is a
// *RejectError.
func (p *Policy) Check(op string, params json.RawMessage) (*Checked, error) {
	return p.Evaluate(Request{Operation: op, Params: params})
}

// Evaluate decides a request; a refusal is a *RejectError. The steps, in
// order, and the first failure is the answer:
//
//  1. The operation must be listed (unknown_operation).
//  2. A request with a subject must come from a client the policy lists
//     with asserts_subject (subject_not_trusted), and the subject must be
//     a valid resident ID number (bad_subject).
//  3. params must be one JSON object (empty input counts as {}), whose
//     keys are declared parameters of the operation (unknown_param), each
//     at most once (bad_params).
//  4. Each declared parameter, in declaration order: a parameter that is
//     absent or null is bound as NULL when it is optional and refused as
//     missing_param when it is required (except the subject-bound one);
//     a present one must pass its type's checks.
//  5. An operation with a subject binding or a per-subject rate limit
//     needs a subject (missing_subject). The subject-bound parameter, when
//     absent, is bound to the subject; when present it must equal it
//     (forbidden_subject).
//
// The returned Args hold one sql.Named value per placeholder of the
// statement, in statement order: text types as string, ints as int64, a
// date_range p as p_from and p_to.
func (p *Policy) Evaluate(r Request) (*Checked, error) {
	o, ok := p.Operation(r.Operation)
	if !ok {
		return nil, reject(ReasonUnknownOperation, "", "operation %s is not allowed", quote(r.Operation))
	}
	ev := evaluation{now: r.Now, loc: p.Location()}
	subject := ""
	if r.Subject != "" {
		if c, ok := p.Client(r.Client); !ok || !c.AssertsSubject {
			return nil, reject(ReasonSubjectNotTrusted, "", "client %s may not assert a subject", quote(r.Client))
		}
		s, why := checkIDNumber(r.Subject, ev.today())
		if why != "" {
			return nil, reject(ReasonBadSubject, "", "the subject is not a valid resident ID number: it %s", why)
		}
		subject = s
	}

	// Small operations keep their working space on the stack.
	var rawStack [8][]byte
	var boundStack [8][2]any
	raws, bound := rawStack[:], boundStack[:]
	if n := len(o.Params); n <= len(rawStack) {
		raws, bound = raws[:n], bound[:n]
	} else {
		raws, bound = make([][]byte, n), make([][2]any, n)
	}
	if rej := o.split(r.Params, raws); rej != nil {
		return nil, rej
	}
	for i, pa := range o.Params {
		raw := raws[i]
		if raw == nil || isNull(raw) {
			if pa.Required && pa.Name != o.Subject {
				return nil, reject(ReasonMissingParam, pa.Name, "parameter %s is required", pa.Name)
			}
			continue
		}
		a, b, rej := pa.check(raw, &ev)
		if rej != nil {
			return nil, rej
		}
		bound[i] = [2]any{a, b}
	}

	if subject == "" {
		switch {
		case o.Subject != "":
			return nil, reject(ReasonMissingSubject, o.Subject, "operation %s binds parameter %s to the request's subject, and the request has none", o.Name, o.Subject)
		case !o.Limits.PerSubject.IsZero():
			return nil, reject(ReasonMissingSubject, "", "operation %s is limited per subject, and the request has none", o.Name)
		}
	}
	if o.Subject != "" {
		i := o.byName[o.Subject].index
		switch v := bound[i][0].(type) {
		case nil:
			bound[i][0] = subject
		case string:
			if v != subject {
				return nil, reject(ReasonForbiddenSubject, o.Subject, "parameter %s must be the request's subject", o.Subject)
			}
		}
	}

	args := make([]any, len(o.slots))
	for i, sl := range o.slots {
		v := bound[sl.param][0]
		if sl.half == 2 {
			v = bound[sl.param][1]
		}
		args[i] = sql.Named(o.Placeholders[i], v)
	}
	return &Checked{Op: o, Args: args, Subject: subject}, nil
}

// evaluation is what one Evaluate knows besides the request.
type evaluation struct {
	now      time.Time
	loc      *time.Location
	day      int
	haveDay  bool
	examples bool // checking a policy's example: bounds relative to today do not apply
}

// today returns today's day number in the policy's timezone.
func (ev *evaluation) today() int {
	if !ev.haveDay {
		now := ev.now
		if now.IsZero() {
			now = time.Now()
		}
		y, m, d := now.In(ev.loc).Date()
		ev.day, ev.haveDay = daysFromCivil(y, int(m), d), true
	}
	return ev.day
}

// split finds the members of params and files their raw values under the
// index of their parameter, refusing anything but one object of distinct,
// declared keys.
func (o *Operation) split(params []byte, raws [][]byte) *RejectError {
	if len(bytes.TrimSpace(params)) == 0 {
		return nil
	}
	bad := func() *RejectError {
		return reject(ReasonBadParams, "", "parameters must be one JSON object")
	}
	s := objectScanner{b: params}
	if !s.open() {
		return bad()
	}
	for {
		key, val, done, ok := s.next()
		if !ok {
			return bad()
		}
		if done {
			break
		}
		k, ok := keyBytes(key)
		if !ok {
			return bad()
		}
		pa, ok := o.byName[string(k)]
		if !ok {
			// Name the parameter in Param only when it is a well-formed
			// name; anything else is the client's noise, quoted and cut
			// short in the message.
			name := ""
			if len(k) <= MaxNameLen && paramNameRE.Match(k) {
				name = string(k)
			}
			return reject(ReasonUnknownParam, name, "parameter %s is not declared by operation %s", quote(string(k)), o.Name)
		}
		if raws[pa.index] != nil {
			return reject(ReasonBadParams, pa.Name, "parameter %s is given more than once", pa.Name)
		}
		raws[pa.index] = val
	}
	if !s.end() {
		return bad()
	}
	return nil
}

// check validates one present, non-null value and returns what to bind:
// one value, or a date range's two ends.
func (pa *Param) check(raw []byte, ev *evaluation) (any, any, *RejectError) {
	switch pa.Type {
	case TypeInt:
		v, rej := pa.integer(raw)
		if rej != nil {
			return nil, nil, rej
		}
		return v, nil, nil
	case TypeDateRange:
		from, to, rej := pa.dateRange(raw, ev)
		if rej != nil {
			return nil, nil, rej
		}
		return from, to, nil
	case TypeString, TypeEnum, TypeDate, TypeIDNumber, TypePlate, TypeMobile, TypePlateType:
	default:
		// The loader admits no other type; refuse rather than bind.
		return nil, nil, reject(ReasonBadType, pa.Name, "parameter %s has an unsupported type", pa.Name)
	}

	s, rej := text(raw, pa.Name, "", pa.maxChars, pa.maxRawJSON, pa.longReason)
	if rej != nil {
		return nil, nil, rej
	}
	var why, reason string
	switch pa.Type {
	case TypeString:
		if pa.re != nil && !pa.re.MatchString(s) {
			return nil, nil, reject(ReasonBadPattern, pa.Name, "parameter %s does not match its pattern", pa.Name)
		}
		return s, nil, nil
	case TypeEnum:
		for _, v := range pa.Values {
			if s == v {
				return v, nil, nil
			}
		}
		return nil, nil, reject(ReasonNotInEnum, pa.Name, "parameter %s must be one of its listed values", pa.Name)
	case TypeDate:
		day, ok := parseDate(s)
		if !ok {
			return nil, nil, reject(ReasonBadDate, pa.Name, "parameter %s must be a date written YYYY-MM-DD", pa.Name)
		}
		if rej := pa.inBounds(day, ev, ""); rej != nil {
			return nil, nil, rej
		}
		return s, nil, nil
	case TypeIDNumber:
		var norm string
		norm, why = checkIDNumber(s, ev.today())
		if why == "" {
			return norm, nil, nil
		}
		reason = ReasonBadIDNumber
	case TypePlate:
		why, reason = checkPlate(s), ReasonBadPlate
	case TypeMobile:
		why, reason = checkMobile(s), ReasonBadMobile
	case TypePlateType:
		why, reason = checkPlateType(s), ReasonBadPlateType
	}
	if why != "" {
		return nil, nil, reject(reason, pa.Name, "parameter %s %s", pa.Name, why)
	}
	return s, nil, nil
}

// integer reads an int parameter: a JSON integer literal that fits in 64
// bits, within the bounds.
func (pa *Param) integer(raw []byte) (int64, *RejectError) {
	if raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return 0, wrongType(raw, pa.Name, pa.Name, "an integer")
	}
	notInt := func() *RejectError {
		if !json.Valid(raw) {
			return reject(ReasonBadParams, pa.Name, "parameter %s is not a valid JSON value", pa.Name)
		}
		return reject(ReasonBadType, pa.Name, "parameter %s must be an integer written without fraction or exponent, within 64 bits", pa.Name)
	}
	if len(raw) > 24 {
		// Longer than any int64; do not look further.
		return 0, reject(ReasonBadType, pa.Name, "parameter %s must be an integer written without fraction or exponent, within 64 bits", pa.Name)
	}
	neg := raw[0] == '-'
	d := raw
	if neg {
		d = raw[1:]
	}
	if len(d) == 0 || (d[0] == '0' && len(d) > 1 && '0' <= d[1] && d[1] <= '9') {
		return 0, notInt()
	}
	limit := uint64(1<<63 - 1)
	if neg {
		limit = 1 << 63
	}
	var u uint64
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, notInt()
		}
		if u > (limit-uint64(c-'0'))/10 {
			return 0, reject(ReasonBadType, pa.Name, "parameter %s must be an integer written without fraction or exponent, within 64 bits", pa.Name)
		}
		u = u*10 + uint64(c-'0')
	}
	v := int64(u)
	if neg {
		v = -v // also right for -2^63, whose uint64 wraps to itself
	}
	if (pa.Min != nil && v < *pa.Min) || (pa.Max != nil && v > *pa.Max) {
		return 0, reject(ReasonOutOfRange, pa.Name, "parameter %s must be %s", pa.Name, rangeText(pa.Min, pa.Max))
	}
	return v, nil
}

// dateRange reads a date_range parameter: {"from": date, "to": date}.
func (pa *Param) dateRange(raw []byte, ev *evaluation) (string, string, *RejectError) {
	if raw[0] != '{' {
		return "", "", wrongType(raw, pa.Name, pa.Name, `an object {"from": date, "to": date}`)
	}
	if len(raw) > pa.maxRawJSON {
		return "", "", reject(ReasonTooLong, pa.Name, "parameter %s is longer than a date range can be", pa.Name)
	}
	if !json.Valid(raw) {
		return "", "", reject(ReasonBadParams, pa.Name, "parameter %s is not a valid JSON value", pa.Name)
	}
	var fromRaw, toRaw []byte
	s := objectScanner{b: raw}
	s.open()
	for {
		key, val, done, ok := s.next()
		if !ok {
			return "", "", reject(ReasonBadParams, pa.Name, "parameter %s is not a valid JSON value", pa.Name)
		}
		if done {
			break
		}
		k, _ := keyBytes(key)
		var dst *[]byte
		switch string(k) {
		case "from":
			dst = &fromRaw
		case "to":
			dst = &toRaw
		default:
			return "", "", reject(ReasonBadRange, pa.Name, "parameter %s may have only the members from and to", pa.Name)
		}
		if *dst != nil {
			return "", "", reject(ReasonBadRange, pa.Name, "parameter %s repeats a member", pa.Name)
		}
		*dst = val
	}
	if fromRaw == nil || toRaw == nil || isNull(fromRaw) || isNull(toRaw) {
		return "", "", reject(ReasonBadRange, pa.Name, "parameter %s needs both from and to", pa.Name)
	}
	from, fromDay, rej := pa.rangeEnd(fromRaw, "from")
	if rej != nil {
		return "", "", rej
	}
	to, toDay, rej := pa.rangeEnd(toRaw, "to")
	if rej != nil {
		return "", "", rej
	}
	if fromDay > toDay {
		return "", "", reject(ReasonBadRange, pa.Name, "parameter %s: from is after to", pa.Name)
	}
	if pa.MaxDays > 0 && toDay-fromDay+1 > pa.MaxDays {
		return "", "", reject(ReasonBadRange, pa.Name, "parameter %s covers more than %d days", pa.Name, pa.MaxDays)
	}
	if rej := pa.inBounds(fromDay, ev, "from"); rej != nil {
		return "", "", rej
	}
	if rej := pa.inBounds(toDay, ev, "to"); rej != nil {
		return "", "", rej
	}
	return from, to, nil
}

// rangeEnd reads one end of a date range.
func (pa *Param) rangeEnd(raw []byte, half string) (string, int, *RejectError) {
	s, rej := text(raw, pa.Name, half, dateLen, 12*dateLen+2, ReasonBadDate)
	if rej != nil {
		return "", 0, rej
	}
	day, ok := parseDate(s)
	if !ok {
		return "", 0, reject(ReasonBadDate, pa.Name, "parameter %s: %s must be a date written YYYY-MM-DD", pa.Name, half)
	}
	return s, day, nil
}

// inBounds checks a date against the parameter's min and max.
func (pa *Param) inBounds(day int, ev *evaluation, half string) *RejectError {
	if pa.lo == nil && pa.hi == nil {
		return nil
	}
	at := func(b *dateBound) (int, bool) {
		if b == nil || (b.relative && ev.examples) {
			return 0, false
		}
		if b.relative {
			return ev.today() + b.day, true
		}
		return b.day, true
	}
	lo, hasLo := at(pa.lo)
	hi, hasHi := at(pa.hi)
	if (hasLo && day < lo) || (hasHi && day > hi) {
		what := pa.Name
		if half != "" {
			what += " (" + half + ")"
		}
		switch {
		case pa.lo != nil && pa.hi != nil:
			return reject(ReasonOutOfRange, pa.Name, "parameter %s must be between %s and %s", what, pa.DateMin, pa.DateMax)
		case pa.lo != nil:
			return reject(ReasonOutOfRange, pa.Name, "parameter %s must be on or after %s", what, pa.DateMin)
		default:
			return reject(ReasonOutOfRange, pa.Name, "parameter %s must be on or before %s", what, pa.DateMax)
		}
	}
	return nil
}

// text decodes a JSON string value of at most maxChars characters and
// refuses text that is not plain: invalid UTF-8 (which encoding/json would
// silently replace), escaped lone surrogates (which decode to U+FFFD),
// control and format characters. A value whose JSON text is longer than
// maxRaw bytes cannot fit and is refused before it is read. A value that
// is too long is refused with reason long (too_long for strings, the
// type's own reason for fixed formats). half names a date range's end in
// messages.
func text(raw []byte, name, half string, maxChars, maxRaw int, long string) (string, *RejectError) {
	what := name
	if half != "" {
		what = name + " (" + half + ")"
	}
	if raw[0] != '"' {
		return "", wrongType(raw, name, what, "a string")
	}
	if len(raw) > maxRaw {
		return "", reject(long, name, "parameter %s is longer than %d characters", what, maxChars)
	}
	inner := raw[1 : len(raw)-1]
	var s string
	if bytes.IndexByte(inner, '\\') < 0 {
		if !utf8.Valid(inner) {
			return "", reject(ReasonBadValue, name, "parameter %s is not valid UTF-8", what)
		}
		s = string(inner)
	} else {
		if !utf8.Valid(inner) {
			return "", reject(ReasonBadValue, name, "parameter %s is not valid UTF-8", what)
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", reject(ReasonBadParams, name, "parameter %s is not a valid JSON string", what)
		}
	}
	if badRune(s) >= 0 {
		return "", reject(ReasonBadValue, name, "parameter %s contains a control, format or replacement character", what)
	}
	if n := utf8.RuneCountInString(s); n > maxChars {
		return "", reject(long, name, "parameter %s is longer than %d characters", what, maxChars)
	}
	return s, nil
}

// wrongType refuses a value of the wrong JSON type: bad_type, or
// bad_params if it is not JSON at all (checked for short values only).
// what names the value in the message.
func wrongType(raw []byte, name, what, want string) *RejectError {
	if len(raw) <= 1024 && !json.Valid(raw) {
		return reject(ReasonBadParams, name, "parameter %s is not a valid JSON value", what)
	}
	return reject(ReasonBadType, name, "parameter %s must be %s", what, want)
}

// badRune returns the index of the first rune that has no place in a
// parameter value (C0/C1 controls, Unicode format characters such as bidi
// overrides and zero-width spaces, U+FFFD), or -1.
func badRune(s string) int {
	for i, r := range s {
		if r < utf8.RuneSelf {
			if r < 0x20 || r == 0x7f {
				return i
			}
			continue
		}
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
	n := 0
	for i := range s {
		if n == max {
			return strconv.Quote(s[:i] + "…")
		}
		n++
	}
	return strconv.Quote(s)
}
