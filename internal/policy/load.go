package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/ferrybridge/ferry/internal/config"
)

// The YAML shape. Pointers tell "absent" from a zero value where the
// difference matters.
type rawPolicy struct {
	Version    int            `yaml:"version"`
	Operations []rawOperation `yaml:"operations"`
}

type rawOperation struct {
	Name        string              `yaml:"name"`
	Description string              `yaml:"description"`
	Mode        string              `yaml:"mode"`
	Params      map[string]rawParam `yaml:"params"`
	Statement   string              `yaml:"statement"`
	MaxRows     *int                `yaml:"max_rows"`
}

type rawParam struct {
	Type        string    `yaml:"type"`
	Description string    `yaml:"description"`
	Required    *bool     `yaml:"required"`
	MaxLen      *int      `yaml:"max_len"`
	Pattern     *string   `yaml:"pattern"`
	Min         *int64    `yaml:"min"`
	Max         *int64    `yaml:"max"`
	Values      []string  `yaml:"values"`
	Example     yaml.Node `yaml:"example"`
}

var (
	opNameRE    = regexp.MustCompile(`^[a-z][a-z0-9_.]*$`)
	paramNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
)

// loader collects validation errors with their places.
type loader struct {
	file string
	root *yaml.Node
	errs []error
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

// fieldName renders a YAML path as operations[2].params.plate.pattern.
func fieldName(path []string) string {
	var b strings.Builder
	for i, p := range path {
		if i > 0 && path[i-1] == "operations" {
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
	p := &Policy{Version: raw.Version, byName: map[string]*Operation{}}
	for i := range raw.Operations {
		path := []string{"operations", strconv.Itoa(i)}
		op := l.operation(path, &raw.Operations[i])
		if op == nil {
			continue
		}
		if _, dup := p.byName[op.Name]; dup {
			l.fail(append(path, "name"), "duplicate operation %q", op.Name)
			continue
		}
		p.byName[op.Name] = op
		p.Operations = append(p.Operations, op)
	}
	if len(l.errs) > 0 {
		return nil, errors.Join(l.errs...)
	}
	return p, nil
}

// operation validates one operation; it returns nil if it has errors.
func (l *loader) operation(path []string, r *rawOperation) *Operation {
	nerr := len(l.errs)
	at := func(k ...string) []string { return append(slices.Clone(path), k...) }
	op := &Operation{Name: r.Name, Description: r.Description, Mode: Mode(r.Mode), Statement: r.Statement, byName: map[string]*Param{}}

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

	// Parameters, in the order the file declares them, with the lines of
	// their names.
	var declared []string
	keyLine := map[string]int{}
	if pn := node(l.root, at("params")...); pn != nil && pn.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(pn.Content); i += 2 {
			name := pn.Content[i].Value
			declared = append(declared, name)
			keyLine[name] = pn.Content[i].Line
			rp := r.Params[name]
			if pa := l.param(at("params", name), keyLine[name], name, &rp); pa != nil {
				op.Params = append(op.Params, pa)
				op.byName[name] = pa
			}
		}
	}

	if strings.TrimSpace(r.Statement) == "" {
		l.fail(at("statement"), "required")
	} else if sc, err := scanSQL(r.Statement); err != nil {
		l.fail(at("statement"), "%v", err)
	} else {
		op.Placeholders = sc.placeholders
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
		for _, name := range sc.placeholders {
			if _, ok := r.Params[name]; !ok {
				l.fail(at("statement"), "placeholder :%s is not a declared parameter", name)
			}
		}
		for _, name := range declared {
			if !slices.Contains(sc.placeholders, name) {
				l.failAt(keyLine[name], at("params", name), "declared but not used in the statement")
			}
		}
	}
	if len(l.errs) > nerr {
		return nil
	}
	return op
}

// param validates one parameter; it returns nil if it has errors.
func (l *loader) param(path []string, line int, name string, r *rawParam) *Param {
	nerr := len(l.errs)
	at := func(k string) []string { return append(slices.Clone(path), k) }
	if len(name) > MaxNameLen || !paramNameRE.MatchString(name) {
		l.failAt(line, path, "parameter name %q: want lower-case letters, digits and '_', starting with a letter, at most %d characters", name, MaxNameLen)
	}
	pa := &Param{Name: name, Type: r.Type, Description: r.Description, Required: true, Min: r.Min, Max: r.Max}
	if r.Required != nil {
		pa.Required = *r.Required
	}
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
				set = r.Min != nil
			case "max":
				set = r.Max != nil
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
		notFor("min", "max", "values")
		switch {
		case r.MaxLen == nil:
			l.fail(at("max_len"), "required for type string")
		case *r.MaxLen < 1 || *r.MaxLen > MaxStringLen:
			l.fail(at("max_len"), "must be between 1 and %d", MaxStringLen)
		default:
			pa.MaxLen = *r.MaxLen
		}
		if r.Pattern != nil {
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
		notFor("max_len", "pattern", "values")
		if r.Min != nil && r.Max != nil && *r.Min > *r.Max {
			l.fail(at("min"), "min %d is above max %d", *r.Min, *r.Max)
		}
	case TypeEnum:
		notFor("max_len", "pattern", "min", "max")
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
		}
		pa.Values = r.Values
	case TypeDate:
		notFor("max_len", "pattern", "min", "max", "values")
	case "":
		l.fail(at("type"), "required (string, int, enum or date)")
	default:
		l.fail(at("type"), "unknown type %q: want string, int, enum or date", r.Type)
	}
	if len(l.errs) > nerr {
		return nil
	}
	if r.Example.Kind != 0 {
		ex, err := exampleJSON(&r.Example)
		if err == nil {
			_, rej := pa.check(ex)
			if rej != nil {
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

// exampleJSON turns a YAML scalar into the JSON a client would send.
func exampleJSON(n *yaml.Node) (json.RawMessage, error) {
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
