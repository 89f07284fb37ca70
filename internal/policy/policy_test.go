package policy

import (
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ferrybridge/ferry/internal/config"
	"github.com/ferrybridge/ferry/internal/sample"
)

func loadOK(t testing.TB) *Policy {
	t.Helper()
	p, err := Load(filepath.Join("testdata", "ok.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return p
}

func TestLoad_ok(t *testing.T) {
	p := loadOK(t)
	if p.Version != 1 || len(p.Operations) != 3 {
		t.Fatalf("version %d, %d operations", p.Version, len(p.Operations))
	}
	find, ok := p.Operation("people.find")
	if !ok || find.Mode != ModeRead || find.MaxRows != 5 || find.Description != "find a person" {
		t.Fatalf("people.find = %+v", find)
	}
	var names []string
	for _, pa := range find.Params {
		names = append(names, pa.Name)
	}
	if want := []string{"id_number", "name", "age", "colour", "since"}; !slices.Equal(names, want) {
		t.Errorf("params in order %v, want declaration order %v", names, want)
	}
	if want := []string{"id_number", "name", "age", "colour", "since"}; !slices.Equal(find.Placeholders, want) {
		t.Errorf("placeholders %v, want %v (comments and strings skipped)", find.Placeholders, want)
	}
	id, _ := find.Param("id_number")
	if id.Pattern != "^(?:[0-9]{17}[0-9X])$" || !id.Required || id.MaxLen != 18 || string(id.Example) != `"11010119800101001X"` {
		t.Errorf("id_number = %+v", id)
	}
	if since, _ := find.Param("since"); string(since.Example) != `"2024-02-29"` || since.Required {
		t.Errorf("since = %+v", since)
	}
	if age, _ := find.Param("age"); *age.Min != 0 || *age.Max != 150 || string(age.Example) != "42" {
		t.Errorf("age = %+v", age)
	}
	if c, _ := find.Param("colour"); !slices.Equal(c.Values, []string{"red", "green"}) {
		t.Errorf("colour = %+v", c)
	}
	add, _ := p.Operation("notes.add")
	if add.Mode != ModeWrite || add.MaxRows != 0 || !slices.Equal(add.Placeholders, []string{"n", "body"}) {
		t.Errorf("notes.add = %+v", add)
	}
	if ping, _ := p.Operation("ping"); ping.MaxRows != DefaultMaxRows || len(ping.Params) != 0 {
		t.Errorf("ping = %+v", ping)
	}
	if _, ok := p.Operation("nope"); ok {
		t.Error("Operation found an undeclared name")
	}
}

func TestLoad_sample(t *testing.T) {
	p, err := Parse("sample/policy.yaml", sample.Policy())
	if err != nil {
		t.Fatalf("the sample policy does not load: %v", err)
	}
	for _, name := range []string{"violations.query", "licence.status", "exam.slots", "exam.book"} {
		if _, ok := p.Operation(name); !ok {
			t.Errorf("sample policy lacks %s", name)
		}
	}
	for _, op := range p.Operations {
		// Every example in the sample is a valid request on its own.
		params := map[string]json.RawMessage{}
		for _, pa := range op.Params {
			if pa.Example == nil {
				t.Errorf("%s.%s has no example", op.Name, pa.Name)
				continue
			}
			params[pa.Name] = pa.Example
		}
		b, _ := json.Marshal(params)
		// The portal asserts the subject; the examples are one person's.
		var subject string
		if op.Subject != "" {
			_ = json.Unmarshal(params[op.Subject], &subject)
		}
		if _, err := p.Evaluate(Request{Client: "portal", Subject: subject, Operation: op.Name, Params: b}); err != nil {
			t.Errorf("%s with its examples: %v", op.Name, err)
		}
	}
}

func TestLoad_missingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "none.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v, want a wrapped ErrNotExist", err)
	}
}

