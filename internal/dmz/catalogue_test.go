package dmz

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/envelope"
	"github.com/ferrybridge/ferry/internal/policy"
	"github.com/ferrybridge/ferry/internal/sample"
)

// tokenKiosk is the bearer token of client kiosk, limited by kioskClient
// to two operations.
const tokenKiosk = "fy_kiosk-test-token"

var kioskClient = `  - name: kiosk
    token_sha256: ` + hashHex(tokenKiosk) + `
    operations: [exam.slots, licence.status]
`

// badCatalogue is a JSON object that policy.ParseCatalogue refuses.
const badCatalogue = `{"version":1,"timezone":"Asia/Shanghai","clients":[],"operations":[{"name":"x.y","mode":"delete","params":[]}]}`

// sampleCatalogue returns the sample policy's catalogue without the
// operations named in drop.
func sampleCatalogue(t testing.TB, drop ...string) *policy.Catalogue {
	t.Helper()
	pol, err := policy.Parse("policy.yaml", sample.Policy())
	if err != nil {
		t.Fatal(err)
	}
	c := pol.Catalogue()
	c.Operations = slices.DeleteFunc(c.Operations, func(op policy.CatalogueOperation) bool { return slices.Contains(drop, op.Name) })
	return c
}

// sendResults seals res as the intranet with header h, with cat (a
// *policy.Catalogue, raw JSON as a string, or nil) as its catalogue, and
// drops it on the result medium.
func (e *env) sendResults(t testing.TB, h envelope.Header, cat any, res batch.Results) {
	t.Helper()
	switch c := cat.(type) {
	case nil:
	case string:
		res.Catalogue = json.RawMessage(c)
	default:
		data, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		res.Catalogue = data
	}
	name, data := e.sealResults(t, h, res)
	e.drop(t, name, data)
}

// opsReply is GET /v1/operations, decoded strictly.
type opsReply struct {
	Source    string `json:"source"`
	Catalogue *struct {
		Seq      uint64    `json:"seq"`
		Received time.Time `json:"received"`
	} `json:"catalogue"`
	Operations []json.RawMessage `json:"operations"`
}

func (e *env) operations(t testing.TB, token string) *opsReply {
	t.Helper()
	r := e.do(t, http.MethodGet, "/v1/operations", token, "", nil)
	if r.code != http.StatusOK {
		t.Fatalf("operations: HTTP %d %s", r.code, r.raw)
	}
	dec := json.NewDecoder(strings.NewReader(r.raw))
	dec.DisallowUnknownFields()
	var out opsReply
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("operations: %v: %s", err, r.raw)
	}
	return &out
}

