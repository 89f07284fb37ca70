package dmz

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/sample"
)

// logBuffer collects an agent's log lines for inspection.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// subjectBody returns a violations.query request for the second sample
// citizen's plate, carrying the JSON value subject (left out when empty).
// Its params hold no ID number: the subject binding supplies it.
func subjectBody(t testing.TB, subject string) string {
	t.Helper()
	params, err := json.Marshal(map[string]string{"plate": sample.Citizens()[1].Plate})
	if err != nil {
		t.Fatal(err)
	}
	body := `{"operation":"violations.query","params":` + string(params)
	if subject != "" {
		body += `,"subject":` + subject
	}
	return body + "}"
}

func TestAgent_SubmitBadSubject(t *testing.T) {
	e := startEnv(t)
	tests := []struct {
		name  string
		value string // the JSON value of "subject"
		leak  string // a part of it the answer must not echo
	}{
		{"number", `110101199003074514`, "110101199003074514"},
		{"null", `null`, ""},
		{"object", `{"id":"110101199003074514"}`, "110101199003074514"},
		{"array", `["110101199003074514"]`, "110101199003074514"},
		{"bool", `true`, ""},
		{"too long", `"` + strings.Repeat("7", batch.MaxSubject+1) + `"`, strings.Repeat("7", batch.MaxSubject)},
		{"space", `"110101 199003074514"`, "199003074514"},
		{"tab", `"110101\t199003074514"`, "199003074514"},
		{"control", `"\u0001110101199003074514"`, "110101199003074514"},
		{"NUL", `"110101199003074514\u0000"`, "110101199003074514"},
		{"full-width digits", `"１１０１０１１９９００３０７４５１４"`, "１１０１０１"},
		{"invalid UTF-8", "\"110101\xff199003074514\"", "199003074514"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, http.MethodPost, "/v1/requests", tokenPortal, subjectBody(t, tt.value), nil)
			// The code is the documented one, not whatever the constant holds.
			if r.code != http.StatusBadRequest || r.reason() != "bad_subject" {
				t.Fatalf("HTTP %d %s, want 400 bad_subject", r.code, r.raw)
			}
			if e, _ := r.body["error"].(map[string]any); e["param"] != "subject" {
				t.Fatalf("param %v, want subject: %s", e["param"], r.raw)
			}
			if tt.leak != "" && strings.Contains(r.raw, tt.leak) {
				t.Fatalf("answer echoes the subject: %s", r.raw)
			}
		})
	}
	// An empty subject is no subject: an operation without a subject
	// binding takes it, and one with a binding misses it.
	if r := e.do(t, http.MethodPost, "/v1/requests", tokenPortal, `{"operation":"exam.slots","params":{"subject":1},"subject":""}`, nil); r.code != http.StatusAccepted {
		t.Fatalf("empty subject: HTTP %d %s", r.code, r.raw)
	}
	if r := e.do(t, http.MethodPost, "/v1/requests", tokenPortal, subjectBody(t, `""`), nil); r.code != http.StatusBadRequest || r.reason() != "missing_subject" {
		t.Fatalf("empty subject on a bound operation: HTTP %d %s, want 400 missing_subject", r.code, r.raw)
	}
	if n := countRequests(t, e); n != 1 {
		t.Fatalf("%d requests in the spool, want only the one without a subject", n)
	}
}

