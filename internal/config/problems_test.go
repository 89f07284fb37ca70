package config

import (
	"errors"
	"testing"
)

func TestProblems_Err(t *testing.T) {
	var none Problems
	if err := none.Err(); err != nil {
		t.Fatalf("no problems: %v, want nil", err)
	}
	root, err := Decode("c.yaml", []byte("a: 1\nb:\n  c: 2\n"), &struct {
		A int            `yaml:"a"`
		B map[string]int `yaml:"b"`
	}{})
	if err != nil {
		t.Fatal(err)
	}
	p := Problems{File: "c.yaml", Root: root}
	p.Add("too small", "a")
	p.Add("too big", "b", "c")
	if p.Len() != 2 {
		t.Fatalf("Len %d, want 2", p.Len())
	}
	err = p.Err()
	if got, want := err.Error(), "c.yaml:1: a: too small\nc.yaml:3: b.c: too big"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var ce *Error
	if !errors.As(err, &ce) || ce.Field != "a" {
		t.Errorf("errors.As found %v, want the first problem", ce)
	}
}
