package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

type sample struct {
	Zone  string   `yaml:"zone"`
	Delay Duration `yaml:"delay"`
	Batch struct {
		Max int `yaml:"max"`
	} `yaml:"batch"`
	Clients []struct {
		Name string `yaml:"name"`
	} `yaml:"clients"`
}

func TestDecode_Errors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		line       int
		field      string
		msg        string
	}{
		{"unknown key", "zone: dmz\nbogus: 1\n", 2, "bogus", `unknown key "bogus"`},
		{"nested unknown key", "zone: dmz\nbatch:\n  max: 3\n  min: 1\n", 4, "batch.min", `unknown key "min"`},
		{"unknown key in list", "clients:\n  - name: a\n  - name: b\n    token: x\n", 4, "clients[1].token", `unknown key "token"`},
		{"duplicate key", "zone: dmz\nzone: other\n", 2, "zone", "already defined"},
		{"wrong type", "zone: dmz\nbatch:\n  max: lots\n", 3, "batch.max", `want an integer, got "lots"`},
		{"list for a scalar", "zone: [a, b]\n", 1, "zone", "want a string, got a list"},
		{"bad duration", "zone: dmz\ndelay: soon\n", 2, "delay", `invalid duration "soon"`},
		{"syntax", "zone: [dmz\n", 1, "", ""},
		{"two documents", "zone: a\n---\nzone: b\n", 0, "", "more than one YAML document"},
		{"empty", "", 0, "", "empty document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s sample
			_, err := Decode("cfg.yaml", []byte(tc.yaml), &s)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v (%T), want *Error", err, err)
			}
			if ce.File != "cfg.yaml" || ce.Line != tc.line || ce.Field != tc.field || !strings.Contains(ce.Msg, tc.msg) {
				t.Fatalf("got %q (line %d, field %q), want line %d, field %q, containing %q", err, ce.Line, ce.Field, tc.line, tc.field, tc.msg)
			}
			if !strings.HasPrefix(err.Error(), "cfg.yaml") {
				t.Fatalf("error %q does not start with the file name", err)
			}
			if strings.Contains(err.Error(), "config.sample") || strings.Contains(err.Error(), "into ") || strings.Contains(err.Error(), "in type") {
				t.Fatalf("error %q shows Go type names", err)
			}
		})
	}
}

func TestDecode_OKAndLine(t *testing.T) {
	var s sample
	root, err := Decode("c.yaml", []byte("zone: dmz\ndelay: 5ms\nclients:\n  - name: a\n  - name: b\n"), &s)
	if err != nil {
		t.Fatal(err)
	}
	if s.Zone != "dmz" || time.Duration(s.Delay) != 5*time.Millisecond || len(s.Clients) != 2 {
		t.Fatalf("decoded %+v", s)
	}
	for _, tc := range []struct {
		path []string
		line int
	}{
		{[]string{"zone"}, 1},
		{[]string{"delay"}, 2},
		{[]string{"clients", "1", "name"}, 5},
		{[]string{"clients", "7"}, 4},
		{[]string{"nope"}, 1},
	} {
		if got := Line(root, tc.path...); got != tc.line {
			t.Errorf("Line(%v) = %d, want %d", tc.path, got, tc.line)
		}
	}
}

func TestResolve(t *testing.T) {
	if got := Resolve("/etc/ferry/dmz.yaml", "state/spool.db"); got != "/etc/ferry/state/spool.db" {
		t.Errorf("got %s", got)
	}
	if got := Resolve("/etc/ferry/dmz.yaml", "/var/lib/x"); got != "/var/lib/x" {
		t.Errorf("got %s", got)
	}
}

func TestFieldError(t *testing.T) {
	var s sample
	root, err := Decode("cfg.yaml", []byte("zone: dmz\nclients:\n  - name: a\n  - name: b\n"), &s)
	if err != nil {
		t.Fatal(err)
	}
	e := FieldError("cfg.yaml", root, "bad name", "clients", "1", "name")
	if e.Field != "clients[1].name" || e.Line != 4 || e.Error() != "cfg.yaml:4: clients[1].name: bad name" {
		t.Fatalf("got %q (field %q, line %d)", e, e.Field, e.Line)
	}
}

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"180d", 180 * 24 * time.Hour, true},
		{"0d", 0, true},
		{"4320h", 180 * 24 * time.Hour, true},
		{"1.5d", 0, false},
		{"-1d", 0, false},
		{"+5d", 0, false},
		{"05d", 0, false},
		{"d", 0, false},
		{"99999999999d", 0, false},
		{"5", 0, false},
	} {
		got, err := ParseDuration(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
