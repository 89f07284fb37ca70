package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/ferrybridge/ferry/internal/config"
)

// The YAML shape. Pointers tell "absent" from a zero value where the
// difference matters.
type rawPolicy struct {
	Version    int            `yaml:"version"`
	Timezone   *string        `yaml:"timezone"`
	Clients    []rawClient    `yaml:"clients"`
	Operations []rawOperation `yaml:"operations"`
}

type rawClient struct {
	Name           string `yaml:"name"`
	AssertsSubject bool   `yaml:"asserts_subject"`
}

type rawOperation struct {
	Name        string              `yaml:"name"`
	Description string              `yaml:"description"`
	Mode        string              `yaml:"mode"`
	Params      map[string]rawParam `yaml:"params"`
	Statement   string              `yaml:"statement"`
	MaxRows     *int                `yaml:"max_rows"`
	Subject     *string             `yaml:"subject"`
	Reads       map[string][]string `yaml:"reads"`
	Inserts     []string            `yaml:"inserts"`
	Updates     map[string][]string `yaml:"updates"`
	Mask        map[string]string   `yaml:"mask"`
	Limits      *rawLimits          `yaml:"limits"`
	Approval    *rawApproval        `yaml:"approval"`
}

type rawLimits struct {
	PerSubject *string `yaml:"per_subject"`
	PerClient  *string `yaml:"per_client"`
}

type rawApproval struct {
	Within *string `yaml:"within"`
}

type rawParam struct {
	Type        string    `yaml:"type"`
	Description string    `yaml:"description"`
	Required    *bool     `yaml:"required"`
	MaxLen      *int      `yaml:"max_len"`
	Pattern     *string   `yaml:"pattern"`
	Min         yaml.Node `yaml:"min"`
	Max         yaml.Node `yaml:"max"`
	MaxDays     *int      `yaml:"max_days"`
	Values      []string  `yaml:"values"`
	Example     yaml.Node `yaml:"example"`
}

var (
	opNameRE     = regexp.MustCompile(`^[a-z][a-z0-9_.]*$`)
	paramNameRE  = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	clientNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)
	sqlNameRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// loader collects validation errors with their places.
type loader struct {
	file     string
	root     *yaml.Node
	loc      *time.Location
	errs     []error
	warnings []string
}

// fail records a problem at the YAML path, whose elements are mapping keys
// or sequence indexes; field is the dotted name shown to the reader.
func (l *loader) fail(path []string, format string, args ...any) {
	l.failAt(config.Line(l.root, path...), path, format, args...)
}

// failAt records a problem at an explicit line, for a field whose key line
// differs from the line of its value (a parameter's mapping).
func (l *loader) failAt(line int, path []string, format string, args ...any) {
	l.errs = append(l.errs, &config.Error{
		File:  l.file,
		Line:  line,
		Field: fieldName(path),
		Msg:   fmt.Sprintf(format, args...),
	})
}

// failKey records a problem at the line of the key of the last path
// element, for a problem with a whole mapping or list.
func (l *loader) failKey(path []string, format string, args ...any) {
	line := config.Line(l.root, path...)
	if parent := node(l.root, path[:len(path)-1]...); parent != nil && parent.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(parent.Content); i += 2 {
			if parent.Content[i].Value == path[len(path)-1] {
				line = parent.Content[i].Line
				break
			}
		}
	}
	l.failAt(line, path, format, args...)
}

// warn records a warning at the line of the node at at, naming field.
func (l *loader) warn(at, field []string, format string, args ...any) {
	e := &config.Error{File: l.file, Line: config.Line(l.root, at...), Field: fieldName(field), Msg: fmt.Sprintf(format, args...)}
	l.warnings = append(l.warnings, e.Error())
}

