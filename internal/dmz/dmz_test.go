package dmz

import (
	"database/sql"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/config"
	"github.com/ferrybridge/ferry/internal/envelope"
	"github.com/ferrybridge/ferry/internal/sample"
)

func TestAgent_HTTPErrors(t *testing.T) {
	e := startEnv(t)
	id := e.submit(t) // a request of client "portal"
	c := sample.Citizens()[0]
	tests := []struct {
		name   string
		method string
		path   string
		token  string
		body   string
		hdr    map[string]string
		code   int
		reason string
	}{
		{"missing token", "POST", "/v1/requests", "", goodBody(t), nil, 401, ReasonMissingToken},
		{"wrong token", "POST", "/v1/requests", "nope", goodBody(t), nil, 401, ReasonInvalidToken},
		{"bad json", "POST", "/v1/requests", tokenPortal, `{"operation":`, nil, 400, ReasonBadJSON},
		{"unknown field", "POST", "/v1/requests", tokenPortal, `{"operation":"violations.query","params":{},"x":1}`, nil, 400, ReasonBadJSON},
		{"trailing data", "POST", "/v1/requests", tokenPortal, goodBody(t) + `{}`, nil, 400, ReasonBadJSON},
		{"params not an object", "POST", "/v1/requests", tokenPortal, `{"operation":"violations.query","params":[1]}`, nil, 400, ReasonBadJSON},
		{"unknown operation", "POST", "/v1/requests", tokenPortal, `{"operation":"drop.tables","params":{}}`, nil, 400, "*"},
		{"bad param", "POST", "/v1/requests", tokenPortal, `{"operation":"violations.query","params":{"id_number":"1' OR 1=1","plate":"` + c.Plate + `"}}`, nil, 400, "*"},
		{"too large", "POST", "/v1/requests", tokenPortal, `{"operation":"violations.query","params":{"x":"` + strings.Repeat("a", MaxBodySize) + `"}}`, nil, 413, ReasonBodyTooLarge},
		{"params too large", "POST", "/v1/requests", tokenPortal, `{"operation":"violations.query","params":{"x":"` + strings.Repeat("a", batch.MaxParamsBytes) + `"}}`, nil, 400, ReasonParamsTooLarge},
		{"bad idempotency key", "POST", "/v1/requests", tokenPortal, goodBody(t), map[string]string{"Idempotency-Key": "has space"}, 400, ReasonBadIdempotencyKey},
		{"other client's id", "GET", "/v1/requests/" + id, tokenOther, "", nil, 404, ReasonNotFound},
		{"unknown id", "GET", "/v1/requests/0123456789abcdef0123456789abcdef", tokenPortal, "", nil, 404, ReasonNotFound},
		{"malformed id", "GET", "/v1/requests/../../etc", tokenPortal, "", nil, 404, ReasonNotFound},
		{"bad wait", "GET", "/v1/requests/" + id + "?wait=soon", tokenPortal, "", nil, 400, ReasonBadWait},
		{"status without token", "GET", "/v1/requests/" + id, "", "", nil, 401, ReasonMissingToken},
		{"wrong method", "DELETE", "/v1/requests/" + id, tokenPortal, "", nil, 405, ReasonMethodNotAllowed},
		{"no such endpoint", "GET", "/v2/x", tokenPortal, "", nil, 404, ReasonNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, tt.method, tt.path, tt.token, tt.body, tt.hdr)
			if r.code != tt.code {
				t.Fatalf("HTTP %d, want %d: %s", r.code, tt.code, r.raw)
			}
			if tt.reason == "*" {
				if r.reason() == "" {
					t.Fatalf("no reason code: %s", r.raw)
				}
			} else if r.reason() != tt.reason {
				t.Fatalf("reason %q, want %q: %s", r.reason(), tt.reason, r.raw)
			}
			if strings.Contains(r.raw, e.dir) || strings.Contains(r.raw, "goroutine") {
				t.Fatalf("error leaks internals: %s", r.raw)
			}
		})
	}
	// None of the bad requests was stored: only the first one is.
	if n := countRequests(t, e); n != 1 {
		t.Fatalf("%d requests in the spool, want 1", n)
	}
}

