package batch

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const id1 = "0123456789abcdef0123456789abcdef"
const id2 = "fedcba9876543210fedcba9876543210"

func TestDecodeRequests(t *testing.T) {
	for _, tc := range []struct {
		name, body, err string
	}{
		{"ok", `{"requests":[{"id":"` + id1 + `","client":"portal","operation":"licence.status","params":{"a":1},"received":"2026-11-23T00:00:00Z"}]}`, ""},
		{"empty", `{"requests":[]}`, ""},
		{"unknown field", `{"requests":[],"x":1}`, "unknown field"},
		{"bad id", `{"requests":[{"id":"XYZ","operation":"a","params":{}}]}`, "invalid id"},
		{"uppercase id", `{"requests":[{"id":"` + strings.ToUpper(id1) + `","operation":"a","params":{}}]}`, "invalid id"},
		{"duplicate id", `{"requests":[{"id":"` + id1 + `","operation":"a"},{"id":"` + id1 + `","operation":"b"}]}`, "duplicate id"},
		{"no operation", `{"requests":[{"id":"` + id1 + `"}]}`, "invalid operation"},
		{"trailing", `{"requests":[]} {}`, "trailing"},
		{"not json", `{"requests":`, "unexpected EOF"},
		{"big params", `{"requests":[{"id":"` + id1 + `","operation":"a","params":{"x":"` + strings.Repeat("a", MaxParamsBytes) + `"}}]}`, "parameters larger"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeRequests([]byte(tc.body))
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got %v, want error containing %q", err, tc.err)
			}
		})
	}
}

func TestDecodeResults(t *testing.T) {
	for _, tc := range []struct {
		name, body, err string
	}{
		{"ok", `{"acks":["` + id2 + `"],"results":[{"request_id":"` + id1 + `","status":"done","rows":[{"a":1}]}]}`, ""},
		{"bad status", `{"acks":[],"results":[{"request_id":"` + id1 + `","status":"queued"}]}`, "invalid status"},
		{"bad ack", `{"acks":["zz"],"results":[]}`, "invalid envelope id"},
		{"bad request id", `{"acks":[],"results":[{"request_id":"1","status":"done"}]}`, "invalid request id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeResults([]byte(tc.body))
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got %v, want error containing %q", err, tc.err)
			}
		})
	}
}

func TestNewID(t *testing.T) {
	id, err := NewID(rand.Reader)
	if err != nil || !ValidID(id) {
		t.Fatalf("NewID = %q, %v", id, err)
	}
}

func FuzzDecodeRequests(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.json")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeRequests(data)
		if err != nil {
			return
		}
		// What decodes must re-encode and decode to the same batch.
		enc, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeRequests(enc); err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
	})
}

func FuzzDecodeResults(f *testing.F) {
	f.Add([]byte(`{"acks":["` + id2 + `"],"results":[{"request_id":"` + id1 + `","status":"done","rows":[{"a":1}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = DecodeResults(data)
	})
}