// TestAgent_Subject follows a subject from the API into the sealed
// request envelope, and checks that neither the status answers nor the
// agent's log ever show it.
func TestAgent_Subject(t *testing.T) {
	var logs logBuffer
	log := slog.New(slog.NewJSONHandler(io.MultiWriter(&logs, tWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := startEnvLogger(t, log)
	// The params hold no ID number (the binding supplies it), so that
	// finding the subject anywhere means the subject leaked, not the
	// params.
	subject := sample.Citizens()[1].IDNumber
	other := "110101199003074514"
	if subject == other || strings.Contains(subjectBody(t, ""), subject) {
		t.Fatal("test subjects are not distinct")
	}
	key := map[string]string{"Idempotency-Key": "subject-1"}
	r := e.do(t, http.MethodPost, "/v1/requests", tokenPortal, subjectBody(t, `"`+subject+`"`), key)
	if r.code != http.StatusAccepted {
		t.Fatalf("submit with subject: HTTP %d %s", r.code, r.raw)
	}
	id := r.str("id")
	if strings.Contains(r.raw, subject) {
		t.Fatalf("202 answer shows the subject: %s", r.raw)
	}
	pr := e.do(t, http.MethodPost, "/v1/requests", tokenPortal, plainBody, nil)
	if pr.code != http.StatusAccepted {
		t.Fatalf("submit without subject: HTTP %d %s", pr.code, pr.raw)
	}
	plain := pr.str("id")

	// Idempotency covers the subject.
	for _, tt := range []struct {
		name, subject string
		code          int
	}{
		{"same subject", `"` + subject + `"`, http.StatusAccepted},
		{"other subject", `"` + other + `"`, http.StatusConflict},
		// The policy refuses it before the key is looked at.
		{"no subject", "", http.StatusBadRequest},
	} {
		r := e.do(t, http.MethodPost, "/v1/requests", tokenPortal, subjectBody(t, tt.subject), key)
		if r.code != tt.code || (tt.code == http.StatusAccepted && r.str("id") != id) ||
			(tt.code == http.StatusConflict && r.reason() != ReasonIdempotencyConflict) ||
			(tt.code == http.StatusBadRequest && r.reason() != "missing_subject") {
			t.Fatalf("%s: HTTP %d %s, want %d", tt.name, r.code, r.raw, tt.code)
		}
		if strings.Contains(r.raw, subject) || strings.Contains(r.raw, other) {
			t.Fatalf("%s: answer shows a subject: %s", tt.name, r.raw)
		}
	}
	// A request the policy refuses, with a subject, is logged without it.
	if r := e.do(t, http.MethodPost, "/v1/requests", tokenPortal,
		`{"operation":"drop.tables","params":{},"subject":"`+subject+`"}`, nil); r.code != http.StatusBadRequest || strings.Contains(r.raw, subject) {
		t.Fatalf("refused request: HTTP %d %s", r.code, r.raw)
	}

	// The intranet finds the subject in the request envelope, and only on
	// the request that carried it.
	opened := e.takeRequests(t, 2)
	got := map[string]string{}
	var acks []string
	for _, o := range opened {
		body, err := batch.DecodeRequests(o.Body)
		if err != nil {
			t.Fatal(err)
		}
		for _, req := range body.Requests {
			got[req.ID] = req.Subject
		}
		acks = append(acks, o.Header.ID)
	}
	if len(got) != 2 || got[id] != subject || got[plain] != "" {
		t.Fatalf("subjects in the envelopes %v, want %s on %s and none on %s", got, subject, id, plain)
	}

	sent := e.waitStatus(t, id, batch.StatusSent)
	name, data := e.sealResults(t, e.resultsHeader(), batch.Results{Acks: acks, Results: []batch.Result{
		{RequestID: id, Status: batch.StatusDone, Rows: []map[string]any{{"fine": 200}}},
		{RequestID: plain, Status: batch.StatusDone},
	}})
	e.drop(t, name, data)
	done := e.waitStatus(t, id, batch.StatusDone)
	for _, r := range []*reply{sent, done} {
		if strings.Contains(r.raw, subject) || strings.Contains(r.raw, `"subject"`) {
			t.Fatalf("status answer shows the subject: %s", r.raw)
		}
	}

	// The final request no longer holds its subject in the spool.
	db, err := sql.Open("sqlite3", "file:"+e.cfg.Spool+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM requests WHERE subject != ''`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d final requests still hold a subject (%v)", n, err)
	}

	// The status may turn done just before the ingest logs it.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "results applied") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out := logs.String()
	for _, want := range []string{"request accepted", "request refused by policy", "requests sealed", "results applied"} {
		if !strings.Contains(out, want) {
			t.Fatalf("log lacks %q, so it does not cover the subject's path:\n%s", want, out)
		}
	}
	if strings.Contains(out, subject) {
		t.Fatalf("the log shows the subject:\n%s", out)
	}
}

// TestAgent_SubjectBinding checks at the DMZ that a subject-bound
// operation sees only its own subject, and that only a client the policy
// trusts may assert a subject.
func TestAgent_SubjectBinding(t *testing.T) {
	e := startEnv(t)
	me, them := sample.Citizens()[0], sample.Citizens()[1]
	body := func(op string, params map[string]any, subject string) string {
		m := map[string]any{"operation": op, "params": params}
		if subject != "" {
			m["subject"] = subject
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	tests := []struct {
		name   string
		token  string
		body   string
		code   int
		reason string
	}{
		{"own id left out", tokenPortal, body("violations.query", map[string]any{"plate": me.Plate}, me.IDNumber), 202, ""},
		{"own id in params", tokenPortal, body("violations.query", map[string]any{"plate": me.Plate, "id_number": me.IDNumber}, me.IDNumber), 202, ""},
		{"own licence", tokenPortal, body("licence.status", map[string]any{}, me.IDNumber), 202, ""},
		{"another's violations", tokenPortal, body("violations.query", map[string]any{"plate": them.Plate, "id_number": them.IDNumber}, me.IDNumber), 400, "forbidden_subject"},
		{"another's licence", tokenPortal, body("licence.status", map[string]any{"id_number": them.IDNumber}, me.IDNumber), 400, "forbidden_subject"},
		{"booking for another", tokenPortal, body("exam.book", map[string]any{"slot_id": 1, "id_number": them.IDNumber}, me.IDNumber), 400, "forbidden_subject"},
		{"no subject", tokenPortal, body("licence.status", map[string]any{"id_number": me.IDNumber}, ""), 400, "missing_subject"},
		{"untrusted client", tokenOther, body("licence.status", map[string]any{}, me.IDNumber), 400, "subject_not_trusted"},
		{"untrusted client, unbound operation", tokenOther, `{"operation":"exam.slots","params":{"subject":1},"subject":"` + me.IDNumber + `"}`, 400, "subject_not_trusted"},
		{"untrusted client without subject", tokenOther, plainBody, 202, ""},
	}
	accepted := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, http.MethodPost, "/v1/requests", tt.token, tt.body, nil)
			if r.code != tt.code || r.reason() != tt.reason {
				t.Fatalf("HTTP %d %s, want %d %q", r.code, r.raw, tt.code, tt.reason)
			}
			if tt.code == http.StatusAccepted {
				accepted++
			}
			if r.code != http.StatusAccepted && (strings.Contains(r.raw, me.IDNumber) || strings.Contains(r.raw, them.IDNumber)) {
				t.Fatalf("answer shows an ID number: %s", r.raw)
			}
		})
	}
	if n := countRequests(t, e); n != accepted {
		t.Fatalf("%d requests in the spool, want the %d accepted", n, accepted)
	}
}