func countRequests(t *testing.T, e *env) int {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+e.cfg.Spool+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM requests`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAgent_SubmitDurableAndIdempotent(t *testing.T) {
	e := startEnv(t)
	key := map[string]string{"Idempotency-Key": "order-42"}
	r := e.do(t, "POST", "/v1/requests", tokenPortal, goodBody(t), key)
	if r.code != http.StatusAccepted || r.str("status") != "queued" || !batch.ValidID(r.str("id")) {
		t.Fatalf("submit: %d %s", r.code, r.raw)
	}
	id := r.str("id")
	// 202 means committed: another handle on the file sees the row now.
	db, err := sql.Open("sqlite3", "file:"+e.cfg.Spool+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM requests WHERE id = ?`, id).Scan(&n); err != nil || n != 1 {
		t.Fatalf("row after 202: %d %v", n, err)
	}
	again := e.do(t, "POST", "/v1/requests", tokenPortal, goodBody(t), key)
	if again.code != http.StatusAccepted || again.str("id") != id {
		t.Fatalf("repeat: %d %s, want id %s", again.code, again.raw, id)
	}
	other := citizenBody(t, sample.Citizens()[1], "violations.query")
	if r := e.do(t, "POST", "/v1/requests", tokenPortal, other, key); r.code != http.StatusConflict || r.reason() != ReasonIdempotencyConflict {
		t.Fatalf("conflict: %d %s", r.code, r.raw)
	}
	if r := e.do(t, "GET", "/v1/operations", tokenPortal, "", nil); r.code != 200 || !strings.Contains(r.raw, `"violations.query"`) {
		t.Fatalf("operations: %d %s", r.code, r.raw)
	}
}

// TestAgent_RoundTrip plays the intranet: it takes the request envelope
// off the medium, answers it, and checks that a long poll started before
// the answer returns with the result, and that the envelope was acked.
func TestAgent_RoundTrip(t *testing.T) {
	e := startEnv(t)
	id := e.submit(t)
	polled := make(chan *reply, 1)
	start := time.Now()
	go func() { polled <- e.do(t, "GET", "/v1/requests/"+id+"?wait=20s", tokenPortal, "", nil) }()
	opened := e.takeRequests(t, 1)
	if h := opened[0].Header; h.Seq != 1 || h.Kind != envelope.KindRequests || h.Channel != RequestsChannel || h.From != "dmz" || h.To != "intranet" {
		t.Fatalf("request envelope header %+v", h)
	}
	e.waitStatus(t, id, batch.StatusSent)
	name, data := e.sealResults(t, e.resultsHeader(), batch.Results{
		Acks:    []string{opened[0].Header.ID},
		Results: []batch.Result{{RequestID: id, Status: batch.StatusDone, Rows: []map[string]any{{"fine": 200}}}},
	})
	e.drop(t, name, data)
	r := <-polled
	if r.code != 200 || r.str("status") != batch.StatusDone || !strings.Contains(r.raw, `"result":[{"fine":200}]`) {
		t.Fatalf("long poll: %d %s", r.code, r.raw)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("long poll took %s", d)
	}
	// A long poll on a final request returns at once.
	t0 := time.Now()
	if r := e.do(t, "GET", "/v1/requests/"+id+"?wait=20s", tokenPortal, "", nil); r.str("status") != batch.StatusDone || time.Since(t0) > 5*time.Second {
		t.Fatalf("second poll: %s after %s", r.raw, time.Since(t0))
	}
}