// TestLoad_errors loads every fixture in testdata/load. Each starts with a
// comment "# want LINE FIELD MESSAGE" ("-" for no field) and must fail
// with exactly one error at that place.
func TestLoad_errors(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "load", "*.yaml"))
	if err != nil || len(files) < 30 {
		t.Fatalf("fixtures: %v, %d files", err, len(files))
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(data), "\n")
			f := strings.SplitN(strings.TrimPrefix(first, "# want "), " ", 3)
			if len(f) != 3 {
				t.Fatalf("bad want line %q", first)
			}
			line, _ := strconv.Atoi(f[0])
			field, msg := f[1], f[2]
			if field == "-" {
				field = ""
			}

			_, err = Load(file)
			if err == nil {
				t.Fatal("loaded, want an error")
			}
			var all []error
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				all = j.Unwrap()
			} else {
				all = []error{err}
			}
			if len(all) != 1 {
				t.Fatalf("%d errors, want 1:\n%v", len(all), err)
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v (%T), want *config.Error", err, err)
			}
			if ce.File != file || ce.Line != line || ce.Field != field || !strings.Contains(ce.Msg, msg) {
				t.Fatalf("got %q\n(file %s line %d field %q)\nwant line %d field %q containing %q", err, ce.File, ce.Line, ce.Field, line, field, msg)
			}
			prefix := file + ":" + strconv.Itoa(line) + ": "
			if field != "" {
				prefix += field + ": "
			}
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Fatalf("message %q does not start with %q", err, prefix)
			}
		})
	}
}

func TestParse_manyErrors(t *testing.T) {
	_, err := Parse("p.yaml", []byte("version: 3\noperations:\n  - name: A\n    mode: read\n    statement: DELETE FROM t\n"))
	for _, want := range []string{"p.yaml:1: version:", "p.yaml:3: operations[0].name:", "p.yaml:5: operations[0].statement:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not contain %q", err, want)
		}
	}
}

func TestScanSQL(t *testing.T) {
	for _, tc := range []struct {
		sql     string
		keyword string
		params  []string
		err     string
	}{
		{"select :a, :b, :a", "SELECT", []string{"a", "b"}, ""},
		{"  /* c :x */ WITH q AS (SELECT :a) SELECT * FROM q -- :y", "WITH", []string{"a"}, ""},
		{`SELECT "col:x", [x:y], ` + "`z:w`" + `, 'it''s :no' FROM t WHERE a = :a;  -- end`, "SELECT", []string{"a"}, ""},
		{"INSERT INTO t VALUES (:a);\n\n", "INSERT", []string{"a"}, ""},
		{"(SELECT 1)", "(", nil, ""},
		{"SELECT 1; SELECT 2", "", nil, "more than one"},
		{"SELECT $a", "", nil, "only :name"},
		{"SELECT @a", "", nil, "only :name"},
		{"SELECT ?1", "", nil, "only :name"},
		{"SELECT : a", "", nil, "not followed by a parameter name"},
		{"SELECT 'x", "", nil, "unterminated ' quote"},
		{`SELECT "x`, "", nil, `unterminated " quote`},
		{"SELECT [x", "", nil, "unterminated [identifier]"},
		{"SELECT /* x", "", nil, "unterminated /* comment"},
		{"-- only a comment", "", nil, "empty statement"},
	} {
		got, err := scanSQL(tc.sql)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("scanSQL(%q) error %v, want %q", tc.sql, err, tc.err)
			}
			continue
		}
		if err != nil || got.keyword != tc.keyword || !slices.Equal(got.placeholders, tc.params) {
			t.Errorf("scanSQL(%q) = %+v, %v; want %s %v", tc.sql, got, err, tc.keyword, tc.params)
		}
	}
}

