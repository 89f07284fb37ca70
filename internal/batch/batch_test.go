package batch

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
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
		{"query only", `{"requests":[],"query":["` + id1 + `","` + id2 + `"]}`, ""},
		{"query bad id", `{"requests":[],"query":["` + strings.ToUpper(id1) + `"]}`, "query 0: invalid or repeated"},
		{"query repeated", `{"requests":[],"query":["` + id1 + `","` + id1 + `"]}`, "query 1: invalid or repeated"},
		{"query names a request", `{"requests":[{"id":"` + id1 + `","operation":"a","params":{}}],"query":["` + id1 + `"]}`, "also in the query"},
		{"query not a list", `{"requests":[],"query":"` + id1 + `"}`, "cannot unmarshal"},
		{"unknown field", `{"requests":[],"x":1}`, "unknown field"},
		{"bad id", `{"requests":[{"id":"XYZ","operation":"a","params":{}}]}`, "invalid id"},
		{"uppercase id", `{"requests":[{"id":"` + strings.ToUpper(id1) + `","operation":"a","params":{}}]}`, "invalid id"},
		{"duplicate id", `{"requests":[{"id":"` + id1 + `","operation":"a"},{"id":"` + id1 + `","operation":"b"}]}`, "duplicate id"},
		{"no operation", `{"requests":[{"id":"` + id1 + `"}]}`, "invalid operation"},
		{"trailing", `{"requests":[]} {}`, "trailing"},
		{"not json", `{"requests":`, "unexpected EOF"},
		{"big params", `{"requests":[{"id":"` + id1 + `","operation":"a","params":{"x":"` + strings.Repeat("a", MaxParamsBytes) + `"}}]}`, "parameters larger"},
		{"subject", withSubject(`"11010119900307001X"`), ""},
		{"subject empty is none", withSubject(`""`), ""},
		{"subject null is none", withSubject(`null`), ""},
		{"subject escaped ascii", withSubject(`"\u0041B"`), ""},
		{"subject at limit", withSubject(`"` + strings.Repeat("9", MaxSubject) + `"`), ""},
		{"subject too long", withSubject(`"` + strings.Repeat("9", MaxSubject+1) + `"`), "invalid subject"},
		{"subject with space", withSubject(`"1101 0119"`), "invalid subject"},
		{"subject with tab", withSubject(`"1101\t0119"`), "invalid subject"},
		{"subject with NUL", withSubject(`"1101\u00000119"`), "invalid subject"},
		{"subject with DEL", withSubject(`"1101\u007f"`), "invalid subject"},
		{"subject full-width digits", withSubject(`"１１０１"`), "invalid subject"},
		{"subject invalid UTF-8", withSubject("\"11\xff01\""), "invalid subject"},
		{"subject a number", withSubject(`110101`), "cannot unmarshal number"},
		{"subject an object", withSubject(`{}`), "cannot unmarshal object"},
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

// withSubject returns a one-request batch whose subject is the JSON value v.
func withSubject(v string) string {
	return `{"requests":[{"id":"` + id1 + `","client":"portal","operation":"licence.status","params":{},"received":"2026-11-23T00:00:00Z","subject":` + v + `}]}`
}