func TestAgent_IngestBadFiles(t *testing.T) {
	e := startEnv(t)
	id1, id2 := e.submit(t), e.submit(t)
	e.takeRequests(t, 2)
	qdir := filepath.Join(e.dir, "state", "quarantine")

	// Tampered: a good envelope with one byte flipped near its end.
	name, data := e.sealResults(t, e.resultsHeader(), batch.Results{Results: []batch.Result{{RequestID: id1, Status: batch.StatusDone}}})
	bad := append([]byte(nil), data...)
	bad[len(bad)-5] ^= 0x55
	e.drop(t, "tampered-"+name, bad)
	// Misaddressed: sealed to this zone's key, but To names another zone.
	h := e.resultsHeader()
	h.To = "elsewhere"
	mname, mdata := e.sealResults(t, h, batch.Results{Results: []batch.Result{{RequestID: id1, Status: batch.StatusDone}}})
	e.drop(t, mname, mdata)
	// Then a good one, which must still be applied.
	e.seq -= 2 // the two bad ones never counted
	gname, gdata := e.sealResults(t, e.resultsHeader(), batch.Results{Results: []batch.Result{
		{RequestID: id1, Status: batch.StatusDone}, {RequestID: id2, Status: batch.StatusRejected, Reason: "rate_limited", RetryAfter: 6}}})
	e.drop(t, gname, gdata)
	if r := e.waitStatus(t, id1, batch.StatusDone); strings.Contains(r.raw, "retry_after") {
		t.Fatalf("done request with retry_after: %s", r.raw)
	}
	if r := e.waitStatus(t, id2, batch.StatusRejected); r.str("reason") != "rate_limited" || !strings.Contains(r.raw, `"retry_after":6`) {
		t.Fatalf("rejected request: %s, want reason rate_limited and retry_after 6", r.raw)
	}
	for _, n := range []string{"tampered-" + name, mname} {
		waitFile(t, filepath.Join(qdir, n))
		reason, err := os.ReadFile(waitFile(t, filepath.Join(qdir, n+".reason")))
		if err != nil || len(reason) == 0 {
			t.Fatalf("reason file of %s: %q %v", n, reason, err)
		}
		t.Logf("%s quarantined: %s", n, strings.TrimSpace(string(reason)))
	}
	// A duplicate of the good one (another file name) is dropped, not
	// quarantined, and changes nothing.
	e.drop(t, "copy-"+gname, gdata)
	inbox := filepath.Join(e.dir, "state", "inbox")
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, errDrop := os.Stat(filepath.Join(e.dir, "exchange", "results", "copy-"+gname))
		_, errIn := os.Stat(filepath.Join(inbox, "copy-"+gname))
		if errors.Is(errDrop, os.ErrNotExist) && errors.Is(errIn, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("duplicate not consumed within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(qdir, "copy-"+gname)); err == nil {
		t.Fatal("duplicate was quarantined, want dropped")
	}
}

func waitFile(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return path
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within 10s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLoadConfig_Errors(t *testing.T) {
	good := func(t *testing.T) string {
		dir := t.TempDir()
		path, _, _ := writeDeployment(t, dir, "")
		return path
	}
	tests := []struct {
		name  string
		edit  func(string) string
		field string
		line  int
	}{
		{"unknown key", func(s string) string { return s + "colour: blue\n" }, "colour", 26},
		{"bad zone", func(s string) string { return strings.Replace(s, "zone: dmz", "zone: DMZ!", 1) }, "zone", 1},
		{"same media", func(s string) string { return strings.Replace(s, "dir: exchange/results", "dir: exchange/requests", 1) }, "receive.dir", 0},
		{"zero batch", func(s string) string { return strings.Replace(s, "max_requests: 256", "max_requests: 0", 1) }, "batch.max_requests", 17},
		{"bad token hash", func(s string) string { return strings.Replace(s, "token_sha256: ", "token_sha256: zz", 1) }, "clients[0].token_sha256", 23},
		{"bad duration", func(s string) string { return strings.Replace(s, "envelope_ttl: 1h", "envelope_ttl: soon", 1) }, "envelope_ttl", 19},
		{"audit retention too short", func(s string) string { return s + "audit_retention: 179d\n" }, "audit_retention", 26},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := good(t)
			data, _ := os.ReadFile(path)
			if err := os.WriteFile(path, []byte(tt.edit(string(data))), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(path)
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v, want *config.Error", err)
			}
			if ce.File != path || ce.Field != tt.field || (tt.line != 0 && ce.Line != tt.line) {
				t.Fatalf("error %q: file %s field %q line %d, want field %q line %d", err, ce.File, ce.Field, ce.Line, tt.field, tt.line)
			}
		})
	}
	// A good file loads, with paths resolved against its directory.
	path := good(t)
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Spool != filepath.Join(filepath.Dir(path), "state", "spool.db") {
		t.Fatalf("spool %s not resolved", cfg.Spool)
	}
}
