// Package config decodes ferry's YAML files (agent configs and policies)
// strictly: unknown keys, duplicate keys and wrong types are errors, and every
// error names the file, the line and the field.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize caps the size of a config or policy file.
const MaxFileSize = 4 << 20

// Error is a problem at a place in a file.
type Error struct {
	File  string
	Line  int    // 0 if unknown
	Field string // dotted path such as "operations[2].params.plate", if known
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// FieldError returns an *Error for the value at path below root (see
// Line), naming its line and its field as a dotted path with sequence
// indexes in brackets ("clients[1].name"). Callers use it for values that
// decode but fail their own validation.
func FieldError(file string, root *yaml.Node, msg string, path ...string) *Error {
	var field strings.Builder
	for i, p := range path {
		switch {
		case i == 0:
			field.WriteString(p)
		case isIndex(p):
			field.WriteString("[" + p + "]")
		default:
			field.WriteString("." + p)
		}
	}
	return &Error{File: file, Line: Line(root, path...), Field: field.String(), Msg: msg}
}

func isIndex(p string) bool {
	_, err := strconv.Atoi(p)
	return err == nil
}

// ReadFile reads a config file, refusing files over MaxFileSize.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("file larger than %d bytes", MaxFileSize)}
	}
	return data, nil
}

// Decode decodes one YAML document from data into v strictly, and also
// returns the document's node tree so callers can find the line of a field
// when their own validation fails (see Line). file names the source in
// errors, which are *Error values naming the line and, where the document
// parsed, the field.
func Decode(file string, data []byte, v any) (*yaml.Node, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(file, nil, err)
	}
	if root.Kind == 0 {
		return nil, &Error{File: file, Msg: "empty document"}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return nil, yamlError(file, &root, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &Error{File: file, Msg: "more than one YAML document"}
	}
	return &root, nil
}

// yamlError turns yaml.v3's "yaml: line N: msg" errors into *Error values,
// naming the field at that line when root is known, and rewording the
// messages that would otherwise show Go type names.
func yamlError(file string, root *yaml.Node, err error) error {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	e := parseYAMLMsg(file, msg)
	if root != nil && e.Line > 0 {
		e.Field = FieldAt(root, e.Line)
	}
	e.Msg = reword(e.Msg)
	return e
}

func parseYAMLMsg(file, msg string) *Error {
	msg = strings.TrimPrefix(msg, "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, tail, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				return &Error{File: file, Line: n, Msg: tail}
			}
		}
	}
	return &Error{File: file, Msg: msg}
}

// yamlKinds names yaml.v3's Go target types the way a config author reads
// them.
var yamlKinds = map[string]string{
	"int": "an integer", "int64": "an integer", "int32": "an integer", "uint": "a non-negative integer",
	"uint64": "a non-negative integer", "uint32": "a non-negative integer", "float64": "a number",
	"bool": "true or false", "string": "a string",
}

// reword replaces yaml.v3 messages that name Go types with plain ones:
// "field x not found in type pkg.T" becomes "unknown key x", and
// "cannot unmarshal !!str `abc` into int" becomes "want an integer, got
// \"abc\"" (or "want a list" / "want a mapping" for structured targets).
func reword(msg string) string {
	if rest, ok := strings.CutPrefix(msg, "field "); ok {
		if name, _, ok := strings.Cut(rest, " not found in type "); ok {
			return "unknown key " + strconv.Quote(name)
		}
	}
	if rest, ok := strings.CutPrefix(msg, "cannot unmarshal "); ok {
		if got, into, ok := strings.Cut(rest, " into "); ok {
			want, known := yamlKinds[into]
			switch {
			case known:
			case strings.HasPrefix(into, "[]"):
				want = "a list"
			case strings.HasPrefix(into, "map[") || strings.Contains(into, "."):
				want = "a mapping"
			default:
				want = "a value of another type"
			}
			// got is a YAML tag and, for scalars, the value in backquotes.
			if _, v, ok := strings.Cut(got, " `"); ok {
				return fmt.Sprintf("want %s, got %q", want, strings.TrimSuffix(v, "`"))
			}
			return fmt.Sprintf("want %s, got %s", want, yamlTagName(got))
		}
	}
	return msg
}

// yamlTagName names a YAML core tag such as !!seq.
func yamlTagName(tag string) string {
	switch tag {
	case "!!seq":
		return "a list"
	case "!!map":
		return "a mapping"
	case "!!null":
		return "null"
	}
	return strings.TrimPrefix(tag, "!!")
}

// FieldAt returns the dotted path ("batch.max_delay", "clients[1].name") of
// the field on line: the mapping key on that line, else the deepest value
// starting there; "" if nothing does.
func FieldAt(root *yaml.Node, line int) string {
	n := root
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	path, _ := fieldAt(n, line, "")
	return path
}

func fieldAt(n *yaml.Node, line int, prefix string) (string, bool) {
	if n == nil {
		return "", false
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if prefix != "" {
				p = prefix + "." + k.Value
			}
			// A key on the line names the field, even when its value (a
			// flow list, say) starts on the same line.
			if k.Line == line {
				return p, true
			}
			if deeper, ok := fieldAt(v, line, p); ok {
				return deeper, true
			}
			if v.Line == line {
				return p, true
			}
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", prefix, i)
			if deeper, ok := fieldAt(item, line, p); ok {
				return deeper, true
			}
			if item.Line == line {
				return p, true
			}
		}
	}
	return "", false
}

// Line returns the line of the value at path below root, where path
// elements are mapping keys or, for sequences, decimal indexes. It returns
// the line of the deepest node found, so a missing key reports its parent.
func Line(root *yaml.Node, path ...string) int {
	n := root
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n == nil {
		return 0
	}
	line := n.Line
	for _, p := range path {
		var next *yaml.Node
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == p {
					next = n.Content[i+1]
					line = n.Content[i].Line
					break
				}
			}
		case yaml.SequenceNode:
			if i, err := strconv.Atoi(p); err == nil && i >= 0 && i < len(n.Content) {
				next = n.Content[i]
			}
		}
		if next == nil {
			return line
		}
		n = next
		line = n.Line
	}
	return line
}

// Duration is a time.Duration written in YAML as a Go duration string
// ("5ms", "24h"), or as a whole number of days ("180d") for the long
// periods of retention rules.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration such as \"5s\"", n.Line)
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: invalid duration %q (want a number with a unit, such as \"500ms\", \"5s\" or \"180d\")", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// maxDays bounds a duration in days: about 100 years, far inside int64
// nanoseconds.
const maxDays = 36600

// ParseDuration parses a Go duration string, or a whole number of days
// written with the suffix "d" ("180d").
func ParseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > maxDays || strconv.Itoa(n) != days {
			return 0, fmt.Errorf("invalid duration %q: want a whole number of days, at most %d", s, maxDays)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Resolve returns p relative to the directory of the config file at base,
// unless p is absolute or empty.
func Resolve(base, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(base), p)
}