// waitCatalogue waits until the catalogue of envelope seq is in force.
func (e *env) waitCatalogue(t testing.TB, seq uint64) *opsReply {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if r := e.do(t, http.MethodGet, "/v1/operations", tokenPortal, "", nil); r.code == http.StatusOK {
			if o := e.operations(t, tokenPortal); o.Catalogue != nil && o.Catalogue.Seq == seq {
				return o
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("catalogue %d not in force after 10s", seq)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkListed checks that listed holds exactly the catalogue's own JSON of
// the named operations, in order.
func checkListed(t *testing.T, listed []json.RawMessage, cat *policy.Catalogue, names ...string) {
	t.Helper()
	var want []any
	for _, op := range cat.Operations {
		if slices.Contains(names, op.Name) {
			data, err := json.Marshal(op)
			if err != nil {
				t.Fatal(err)
			}
			var v any
			if err := json.Unmarshal(data, &v); err != nil {
				t.Fatal(err)
			}
			want = append(want, v)
		}
	}
	var got []any
	for _, raw := range listed {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("listed operations %v, want the catalogue's own JSON of %v", got, names)
	}
}

// post submits body and checks the answer's code and reason; it returns
// the request id of a 202.
func (e *env) post(t *testing.T, token, body string, code int, reason string) string {
	t.Helper()
	r := e.do(t, http.MethodPost, "/v1/requests", token, body, nil)
	if r.code != code || r.reason() != reason {
		t.Fatalf("POST %s: HTTP %d %s, want %d %q", body, r.code, r.raw, code, reason)
	}
	return r.str("id")
}

func jsonLogger(t *testing.T, logs *logBuffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(io.MultiWriter(logs, tWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestAgent_NoCatalogue starts an agent with neither a stored catalogue
// nor a local policy: it refuses requests and is not ready until a results
// envelope carrying only a catalogue arrives.
func TestAgent_NoCatalogue(t *testing.T) {
	e := startEnvWith(t, envOptions{noPolicy: true})
	for _, tt := range []struct {
		method, path, token, body string
		code                      int
		reason                    string
	}{
		{"POST", "/v1/requests", tokenPortal, goodBody(t), 503, "catalogue_unavailable"},
		{"POST", "/v1/requests", tokenPortal, `{"operation":`, 503, "catalogue_unavailable"},
		{"POST", "/v1/requests", "", goodBody(t), 401, ReasonMissingToken},
		{"GET", "/v1/operations", tokenPortal, "", 503, "catalogue_unavailable"},
		{"GET", "/readyz", "", "", 503, "not_ready"},
		{"GET", "/healthz", "", "", 200, ""},
	} {
		r := e.do(t, tt.method, tt.path, tt.token, tt.body, nil)
		if r.code != tt.code || r.reason() != tt.reason {
			t.Fatalf("%s %s: HTTP %d %s, want %d %q", tt.method, tt.path, r.code, r.raw, tt.code, tt.reason)
		}
		if tt.reason == "catalogue_unavailable" && !strings.Contains(r.raw, "has not arrived from the intranet yet") {
			t.Fatalf("%s %s: message %s", tt.method, tt.path, r.raw)
		}
	}
	if n := countRequests(t, e); n != 0 {
		t.Fatalf("%d requests stored without a catalogue", n)
	}

	// An envelope with no results and no acks, only the catalogue.
	e.sendResults(t, e.resultsHeader(), sampleCatalogue(t), batch.Results{})
	ops := e.waitCatalogue(t, 1)
	if ops.Source != SourceCatalogue || len(ops.Operations) != len(sampleCatalogue(t).Operations) {
		t.Fatalf("operations from %s: %d", ops.Source, len(ops.Operations))
	}
	if r := e.do(t, "GET", "/readyz", "", "", nil); r.code != 200 {
		t.Fatalf("readyz with a catalogue: HTTP %d %s", r.code, r.raw)
	}
	e.post(t, tokenPortal, goodBody(t), 202, "")
}

// TestAgent_Catalogue follows catalogues as they arrive: each decides
// what POST accepts and what GET /v1/operations lists; an older or
// unparsable one changes nothing (its results still count); a restart
// keeps the one in force.
func TestAgent_Catalogue(t *testing.T) {
	var logs logBuffer
	e := startEnvWith(t, envOptions{noPolicy: true, extra: kioskClient, log: jsonLogger(t, &logs)})
	me, them := sample.Citizens()[0], sample.Citizens()[1]

	// Catalogue 1: no licence.status, and exam.slots narrowed to
	// subjects 1 and 2; so it, not the sample policy, decides.
	cat1 := sampleCatalogue(t, "licence.status")
	for i, op := range cat1.Operations {
		if op.Name == "exam.slots" {
			cat1.Operations[i].Params[0].Max = json.RawMessage("2")
		}
	}
	e.sendResults(t, e.resultsHeader(), cat1, batch.Results{})
	ops := e.waitCatalogue(t, 1)
	if ops.Source != SourceCatalogue || ops.Catalogue.Received.IsZero() {
		t.Fatalf("operations: source %q, catalogue %+v", ops.Source, ops.Catalogue)
	}
	checkListed(t, ops.Operations, cat1, "violations.query", "exam.slots", "exam.book", "licence.renew")
	// kiosk is limited to exam.slots and licence.status; this catalogue
	// lists only the first, and the log says so.
	checkListed(t, e.operations(t, tokenKiosk).Operations, cat1, "exam.slots")
	if !strings.Contains(logs.String(), "a client's operation is not in the catalogue") {
		t.Fatal("no warning for kiosk's licence.status")
	}

	book := `{"operation":"exam.book","params":{"slot_id":1},"subject":"` + me.IDNumber + `"}`
	e.post(t, tokenPortal, goodBody(t), 202, "")
	e.post(t, tokenPortal, `{"operation":"exam.slots","params":{"subject":2}}`, 202, "")
	e.post(t, tokenPortal, `{"operation":"exam.slots","params":{"subject":3}}`, 400, "out_of_range")
	e.post(t, tokenPortal, citizenBody(t, me, "licence.status"), 400, "unknown_operation")
	e.post(t, tokenPortal, `{"operation":"violations.query","params":{"plate":"`+them.Plate+`","id_number":"`+them.IDNumber+`"},"subject":"`+me.IDNumber+`"}`, 400, "forbidden_subject")
	e.post(t, tokenOther, goodBody(t), 400, "subject_not_trusted")
	e.post(t, tokenKiosk, book, 403, ReasonForbidden)
	bookID := e.post(t, tokenPortal, book, 202, "")

	// Catalogue 3 (2 is still on its way): violations.query is gone,
	// licence.status is back. Envelope 2, with the whole sample
	// catalogue and the booking's result, is sealed first (3 names it)
	// and arrives late.
	n2, d2 := e.sealResults(t, e.headerSeq(2), batch.Results{
		Results:   []batch.Result{{RequestID: bookID, Status: batch.StatusDone}},
		Catalogue: mustJSON(t, sampleCatalogue(t))})
	e.seq = 2
	cat3 := sampleCatalogue(t, "violations.query")
	e.sendResults(t, e.resultsHeader(), cat3, batch.Results{})
	ops = e.waitCatalogue(t, 3)
	checkListed(t, ops.Operations, cat3, "licence.status", "exam.slots", "exam.book", "licence.renew")
	received := ops.Catalogue.Received
	e.post(t, tokenPortal, goodBody(t), 400, "unknown_operation")
	e.post(t, tokenPortal, `{"operation":"exam.slots","params":{"subject":3}}`, 202, "")
	e.post(t, tokenPortal, citizenBody(t, me, "licence.status"), 202, "")
	checkListed(t, e.operations(t, tokenKiosk).Operations, cat3, "licence.status", "exam.slots")

	// Envelope 2 arrives: the result counts, the older catalogue does
	// not.
	e.drop(t, n2, d2)
	st := e.waitStatus(t, bookID, batch.StatusDone)
	// exam.book is a write in the catalogue in force: rows_affected 0
	// is shown.
	if !strings.Contains(st.raw, `"rows_affected":0`) {
		t.Fatalf("booking status without rows_affected: %s", st.raw)
	}
	waitLog(t, &logs, "operation catalogue older than the stored one ignored")
	if o := e.operations(t, tokenPortal); o.Catalogue.Seq != 3 || len(o.Operations) != len(cat3.Operations) {
		t.Fatalf("after the late envelope: catalogue %+v, %d operations", o.Catalogue, len(o.Operations))
	}
	e.post(t, tokenPortal, goodBody(t), 400, "unknown_operation")

	// Envelope 4 carries a catalogue that does not parse, and a result.
	slotsID := e.post(t, tokenPortal, `{"operation":"exam.slots","params":{"subject":1}}`, 202, "")
	e.sendResults(t, e.resultsHeader(), badCatalogue, batch.Results{
		Results: []batch.Result{{RequestID: slotsID, Status: batch.StatusDone, Rows: []map[string]any{}}}})
	e.waitStatus(t, slotsID, batch.StatusDone)
	waitLog(t, &logs, "operation catalogue from the intranet does not parse; keeping the current one")
	if o := e.operations(t, tokenPortal); o.Catalogue.Seq != 3 {
		t.Fatalf("after the bad catalogue: %+v", o.Catalogue)
	}
	e.post(t, tokenPortal, goodBody(t), 400, "unknown_operation")
	e.post(t, tokenPortal, citizenBody(t, me, "licence.status"), 202, "")

	// A restart keeps catalogue 3, received when it was.
	e.restart(t)
	if r := e.do(t, "GET", "/readyz", "", "", nil); r.code != 200 {
		t.Fatalf("readyz after restart: HTTP %d %s", r.code, r.raw)
	}
	ops = e.operations(t, tokenPortal)
	if ops.Source != SourceCatalogue || ops.Catalogue.Seq != 3 || !ops.Catalogue.Received.Equal(received) {
		t.Fatalf("after restart: source %q catalogue %+v, want seq 3 received %s", ops.Source, ops.Catalogue, received)
	}
	checkListed(t, ops.Operations, cat3, "licence.status", "exam.slots", "exam.book", "licence.renew")
	e.post(t, tokenPortal, goodBody(t), 400, "unknown_operation")
	e.post(t, tokenPortal, citizenBody(t, me, "licence.status"), 202, "")

	// The log never shows an ID number.
	for _, id := range []string{me.IDNumber, them.IDNumber} {
		if strings.Contains(logs.String(), id) {
			t.Fatal("the log shows an ID number")
		}
	}
}

// TestAgent_CatalogueReplacesLocalPolicy starts on the local policy file,
// which the first catalogue replaces, also across a restart.
func TestAgent_CatalogueReplacesLocalPolicy(t *testing.T) {
	e := startEnv(t)
	ops := e.operations(t, tokenPortal)
	if ops.Source != SourceLocalPolicy || ops.Catalogue != nil {
		t.Fatalf("operations from %q, catalogue %+v, want the local policy", ops.Source, ops.Catalogue)
	}
	checkListed(t, ops.Operations, sampleCatalogue(t), "violations.query", "licence.status", "exam.slots", "exam.book", "licence.renew")
	e.post(t, tokenPortal, goodBody(t), 202, "")

	cat := sampleCatalogue(t, "violations.query")
	e.sendResults(t, e.resultsHeader(), cat, batch.Results{})
	e.waitCatalogue(t, 1)
	e.post(t, tokenPortal, goodBody(t), 400, "unknown_operation")

	e.restart(t)
	ops = e.operations(t, tokenPortal)
	if ops.Source != SourceCatalogue || ops.Catalogue == nil || ops.Catalogue.Seq != 1 {
		t.Fatalf("after restart: operations from %q, catalogue %+v", ops.Source, ops.Catalogue)
	}
	checkListed(t, ops.Operations, cat, "licence.status", "exam.slots", "exam.book", "licence.renew")
	e.post(t, tokenPortal, goodBody(t), 400, "unknown_operation")
}

// TestAgent_BadCatalogueFirst sends an unparsable catalogue to an agent
// without one: it stays unavailable, and the envelope is still applied.
func TestAgent_BadCatalogueFirst(t *testing.T) {
	var logs logBuffer
	e := startEnvWith(t, envOptions{noPolicy: true, log: jsonLogger(t, &logs)})
	for _, bad := range []string{badCatalogue, `{"version":1,"timezone":"Asia/Shanghai","clients":[],"operations":[],"extra":1}`, `{}`} {
		e.sendResults(t, e.resultsHeader(), bad, batch.Results{})
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(logs.String(), "does not parse; keeping the current one") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("three refused catalogues not logged within 10s:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r := e.do(t, "GET", "/v1/operations", tokenPortal, "", nil); r.code != 503 || r.reason() != "catalogue_unavailable" {
		t.Fatalf("operations: HTTP %d %s", r.code, r.raw)
	}
	// The envelopes were recorded: a good catalogue must come after them.
	e.sendResults(t, e.resultsHeader(), sampleCatalogue(t), batch.Results{})
	e.waitCatalogue(t, 4)
}

// waitLog waits until the log holds msg.
func waitLog(t *testing.T, logs *logBuffer, msg string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), msg) {
		if time.Now().After(deadline) {
			t.Fatalf("log lacks %q after 10s:\n%s", msg, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