func TestPolicy_Check(t *testing.T) {
	p := loadOK(t)
	const id = "11010119800101001X"
	withID := func(extra string) string { return `{"id_number":"` + id + `"` + extra + `}` }
	for _, tc := range []struct {
		name, op, params string
		reason, param    string
	}{
		// Allowed.
		{"only required", "people.find", withID(""), "", ""},
		{"all params", "people.find", withID(`,"name":"王小明","age":0,"colour":"red","since":"2024-02-29"`), "", ""},
		{"optional null", "people.find", withID(`,"name":null,"age":null`), "", ""},
		{"negative zero", "people.find", withID(`,"age":-0`), "", ""},
		{"empty params, no params", "ping", ``, "", ""},
		{"empty object, no params", "ping", ` {} `, "", ""},
		{"escaped text", "people.find", withID(`,"name":"\u738b\u5c0f"`), "", ""},

		// unknown_operation: default deny.
		{"unknown op", "people.delete", withID(""), ReasonUnknownOperation, ""},
		{"empty op", "", withID(""), ReasonUnknownOperation, ""},
		{"op case", "People.Find", withID(""), ReasonUnknownOperation, ""},

		// bad_params.
		{"array", "people.find", `[1]`, ReasonBadParams, ""},
		{"string", "people.find", `"x"`, ReasonBadParams, ""},
		{"null", "people.find", `null`, ReasonBadParams, ""},
		{"truncated", "people.find", `{"id_number":"` + id + `"`, ReasonBadParams, ""},
		{"two objects", "people.find", withID("") + ` {}`, ReasonBadParams, ""},
		{"trailing garbage", "people.find", withID("") + `x`, ReasonBadParams, ""},
		{"trailing comma", "people.find", withID(`,`), ReasonBadParams, ""},
		{"bad value syntax", "people.find", withID(`,"age":01`), ReasonBadParams, "age"},
		{"duplicate key", "people.find", withID(`,"id_number":"` + id + `"`), ReasonBadParams, "id_number"},

		// unknown_param.
		{"unknown param", "people.find", withID(`,"role":"admin"`), ReasonUnknownParam, "role"},
		{"unknown odd param", "people.find", withID(`,"Id Number":"x"`), ReasonUnknownParam, ""},
		{"param case", "people.find", `{"ID_NUMBER":"` + id + `"}`, ReasonUnknownParam, "" /* not a well-formed name */},
		{"param on no-param op", "ping", `{"x":1}`, ReasonUnknownParam, "x"},

		// missing_param.
		{"missing", "people.find", `{}`, ReasonMissingParam, "id_number"},
		{"required null", "people.find", `{"id_number":null}`, ReasonMissingParam, "id_number"},
		{"write missing", "notes.add", `{"body":"x"}`, ReasonMissingParam, "n"},

		// bad_type.
		{"string as number", "people.find", `{"id_number":110101198001010010}`, ReasonBadType, "id_number"},
		{"string as object", "people.find", `{"id_number":{"$ne":1}}`, ReasonBadType, "id_number"},
		{"int as string", "people.find", withID(`,"age":"5"`), ReasonBadType, "age"},
		{"int fraction", "people.find", withID(`,"age":1.5`), ReasonBadType, "age"},
		{"int written with fraction", "people.find", withID(`,"age":1.0`), ReasonBadType, "age"},
		{"int exponent", "people.find", withID(`,"age":1e2`), ReasonBadType, "age"},
		{"int overflow", "people.find", withID(`,"age":9223372036854775808`), ReasonBadType, "age"},
		{"int bool", "people.find", withID(`,"age":true`), ReasonBadType, "age"},
		{"int array", "people.find", withID(`,"age":[1]`), ReasonBadType, "age"},
		{"enum as number", "people.find", withID(`,"colour":1`), ReasonBadType, "colour"},
		{"date as number", "people.find", withID(`,"since":20240101`), ReasonBadType, "since"},

		// bad_value.
		{"NUL", "people.find", withID(`,"name":"a\u0000b"`), ReasonBadValue, "name"},
		{"newline", "people.find", withID(`,"name":"a\nb"`), ReasonBadValue, "name"},
		{"C1 control", "people.find", withID(`,"name":"a\u0085"`), ReasonBadValue, "name"},
		{"bidi override", "people.find", withID(`,"name":"a\u202eb"`), ReasonBadValue, "name"},
		{"zero-width space", "people.find", withID(`,"name":"a\u200bb"`), ReasonBadValue, "name"},
		{"lone surrogate", "people.find", withID(`,"name":"\ud800"`), ReasonBadValue, "name"},
		{"replacement char", "people.find", withID(`,"name":"\ufffd"`), ReasonBadValue, "name"},
		{"invalid UTF-8", "people.find", withID(`,"name":"a` + "\xff" + `"`), ReasonBadValue, "name"},

		// too_long counts characters, not bytes.
		{"four CJK characters fit", "people.find", withID(`,"name":"王小明明"`), "", ""},
		{"too long", "people.find", withID(`,"name":"王小明明明"`), ReasonTooLong, "name"},
		{"too long id", "people.find", `{"id_number":"` + id + `0"}`, ReasonTooLong, "id_number"},

		// bad_pattern: anchored at both ends.
		{"pattern", "people.find", `{"id_number":"abc"}`, ReasonBadPattern, "id_number"},
		{"pattern prefix only", "people.find", `{"id_number":"11010119800101001Y"}`, ReasonBadPattern, "id_number"},
		{"pattern short", "people.find", `{"id_number":"1101011980010100X"}`, ReasonBadPattern, "id_number"},
		{"pattern partial match", "notes.add", `{"n":1,"body":"hi!"}`, ReasonBadPattern, "body"},
		{"pattern alternation anchored", "notes.add", `{"n":1,"body":"ab12"}`, ReasonBadPattern, "body"},
		{"pattern alternation", "notes.add", `{"n":1,"body":"12"}`, "", ""},
		{"pattern injection", "people.find", `{"id_number":"1' OR '1'='1"}`, ReasonBadPattern, "id_number"},

		// out_of_range.
		{"below min", "people.find", withID(`,"age":-1`), ReasonOutOfRange, "age"},
		{"above max", "people.find", withID(`,"age":151`), ReasonOutOfRange, "age"},

		// not_in_enum: exact match.
		{"not in enum", "people.find", withID(`,"colour":"blue"`), ReasonNotInEnum, "colour"},
		{"enum case", "people.find", withID(`,"colour":"Red"`), ReasonNotInEnum, "colour"},
		{"enum empty", "people.find", withID(`,"colour":""`), ReasonNotInEnum, "colour"},

		// bad_date.
		{"no such day", "people.find", withID(`,"since":"2023-02-29"`), ReasonBadDate, "since"},
		{"short form", "people.find", withID(`,"since":"2024-2-3"`), ReasonBadDate, "since"},
		{"timestamp", "people.find", withID(`,"since":"2024-01-01T00:00:00Z"`), ReasonBadDate, "since"},
		{"month 13", "people.find", withID(`,"since":"2024-13-01"`), ReasonBadDate, "since"},
		{"words", "people.find", withID(`,"since":"yesterday"`), ReasonBadDate, "since"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := p.Check(tc.op, json.RawMessage(tc.params))
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if c.Op == nil || len(c.Args) != len(c.Op.Placeholders) {
					t.Fatalf("checked %+v", c)
				}
				return
			}
			var rej *RejectError
			if !errors.As(err, &rej) {
				t.Fatalf("got %v (%T), want *RejectError %s", err, err, tc.reason)
			}
			if rej.Reason != tc.reason || rej.Param != tc.param {
				t.Fatalf("got reason %q param %q (%q), want %q %q", rej.Reason, rej.Param, rej.Message, tc.reason, tc.param)
			}
			if c != nil {
				t.Fatal("a refusal also returned a Checked")
			}
			if rej.Param != "" && !strings.Contains(rej.Message, rej.Param) {
				t.Fatalf("message %q does not name parameter %s", rej.Message, rej.Param)
			}
			if rej.Error() != rej.Message || rej.Message == "" {
				t.Fatalf("Error() = %q, Message %q", rej.Error(), rej.Message)
			}
			if !slices.Contains(Reasons, rej.Reason) {
				t.Fatalf("reason %q is not listed in Reasons", rej.Reason)
			}
		})
	}
}