func TestDecodeRequests_subjectValue(t *testing.T) {
	b, err := DecodeRequests([]byte(withSubject(`"11010119900307001X"`)))
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Requests[0].Subject; got != "11010119900307001X" {
		t.Fatalf("subject %q", got)
	}
	// Without a subject the field is left out of the encoding, so batches
	// without subjects encode as before.
	enc, err := Encode(Requests{Requests: []Request{{ID: id1, Operation: "a", Params: json.RawMessage(`{}`)}}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(enc), "subject") {
		t.Fatalf("empty subject encoded: %s", enc)
	}
}

func TestValidSubject(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"11010119900307001X", true},
		{"!~", true},
		{strings.Repeat("a", MaxSubject), true},
		{"", false},
		{strings.Repeat("a", MaxSubject+1), false},
		{"a b", false},
		{"a\x00", false},
		{"a\n", false},
		{"a\x7f", false},
		{"a\x80", false},
		{"１１０", false},
	} {
		if got := ValidSubject(tc.s); got != tc.want {
			t.Errorf("ValidSubject(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
}

func TestDecodeResults(t *testing.T) {
	for _, tc := range []struct {
		name, body, err string
	}{
		{"ok", `{"acks":["` + id2 + `"],"results":[{"request_id":"` + id1 + `","status":"done","rows":[{"a":1}]}]}`, ""},
		{"held", `{"acks":["` + id2 + `"],"results":[{"request_id":"` + id1 + `","status":"held","reason":"approval_required"}]}`, ""},
		{"held with rows", `{"acks":[],"results":[{"request_id":"` + id1 + `","status":"held","rows":[]}]}`, "status held carries no rows"},
		{"held with rows_affected", `{"acks":[],"results":[{"request_id":"` + id1 + `","status":"held","rows_affected":1}]}`, "status held carries no rows"},
		{"final result, no ack", `{"acks":[],"results":[{"request_id":"` + id1 + `","status":"done","rows_affected":1}]}`, ""},
		{"bad status", `{"acks":[],"results":[{"request_id":"` + id1 + `","status":"queued"}]}`, "invalid status"},
		{"expired", `{"acks":[],"results":[{"request_id":"` + id1 + `","status":"expired","reason":"not_received"}]}`, ""},
		{"expired with rows", `{"acks":[],"results":[{"request_id":"` + id1 + `","status":"expired","rows":[]}]}`, "status expired carries no rows"},
		{"expired with retry_after", `{"acks":[],"results":[{"request_id":"` + id1 + `","status":"expired","retry_after":3}]}`, "status expired carries no rows"},
		{"bad ack", `{"acks":["zz"],"results":[]}`, "invalid envelope id"},
		{"bad request id", `{"acks":[],"results":[{"request_id":"1","status":"done"}]}`, "invalid request id"},
		{"retry_after", `{"acks":[],"results":[{"request_id":"` + id1 + `","status":"rejected","reason":"rate_limited","retry_after":86400}]}`, ""},
		{"retry_after negative", `{"acks":[],"results":[{"request_id":"` + id1 + `","status":"rejected","retry_after":-1}]}`, "retry_after out of range"},
		{"retry_after over a day", `{"acks":[],"results":[{"request_id":"` + id1 + `","status":"rejected","retry_after":86401}]}`, "retry_after out of range"},
		{"catalogue", `{"acks":["` + id2 + `"],"results":[],"catalogue":{"version":1,"operations":[]}}`, ""},
		{"catalogue only", `{"acks":[],"results":[],"catalogue":{}}`, ""},
		{"catalogue, no lists", `{"catalogue":{"version":1}}`, ""},
		{"catalogue with spaces", `{"acks":[],"results":[],"catalogue":  { "version" : 1 }  }`, ""},
		{"catalogue at limit", withCatalogue(MaxCatalogue), ""},
		{"catalogue over limit", withCatalogue(MaxCatalogue + 1), "catalogue of 1048577 bytes"},
		{"catalogue null", `{"acks":[],"results":[],"catalogue":null}`, "not a JSON object"},
		{"catalogue array", `{"acks":[],"results":[],"catalogue":[{"version":1}]}`, "not a JSON object"},
		{"catalogue string", `{"acks":[],"results":[],"catalogue":"{}"}`, "not a JSON object"},
		{"catalogue number", `{"acks":[],"results":[],"catalogue":1}`, "not a JSON object"},
		{"catalogue malformed", `{"acks":[],"results":[],"catalogue":{"version":}}`, "invalid character"},
		{"catalogue unterminated", `{"acks":[],"results":[],"catalogue":{"version":1`, "unexpected EOF"},
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

// withCatalogue returns a results body whose catalogue is a JSON object
// of exactly n bytes.
func withCatalogue(n int) string {
	const head, tail = `{"d":"`, `"}`
	return `{"acks":[],"results":[],"catalogue":` + head + strings.Repeat("a", n-len(head)-len(tail)) + tail + `}`
}

func TestDecodeResults_catalogue(t *testing.T) {
	// The catalogue comes out as sent, without the spaces around it, and
	// a body without one has none.
	b, err := DecodeResults([]byte(`{"acks":[],"results":[],"catalogue": {"version":1} }`))
	if err != nil {
		t.Fatal(err)
	}
	if string(b.Catalogue) != `{"version":1}` {
		t.Fatalf("catalogue %q", b.Catalogue)
	}
	b, err = DecodeResults([]byte(`{"acks":[],"results":[]}`))
	if err != nil || b.Catalogue != nil {
		t.Fatalf("no catalogue: %q %v", b.Catalogue, err)
	}
	// Without a catalogue the field is left out of the encoding, so
	// results bodies encode as before.
	enc, err := Encode(Results{Acks: []string{}, Results: []Result{}})
	if err != nil || string(enc) != `{"acks":[],"results":[]}` {
		t.Fatalf("encoding without catalogue: %s %v", enc, err)
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
	for _, v := range []string{`"11010119900307001X"`, `""`, `"a b"`, `"` + strings.Repeat("9", MaxSubject+1) + `"`, `"\u0000"`, `7`} {
		f.Add([]byte(withSubject(v)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeRequests(data)
		if err != nil {
			return
		}
		// What decodes must re-encode and decode to the same batch.
		for _, r := range b.Requests {
			if r.Subject != "" && !ValidSubject(r.Subject) {
				t.Fatalf("request %s: decoded an invalid subject", r.ID)
			}
		}
		for _, id := range b.Query {
			if !ValidID(id) {
				t.Fatal("decoded an invalid query id")
			}
		}
		enc, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeRequests(enc)
		if err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		for i := range b.Requests {
			if again.Requests[i].Subject != b.Requests[i].Subject {
				t.Fatalf("request %d: subject changed in a round trip", i)
			}
		}
	})
}

func FuzzDecodeResults(f *testing.F) {
	f.Add([]byte(`{"acks":["` + id2 + `"],"results":[{"request_id":"` + id1 + `","status":"done","rows":[{"a":1}]}]}`))
	for _, s := range []string{
		`{"acks":[],"results":[],"catalogue":{"version":1,"timezone":"Asia/Shanghai","clients":[],"operations":[]}}`,
		`{"catalogue":{}}`,
		`{"acks":[],"results":[],"catalogue":null}`,
		`{"acks":[],"results":[],"catalogue":[]}`,
		`{"acks":[],"results":[],"catalogue":{"a":[{"b":"\u0000"}]}} `,
		withCatalogue(64),
		`{"acks":[],"results":[],"audit":{"checkpoint":"ferry.audit/intranet\n3\nAAAA\n\n— ferry.audit/intranet abcd\n","from":1,"proof":"AAAA"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeResults(data)
		if err != nil || b.Catalogue == nil {
			return
		}
		// What decodes carries an object within the cap, and survives a
		// round trip unchanged.
		if len(b.Catalogue) > MaxCatalogue || b.Catalogue[0] != '{' || !json.Valid(b.Catalogue) {
			t.Fatalf("decoded a bad catalogue: %.64q", b.Catalogue)
		}
		enc, err := Encode(b)
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeResults(enc)
		if err != nil {
			t.Fatalf("re-encoded body does not decode: %v", err)
		}
		var x, y any
		if json.Unmarshal(b.Catalogue, &x) != nil || json.Unmarshal(again.Catalogue, &y) != nil || !reflect.DeepEqual(x, y) {
			t.Fatal("catalogue changed in a round trip")
		}
	})
}

func TestDecodeResults_received(t *testing.T) {
	for _, tc := range []struct {
		name, received, err string
	}{
		{"nothing yet", `{"contiguous":0,"through":0}`, ""},
		{"contiguous", `{"contiguous":7,"through":7}`, ""},
		{"gaps", `{"contiguous":1,"through":9,"missing":[[2,3],[5,5]]}`, ""},
		{"gap at one", `{"contiguous":0,"through":4,"missing":[[1,3]]}`, ""},
		{"contiguous above through", `{"contiguous":8,"through":7}`, "above through"},
		{"below through, nothing missing", `{"contiguous":5,"through":7}`, "exactly when"},
		{"missing, nothing below through", `{"contiguous":9,"through":9,"missing":[[2,3]]}`, "exactly when"},
		{"first gap not after contiguous", `{"contiguous":1,"through":9,"missing":[[3,3]]}`, "right after contiguous"},
		{"range reversed", `{"contiguous":1,"through":9,"missing":[[3,2]]}`, "missing range 0"},
		{"range at contiguous", `{"contiguous":2,"through":9,"missing":[[2,3]]}`, "missing range 0"},
		{"range reaches through", `{"contiguous":4,"through":9,"missing":[[5,9]]}`, "missing range 0"},
		{"ranges overlap", `{"contiguous":1,"through":9,"missing":[[2,4],[4,6]]}`, "missing range 1"},
		{"ranges touch", `{"contiguous":1,"through":9,"missing":[[2,3],[4,6]]}`, "missing range 1"},
		{"ranges unordered", `{"contiguous":1,"through":9,"missing":[[5,6],[2,3]]}`, "missing range 1"},
		{"negative", `{"contiguous":0,"through":-1}`, "cannot unmarshal"},
		{"unknown field", `{"contiguous":9,"through":9,"gaps":[]}`, "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, body := range []string{
				`{"acks":[],"results":[],"received":` + tc.received + `}`,
				`{"requests":[],"received":` + tc.received + `}`,
			} {
				var err error
				if strings.HasPrefix(body, `{"acks"`) {
					_, err = DecodeResults([]byte(body))
				} else {
					_, err = DecodeRequests([]byte(body))
				}
				if tc.err == "" && err != nil {
					t.Fatalf("%s: %v", body, err)
				}
				if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
					t.Fatalf("%s: got %v, want error containing %q", body, err, tc.err)
				}
			}
		})
	}
	// A full list holds the most recent gaps: the first need not start
	// right after contiguous, but there may be no more than MaxMissing.
	ranges := func(n int) string {
		var rs []string
		for i := range n {
			rs = append(rs, fmt.Sprintf("[%d,%d]", 10+2*i, 10+2*i))
		}
		return strings.Join(rs, ",")
	}
	full := fmt.Sprintf(`{"requests":[],"received":{"contiguous":1,"through":1000,"missing":[%s]}}`, ranges(MaxMissing))
	if _, err := DecodeRequests([]byte(full)); err != nil {
		t.Fatalf("the most recent %d gaps: %v", MaxMissing, err)
	}
	over := fmt.Sprintf(`{"requests":[],"received":{"contiguous":1,"through":1000,"missing":[%s]}}`, ranges(MaxMissing+1))
	if _, err := DecodeRequests([]byte(over)); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("too many ranges: got %v", err)
	}
}

func TestDecode_audit(t *testing.T) {
	note := "ferry.audit/dmz\n12\nAAAA\n\n— ferry.audit/dmz abcd\n"
	for _, tc := range []struct {
		name, audit, err string
	}{
		{"checkpoint and proof", `{"checkpoint":` + strconv.Quote(note) + `,"from":3,"proof":"AAAA BBBB"}`, ""},
		{"cosigned alone", `{"cosigned":` + strconv.Quote(note) + `}`, ""},
		{"empty", `{}`, ""},
		{"proof without checkpoint", `{"from":3,"proof":"AAAA"}`, "a proof without a checkpoint"},
		{"negative from", `{"checkpoint":"x","from":-1}`, "negative from"},
		{"checkpoint too large", `{"checkpoint":"` + strings.Repeat("a", MaxAuditNote+1) + `"}`, "more than 4096 bytes"},
		{"cosigned too large", `{"cosigned":"` + strings.Repeat("a", MaxAuditNote+1) + `"}`, "more than 4096 bytes"},
		{"proof too large", `{"checkpoint":"x","proof":"` + strings.Repeat("a", MaxAuditProof+1) + `"}`, "a proof of more than"},
		{"unknown field", `{"checkpoint":"x","witness":"y"}`, "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, body := range []string{
				`{"requests":[],"audit":` + tc.audit + `}`,
				`{"acks":[],"results":[],"audit":` + tc.audit + `}`,
			} {
				var err error
				if strings.HasPrefix(body, `{"requests"`) {
					_, err = DecodeRequests([]byte(body))
				} else {
					_, err = DecodeResults([]byte(body))
				}
				if tc.err == "" && err != nil {
					t.Fatalf("%s: %v", body[:12], err)
				}
				if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
					t.Fatalf("%s: got %v, want an error with %q", body[:12], err, tc.err)
				}
			}
		})
	}
}