// fieldName renders a YAML path as operations[2].params.plate.pattern.
func fieldName(path []string) string {
	var b strings.Builder
	for i, p := range path {
		if i > 0 && (path[i-1] == "operations" || path[i-1] == "clients") {
			b.WriteString("[" + p + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

func parse(file string, data []byte) (*Policy, error) {
	var raw rawPolicy
	root, err := config.Decode(file, data, &raw)
	if err != nil {
		return nil, err
	}
	l := &loader{file: file, root: root}
	if raw.Version != Version {
		l.fail([]string{"version"}, "must be %d", Version)
	}
	if len(raw.Operations) == 0 && node(root, "operations") == nil {
		l.fail([]string{"operations"}, "required (a list, which may be empty)")
	}
	p := &Policy{Version: raw.Version, byName: map[string]*Operation{}, clients: map[string]Client{}}
	p.Timezone, p.loc = l.timezone(raw.Timezone)
	l.loc = p.loc
	l.clients(p, raw.Clients)
	for i := range raw.Operations {
		path := []string{"operations", strconv.Itoa(i)}
		op := l.operation(path, &raw.Operations[i])
		l.add(p, path, op)
	}
	if len(l.errs) > 0 {
		return nil, errors.Join(l.errs...)
	}
	p.warnings = l.warnings
	return p, nil
}

// add adds a valid operation (nil: one with errors) to p, refusing a
// second operation of the same name.
func (l *loader) add(p *Policy, path []string, op *Operation) {
	if op == nil {
		return
	}
	if _, dup := p.byName[op.Name]; dup {
		l.fail(append(path, "name"), "duplicate operation %q", op.Name)
		return
	}
	p.byName[op.Name] = op
	p.Operations = append(p.Operations, op)
}

// clients validates the client list into p.
func (l *loader) clients(p *Policy, raw []rawClient) {
	for i, rc := range raw {
		path := []string{"clients", strconv.Itoa(i), "name"}
		switch {
		case rc.Name == "":
			l.fail(path, "required")
			continue
		case len(rc.Name) > MaxNameLen || !clientNameRE.MatchString(rc.Name):
			l.fail(path, "%q: want lower-case letters, digits, '_' and '-', starting with a letter, at most %d characters", rc.Name, MaxNameLen)
			continue
		}
		if _, dup := p.clients[rc.Name]; dup {
			l.fail(path, "duplicate client %q", rc.Name)
			continue
		}
		c := Client{Name: rc.Name, AssertsSubject: rc.AssertsSubject}
		p.clients[c.Name] = c
		p.Clients = append(p.Clients, c)
	}
}

// timezone resolves the timezone key, defaulting to DefaultTimezone.
func (l *loader) timezone(tz *string) (string, *time.Location) {
	name := DefaultTimezone
	if tz != nil {
		name = *tz
	}
	if name == "" || name == "Local" {
		l.fail([]string{"timezone"}, "%q: want an IANA timezone name such as %s", name, DefaultTimezone)
		return name, time.UTC
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		l.fail([]string{"timezone"}, "%q: not a known IANA timezone name", name)
		return name, time.UTC
	}
	return name, loc
}

// operation validates one operation; it returns nil if it has errors.
func (l *loader) operation(path []string, r *rawOperation) *Operation {
	nerr := len(l.errs)
	at := func(k ...string) []string { return append(slices.Clone(path), k...) }
	op := &Operation{Name: r.Name, Description: r.Description, Mode: Mode(r.Mode), Statement: r.Statement, byName: map[string]*Param{}}

	l.header(op, r, at)

	// Parameters, in the order the file declares them, with the lines of
	// their names.
	var declared []string
	keyLine := map[string]int{}
	for _, k := range keysAt(l.root, at("params")) {
		declared = append(declared, k.name)
		keyLine[k.name] = k.line
		rp := r.Params[k.name]
		if pa := l.param(at("params", k.name), k.line, k.name, &rp); pa != nil {
			pa.index = len(op.Params)
			op.Params = append(op.Params, pa)
			op.byName[k.name] = pa
		}
	}

	if r.Subject != nil {
		op.Subject = *r.Subject
		l.subject(op, declared, at("subject"))
	}

	l.tables(op, r, at)
	l.limits(op, r, at)

	hasSelect := false
	if strings.TrimSpace(r.Statement) == "" {
		l.fail(at("statement"), "required")
	} else if sc, err := scanSQL(r.Statement); err != nil {
		l.fail(at("statement"), "%v", err)
	} else {
		hasSelect = sc.hasSelect
		switch op.Mode {
		case ModeRead:
			if sc.keyword != "SELECT" && sc.keyword != "WITH" {
				l.fail(at("statement"), "a read statement must start with SELECT or WITH, not %q", sc.keyword)
			}
		case ModeWrite:
			if sc.keyword != "INSERT" && sc.keyword != "UPDATE" {
				l.fail(at("statement"), "a write statement must start with INSERT or UPDATE, not %q", sc.keyword)
			}
		}
		l.placeholders(op, r, sc.placeholders, declared, keyLine, at)
	}

	// Declarations the language will require; absent ones are warnings
	// for now (docs/policy.md, "Table declarations").
	if len(l.errs) == nerr {
		switch op.Mode {
		case ModeRead:
			if node(l.root, at("reads")...) == nil {
				l.warn(path, at("reads"), "operation %s declares no reads (table: [columns]); a later version requires it", op.Name)
			}
		case ModeWrite:
			if node(l.root, at("inserts")...) == nil && node(l.root, at("updates")...) == nil {
				l.warn(path, at("inserts"), "operation %s declares neither inserts nor updates; a later version requires one", op.Name)
			}
			if hasSelect && node(l.root, at("reads")...) == nil {
				l.warn(path, at("reads"), "operation %s's statement reads (SELECT) but declares no reads; a later version requires it", op.Name)
			}
		}
	}
	if len(l.errs) > nerr {
		return nil
	}
	return op
}

// header validates an operation's name, mode and max_rows.
func (l *loader) header(op *Operation, r *rawOperation, at func(...string) []string) {
	switch {
	case r.Name == "":
		l.fail(at("name"), "required")
	case len(r.Name) > MaxNameLen || !opNameRE.MatchString(r.Name):
		l.fail(at("name"), "%q: want lower-case letters, digits, '_' and '.', starting with a letter, at most %d characters", r.Name, MaxNameLen)
	}

	switch op.Mode {
	case ModeRead:
		op.MaxRows = DefaultMaxRows
		if r.MaxRows != nil {
			if *r.MaxRows < 1 || *r.MaxRows > MaxMaxRows {
				l.fail(at("max_rows"), "must be between 1 and %d", MaxMaxRows)
			}
			op.MaxRows = *r.MaxRows
		}
	case ModeWrite:
		if r.MaxRows != nil {
			l.fail(at("max_rows"), "only read operations have max_rows")
		}
	case "":
		l.fail(at("mode"), "required (read or write)")
	default:
		l.fail(at("mode"), "%q: want read or write", r.Mode)
	}
}

// subject checks that op.Subject names a declared id_number parameter.
func (l *loader) subject(op *Operation, declared []string, path []string) {
	pa, ok := op.byName[op.Subject]
	switch {
	case !slices.Contains(declared, op.Subject):
		l.fail(path, "%q is not a declared parameter", op.Subject)
	case ok && pa.Type != TypeIDNumber:
		l.fail(path, "parameter %s has type %s: a subject-bound parameter must have type id_number", op.Subject, pa.Type)
	}
}

// placeholders checks a statement's placeholders against the parameters
// and sets the operation's Placeholders and slots. A date_range
// parameter p is bound as :p_from and :p_to, both of which must be used.
func (l *loader) placeholders(op *Operation, r *rawOperation, used, declared []string, keyLine map[string]int, at func(...string) []string) {
	names := map[string]slot{}
	for _, pa := range op.Params {
		for half, n := range placeholderNames(pa) {
			if other, dup := names[n]; dup {
				l.failAt(keyLine[pa.Name], at("params", pa.Name), "binds placeholder :%s, which parameter %s also binds", n, op.Params[other.param].Name)
				continue
			}
			h := 0
			if pa.Type == TypeDateRange {
				h = half + 1
			}
			names[n] = slot{param: pa.index, half: h}
		}
	}
	for _, name := range used {
		sl, ok := names[name]
		if !ok {
			if pa, ok := op.byName[name]; ok && pa.Type == TypeDateRange {
				l.fail(at("statement"), "placeholder :%s: a date_range parameter binds :%s_from and :%s_to", name, name, name)
			} else if !slices.Contains(declared, name) && !rangeHalf(name, declared, r) {
				l.fail(at("statement"), "placeholder :%s is not a declared parameter", name)
			}
			continue
		}
		op.Placeholders = append(op.Placeholders, name)
		op.slots = append(op.slots, sl)
	}
	for _, pa := range op.Params {
		for _, n := range placeholderNames(pa) {
			if !slices.Contains(used, n) {
				l.failAt(keyLine[pa.Name], at("params", pa.Name), "declared but not used in the statement (as :%s)", n)
				break
			}
		}
	}
}

// rangeHalf reports whether a placeholder is a half of a declared
// date_range parameter, which may have failed validation (and is then
// reported once, not again for each placeholder).
func rangeHalf(name string, declared []string, r *rawOperation) bool {
	for _, suffix := range []string{"_from", "_to"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && slices.Contains(declared, base) && r.Params[base].Type == TypeDateRange {
			return true
		}
	}
	return false
}

// placeholderNames returns the placeholders a parameter binds.
func placeholderNames(pa *Param) []string {
	if pa.Type == TypeDateRange {
		return []string{pa.Name + "_from", pa.Name + "_to"}
	}
	return []string{pa.Name}
}

// tables validates reads, inserts, updates and mask.
func (l *loader) tables(op *Operation, r *rawOperation, at func(...string) []string) {
	if r.Reads != nil || node(l.root, at("reads")...) != nil {
		op.Reads = l.tableColumns(at("reads"), r.Reads)
	}
	if r.Inserts != nil {
		if op.Mode == ModeRead {
			l.failKey(at("inserts"), "only write operations have inserts")
		}
		if len(r.Inserts) == 0 {
			l.failKey(at("inserts"), "an empty list: leave inserts out instead")
		}
		for i, t := range r.Inserts {
			p := at("inserts", strconv.Itoa(i))
			switch {
			case !sqlName(t):
				l.fail(p, "%q: want an SQL name ([A-Za-z_][A-Za-z0-9_]*, at most %d characters)", t, MaxNameLen)
			case slices.Index(r.Inserts, t) < i:
				l.fail(p, "duplicate table %q", t)
			}
		}
		op.Inserts = r.Inserts
	}
	if r.Updates != nil || node(l.root, at("updates")...) != nil {
		if op.Mode == ModeRead {
			l.failKey(at("updates"), "only write operations have updates")
		}
		op.Updates = l.tableColumns(at("updates"), r.Updates)
		if len(op.Updates) == 0 {
			l.failKey(at("updates"), "no tables: leave updates out instead")
		}
		for _, k := range keysAt(l.root, at("updates")) {
			if len(r.Updates[k.name]) == 0 {
				l.failKey(at("updates", k.name), "an update must list the columns it sets")
			}
		}
	}
	if r.Mask != nil || node(l.root, at("mask")...) != nil {
		if op.Mode == ModeWrite {
			l.failKey(at("mask"), "only read operations have mask")
		}
		op.Mask = map[string]string{}
		for _, k := range keysAt(l.root, at("mask")) {
			kind := r.Mask[k.name]
			switch {
			case !sqlName(k.name):
				l.failAt(k.line, at("mask", k.name), "%q: want a result column name ([A-Za-z_][A-Za-z0-9_]*, at most %d characters)", k.name, MaxNameLen)
			case !slices.Contains(MaskKinds, kind):
				l.fail(at("mask", k.name), "unknown mask %q: want %s", kind, strings.Join(MaskKinds, ", "))
			default:
				op.Mask[k.name] = kind
			}
		}
	}
}

// tableColumns validates a mapping from table names to column lists.
func (l *loader) tableColumns(path []string, m map[string][]string) map[string][]string {
	out := map[string][]string{}
	for _, k := range keysAt(l.root, path) {
		p := append(slices.Clone(path), k.name)
		if !sqlName(k.name) {
			l.failAt(k.line, p, "%q: want a table name ([A-Za-z_][A-Za-z0-9_]*, at most %d characters)", k.name, MaxNameLen)
			continue
		}
		cols := m[k.name]
		for i, c := range cols {
			cp := append(slices.Clone(p), strconv.Itoa(i))
			switch {
			case !sqlName(c):
				l.fail(cp, "%q: want a column name ([A-Za-z_][A-Za-z0-9_]*, at most %d characters)", c, MaxNameLen)
			case slices.Index(cols, c) < i:
				l.fail(cp, "duplicate column %q", c)
			}
		}
		if cols == nil {
			cols = []string{}
		}
		out[k.name] = cols
	}
	return out
}

func sqlName(s string) bool { return len(s) <= MaxNameLen && sqlNameRE.MatchString(s) }

// limits validates limits and approval.
func (l *loader) limits(op *Operation, r *rawOperation, at func(...string) []string) {
	if r.Limits != nil {
		rate := func(s *string, key string) Rate {
			if s == nil {
				return Rate{}
			}
			rt, err := ParseRate(*s)
			if err != nil {
				l.fail(at("limits", key), "%v", err)
			}
			return rt
		}
		op.Limits.PerSubject = rate(r.Limits.PerSubject, "per_subject")
		op.Limits.PerClient = rate(r.Limits.PerClient, "per_client")
	}
	if r.Approval != nil || node(l.root, at("approval")...) != nil {
		if op.Mode != ModeWrite {
			l.failKey(at("approval"), "only write operations have approval")
			return
		}
		op.Approval = &Approval{Within: DefaultApprovalWithin}
		if r.Approval != nil && r.Approval.Within != nil {
			d, err := parseWithin(*r.Approval.Within)
			if err != nil {
				l.fail(at("approval", "within"), "%v", err)
			}
			op.Approval.Within = d
		}
	}
}

// ParseRate reads a rate limit written N/duration ("10/1m", "1000/1h"):
// N from 1 to 1e6 requests per a Go duration from 1s to 24h.
func ParseRate(s string) (Rate, error) {
	num, per, ok := strings.Cut(s, "/")
	if !ok {
		return Rate{}, fmt.Errorf("%q: want N/duration, such as 10/1m", s)
	}
	n, err := strconv.Atoi(num)
	if err != nil || !digits(num) || n < 1 || n > MaxRateN {
		return Rate{}, fmt.Errorf("%q: want a count from 1 to %d before the /", s, MaxRateN)
	}
	d, err := time.ParseDuration(per)
	if err != nil || d < MinRatePer || d > MaxRatePer {
		return Rate{}, fmt.Errorf("%q: want a duration from 1s to 24h after the /, such as 1m", s)
	}
	return Rate{N: n, Per: d}, nil
}

// parseWithin reads approval.within: a Go duration or whole days ("3d").
func parseWithin(s string) (time.Duration, error) {
	var d time.Duration
	if num, ok := strings.CutSuffix(s, "d"); ok && num != "" && digits(num) && len(num) <= 4 {
		n, _ := strconv.Atoi(num)
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("%q: want a duration such as 72h or 3d", s)
		}
	}
	if d < MinApprovalWithin || d > MaxApprovalWithin {
		return 0, fmt.Errorf("%q: want a duration from 1m to 30d", s)
	}
	return d, nil
}

// param validates one parameter; it returns nil if it has errors.
func (l *loader) param(path []string, line int, name string, r *rawParam) *Param {
	nerr := len(l.errs)
	at := func(k string) []string { return append(slices.Clone(path), k) }
	if len(name) > MaxNameLen || !paramNameRE.MatchString(name) {
		l.failAt(line, path, "parameter name %q: want lower-case letters, digits and '_', starting with a letter, at most %d characters", name, MaxNameLen)
	}
	pa := &Param{Name: name, Type: r.Type, Description: r.Description, Required: true}
	if r.Required != nil {
		pa.Required = *r.Required
	}
	hasMin, hasMax := present(&r.Min), present(&r.Max)
	// notFor refuses the keys a type does not take.
	notFor := func(keys ...string) {
		for _, k := range keys {
			var set bool
			switch k {
			case "max_len":
				set = r.MaxLen != nil
			case "pattern":
				set = r.Pattern != nil
			case "min":
				set = hasMin
			case "max":
				set = hasMax
			case "max_days":
				set = r.MaxDays != nil
			case "values":
				set = r.Values != nil
			}
			if set {
				l.fail(at(k), "not allowed for type %s", r.Type)
			}
		}
	}
	switch r.Type {
	case TypeString:
		notFor("min", "max", "max_days", "values")
		switch {
		case r.MaxLen == nil:
			l.fail(at("max_len"), "required for type string")
		case *r.MaxLen < 1 || *r.MaxLen > MaxStringLen:
			l.fail(at("max_len"), "must be between 1 and %d", MaxStringLen)
		default:
			pa.MaxLen = *r.MaxLen
			pa.maxChars = pa.MaxLen
		}
		if r.Pattern != nil {
			pa.pattern = *r.Pattern
			pa.Pattern = "^(?:" + *r.Pattern + ")$"
			re, err := regexp.Compile(pa.Pattern)
			switch {
			case *r.Pattern == "":
				l.fail(at("pattern"), "empty; leave pattern out instead")
			case err != nil:
				l.fail(at("pattern"), "not a valid RE2 expression: %v", err)
			default:
				pa.re = re
			}
		}
	case TypeInt:
		notFor("max_len", "pattern", "max_days", "values")
		pa.Min = l.intBound(at("min"), &r.Min)
		pa.Max = l.intBound(at("max"), &r.Max)
		if pa.Min != nil && pa.Max != nil && *pa.Min > *pa.Max {
			l.fail(at("min"), "min %d is above max %d", *pa.Min, *pa.Max)
		}
	case TypeEnum:
		notFor("max_len", "pattern", "min", "max", "max_days")
		switch {
		case len(r.Values) == 0:
			l.fail(at("values"), "required for type enum: a non-empty list")
		case len(r.Values) > MaxEnumValues:
			l.fail(at("values"), "more than %d values", MaxEnumValues)
		}
		for i, v := range r.Values {
			switch {
			case v == "" || !utf8.ValidString(v) || len(v) > MaxStringLen || badRune(v) >= 0:
				l.fail(append(at("values"), strconv.Itoa(i)), "values must be non-empty printable text")
			case slices.Index(r.Values, v) < i:
				l.fail(append(at("values"), strconv.Itoa(i)), "duplicate value %q", v)
			}
			pa.maxChars = max(pa.maxChars, utf8.RuneCountInString(v))
		}
		pa.Values = r.Values
	case TypeDate, TypeDateRange:
		notFor("max_len", "pattern", "values")
		if r.Type == TypeDate {
			notFor("max_days")
		}
		pa.DateMin, pa.lo = l.dateBound(at("min"), &r.Min)
		pa.DateMax, pa.hi = l.dateBound(at("max"), &r.Max)
		if err := boundOrder(pa.lo, pa.hi); err != nil {
			l.fail(at("min"), "min %s is after max %s", pa.DateMin, pa.DateMax)
		}
		pa.maxChars = dateLen
		if r.MaxDays != nil {
			if *r.MaxDays < 1 || *r.MaxDays > MaxRelativeDays {
				l.fail(at("max_days"), "must be between 1 and %d", MaxRelativeDays)
			}
			pa.MaxDays = *r.MaxDays
		}
	case TypeIDNumber, TypePlate, TypeMobile, TypePlateType:
		notFor("max_len", "pattern", "min", "max", "max_days", "values")
		pa.maxChars = map[string]int{TypeIDNumber: idNumberLen, TypePlate: plateMaxChars, TypeMobile: mobileLen, TypePlateType: plateTypeLen}[r.Type]
	case "":
		l.fail(at("type"), "required (%s)", strings.Join(Types, ", "))
	default:
		l.fail(at("type"), "unknown type %q: want %s", r.Type, strings.Join(Types, ", "))
	}
	pa.longReason = map[string]string{
		TypeString: ReasonTooLong, TypeEnum: ReasonNotInEnum, TypeDate: ReasonBadDate,
		TypeDateRange: ReasonTooLong, TypeIDNumber: ReasonBadIDNumber, TypePlate: ReasonBadPlate,
		TypeMobile: ReasonBadMobile, TypePlateType: ReasonBadPlateType,
	}[r.Type]
	// A character may take 12 bytes of JSON: an escaped surrogate pair.
	pa.maxRawJSON = 12*pa.maxChars + 2
	if pa.Type == TypeDateRange {
		pa.maxRawJSON = dateRangeMaxJSON
	}
	if len(l.errs) > nerr {
		return nil
	}
	if r.Example.Kind != 0 {
		ex, err := exampleJSON(&r.Example)
		if err == nil {
			ev := evaluation{loc: l.loc, examples: true}
			if _, _, rej := pa.check(ex, &ev); rej != nil {
				err = errors.New(rej.Message)
			}
		}
		if err != nil {
			l.fail(at("example"), "not a valid value: %v", err)
			return nil
		}
		pa.Example = ex
	}
	return pa
}

// present reports whether an optional scalar was given (null counts as
// absent).
func present(n *yaml.Node) bool {
	return n.Kind != 0 && !(n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// intBound reads an int parameter's min or max.
func (l *loader) intBound(path []string, n *yaml.Node) *int64 {
	if !present(n) {
		return nil
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!int" {
		if v, err := strconv.ParseInt(n.Value, 10, 64); err == nil {
			return &v
		}
	}
	l.fail(path, "want a decimal integer within 64 bits, got %s", nodeText(n))
	return nil
}

// dateBound reads a date or date_range parameter's min or max.
func (l *loader) dateBound(path []string, n *yaml.Node) (string, *dateBound) {
	if !present(n) {
		return "", nil
	}
	if n.Kind == yaml.ScalarNode && (n.Tag == "!!str" || n.Tag == "!!timestamp") {
		b, err := parseDateBound(n.Value)
		if err == nil {
			return n.Value, b
		}
		l.fail(path, "%v", err)
		return "", nil
	}
	l.fail(path, "want a date YYYY-MM-DD, today, today-Nd or today+Nd, got %s", nodeText(n))
	return "", nil
}

// nodeText describes a YAML node for a message.
func nodeText(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return strconv.Quote(n.Value)
	}
	if n.Kind == yaml.MappingNode {
		return "a mapping"
	}
	return "a list"
}

// exampleJSON turns a YAML example into the JSON a client would send: a
// string, an integer, or (for a date range) a mapping of strings.
func exampleJSON(n *yaml.Node) (json.RawMessage, error) {
	if n.Kind == yaml.MappingNode {
		var b strings.Builder
		b.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Kind != yaml.ScalarNode || (v.Tag != "!!str" && v.Tag != "!!timestamp") {
				return nil, errors.New("want a mapping of strings")
			}
			if i > 0 {
				b.WriteByte(',')
			}
			kj, _ := json.Marshal(k.Value)
			vj, _ := json.Marshal(v.Value)
			b.Write(kj)
			b.WriteByte(':')
			b.Write(vj)
		}
		b.WriteByte('}')
		return json.RawMessage(b.String()), nil
	}
	if n.Kind != yaml.ScalarNode {
		return nil, errors.New("want a single value")
	}
	switch n.Tag {
	case "!!int":
		if _, err := strconv.ParseInt(n.Value, 10, 64); err != nil {
			return nil, errors.New("want a decimal integer")
		}
		return json.RawMessage(n.Value), nil
	case "!!str", "!!timestamp":
		return json.Marshal(n.Value)
	default:
		return nil, fmt.Errorf("want a string or an integer, not %s", strings.TrimPrefix(n.Tag, "!!"))
	}
}

// key is a mapping key and its line.
type key struct {
	name string
	line int
}

// keysAt returns the keys of the mapping at path, in file order.
func keysAt(root *yaml.Node, path []string) []key {
	n := node(root, path...)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	var out []key
	for i := 0; i+1 < len(n.Content); i += 2 {
		out = append(out, key{n.Content[i].Value, n.Content[i].Line})
	}
	return out
}

// node returns the node at path below root (mapping keys or sequence
// indexes), or nil.
func node(root *yaml.Node, path ...string) *yaml.Node {
	n := root
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, p := range path {
		if n == nil {
			return nil
		}
		var next *yaml.Node
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == p {
					next = n.Content[i+1]
					break
				}
			}
		case yaml.SequenceNode:
			if i, err := strconv.Atoi(p); err == nil && i >= 0 && i < len(n.Content) {
				next = n.Content[i]
			}
		}
		n = next
	}
	return n
}