func TestPolicy_Check_args(t *testing.T) {
	p := loadOK(t)
	c, err := p.Check("people.find", json.RawMessage(`{"age":42,"id_number":"11010119800101001X","colour":"green","name":null}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []any{
		sql.Named("id_number", "11010119800101001X"),
		sql.Named("name", nil),
		sql.Named("age", int64(42)),
		sql.Named("colour", "green"),
		sql.Named("since", nil),
	}
	if !reflect.DeepEqual(c.Args, want) {
		t.Fatalf("args %#v\nwant %#v", c.Args, want)
	}
	// Args follow the statement's order, not the declaration's.
	c, err = p.Check("notes.add", json.RawMessage(`{"body":"hi","n":-7}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := []any{sql.Named("n", int64(-7)), sql.Named("body", "hi")}; !reflect.DeepEqual(c.Args, want) {
		t.Fatalf("args %#v, want %#v", c.Args, want)
	}
}

func TestPolicy_Check_messagesHideValues(t *testing.T) {
	p := loadOK(t)
	const secret = "11010119800101001Y"
	for _, params := range []string{
		`{"id_number":"` + secret + `"}`,
		`{"id_number":"` + secret + `0"}`,
		`{"id_number":"11010119800101001X","colour":"` + secret + `"}`,
	} {
		_, err := p.Check("people.find", json.RawMessage(params))
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("error %v repeats the value", err)
		}
	}
	_, err := p.Check(strings.Repeat("x", 10000), nil)
	if err == nil || len(err.Error()) > 200 {
		t.Errorf("unknown operation message not cut short: %d bytes", len(err.Error()))
	}
}

func TestPolicy_Check_nil(t *testing.T) {
	var p *Policy
	_, err := p.Check("ping", nil)
	var rej *RejectError
	if !errors.As(err, &rej) || rej.Reason != ReasonUnknownOperation {
		t.Fatalf("nil policy: %v", err)
	}
}

// FuzzCheck feeds arbitrary operation names and parameters to Check. It must
// never panic, must refuse only with a listed reason and a message that
// names its parameter, and must return one argument per placeholder when it
// allows.
func FuzzCheck(f *testing.F) {
	p := loadOK(f)
	for _, s := range []struct{ op, params string }{
		{"people.find", `{"id_number":"11010119800101001X"}`},
		{"people.find", `{"id_number":"11010119800101001X","name":"王","age":7,"colour":"red","since":"2024-02-29"}`},
		{"people.find", `{"id_number":"x","id_number":"y"}`},
		{"people.find", `{"age":1e400}`},
		{"notes.add", `{"n":-9223372036854775808,"body":"\ud83d\ude00"}`},
		{"ping", ``},
		{"nope", `[]`},
	} {
		f.Add(s.op, []byte(s.params))
	}
	f.Fuzz(func(t *testing.T, op string, params []byte) {
		c, err := p.Check(op, params)
		if err != nil {
			var rej *RejectError
			if !errors.As(err, &rej) {
				t.Fatalf("non-reject error %T: %v", err, err)
			}
			if !slices.Contains(Reasons, rej.Reason) || rej.Message == "" {
				t.Fatalf("reason %q message %q", rej.Reason, rej.Message)
			}
			if rej.Param != "" && !strings.Contains(rej.Message, rej.Param) {
				t.Fatalf("message %q does not name %q", rej.Message, rej.Param)
			}
			return
		}
		if c == nil || c.Op == nil || c.Op.Name != op || len(c.Args) != len(c.Op.Placeholders) {
			t.Fatalf("allowed with %+v", c)
		}
		for i, a := range c.Args {
			na, ok := a.(sql.NamedArg)
			if !ok || na.Name != c.Op.Placeholders[i] {
				t.Fatalf("arg %d = %#v", i, a)
			}
			switch v := na.Value.(type) {
			case nil, int64:
			case string:
				if badRune(v) >= 0 {
					t.Fatalf("allowed a control character in %s", na.Name)
				}
			default:
				t.Fatalf("arg %s has type %T", na.Name, v)
			}
		}
	})
}

// FuzzParse feeds arbitrary documents to the loader, seeded with the
// fixtures: it must return a policy or an error, never panic, and a policy
// it returns must check its own examples without panicking, and its
// catalogue must parse and decide the examples as the policy does.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	more, _ := filepath.Glob(filepath.Join("testdata", "load", "*.yaml"))
	for _, file := range append(files, more...) {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add(sample.Policy())
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		_ = p.Warnings()
		// A policy's catalogue always parses, and decides as the policy.
		cat, err := json.Marshal(p.Catalogue())
		if err != nil {
			t.Fatalf("marshal catalogue: %v", err)
		}
		q, err := ParseCatalogue(cat)
		if err != nil {
			t.Fatalf("the catalogue of a valid policy does not parse: %v\n%s", err, cat)
		}
		for _, op := range p.Operations {
			params := map[string]json.RawMessage{}
			for _, pa := range op.Params {
				if pa.Example != nil {
					params[pa.Name] = pa.Example
				}
			}
			b, _ := json.Marshal(params)
			c1, err1 := p.Check(op.Name, b)
			c2, err2 := q.Check(op.Name, b)
			if !sameDecision(c1, err1, c2, err2) {
				t.Fatalf("%s: policy %v %v, catalogue %v %v", op.Name, c1, err1, c2, err2)
			}
		}
	})
}
