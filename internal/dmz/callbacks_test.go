package dmz

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/alarm"
	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/callback"
)

// cbReceiver is a client's callback endpoint: it answers each POST as
// fail says and keeps the ones it answered 2xx.
type cbReceiver struct {
	mu        sync.Mutex
	attempts  map[string]int    // by webhook-id
	delivered map[string][]byte // by webhook-id: the body
	secret    []byte
	fail      func(id string, attempt int) int // 0: answer 204
	srv       *httptest.Server
	bad       []string
}

func newCBReceiver(t *testing.T, secret []byte, fail func(id string, attempt int) int) *cbReceiver {
	r := &cbReceiver{attempts: map[string]int{}, delivered: map[string][]byte{}, secret: secret, fail: fail}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		id := req.Header.Get("webhook-id")
		r.mu.Lock()
		defer r.mu.Unlock()
		if err := callback.Verify(r.secret, req.Header, body, time.Now()); err != nil || req.Header.Get("Idempotency-Key") != id {
			r.bad = append(r.bad, id)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		r.attempts[id]++
		if code := r.fail(id, r.attempts[id]); code != 0 {
			w.WriteHeader(code)
			return
		}
		r.delivered[id] = body
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *cbReceiver) wait(t *testing.T, id string) []byte {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r.mu.Lock()
		body, ok := r.delivered[id]
		bad := r.bad
		r.mu.Unlock()
		if len(bad) > 0 {
			t.Fatalf("callbacks that do not verify: %v", bad)
		}
		if ok {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("callback %s not delivered within 15s (attempts %v)", id, r.attempts)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startCallbackEnv starts an agent whose client portal has a callback
// to a receiver failing as fail says.
func startCallbackEnv(t *testing.T, fail func(id string, attempt int) int) (*env, *cbReceiver) {
	t.Helper()
	var recv *cbReceiver
	var e *env
	e = startEnvWith(t, envOptions{
		// The extra lines extend the harness's last client, "other",
		// which the tests submit as.
		extra: "    callback:\n      url: URL\n      secret_file: keys/other-callback.secret\n      allow_private: true\n      retries: 0\n      timeout: 2s\n",
		setup: func(dir string) {
			p := filepath.Join(dir, "keys", "other-callback.secret")
			if err := alarm.GenerateSecret(p); err != nil {
				t.Fatal(err)
			}
			secret, err := alarm.ReadSecret(p)
			if err != nil {
				t.Fatal(err)
			}
			recv = newCBReceiver(t, secret, fail)
			rewrite(t, filepath.Join(dir, "dmz.yaml"), "url: URL", "url: "+recv.srv.URL+"/ferry/results")
		},
		beforeRun: func(a *Agent) { a.callbackRetry = 50 * time.Millisecond },
	})
	return e, recv
}

// submitAs submits the harness's good body as client other.
func (e *env) submitAs(t *testing.T, token string) string {
	t.Helper()
	r := e.do(t, http.MethodPost, "/v1/requests", token, `{"operation":"exam.slots","params":{"subject":1}}`, nil)
	if r.code != http.StatusAccepted {
		t.Fatalf("submit: HTTP %d %s", r.code, r.raw)
	}
	return r.str("id")
}

// TestCallbacks: a callback client's result is POSTed, signed, with the
// idempotency key <id>-<status>, the same body as GET answers; a
// receiver that fails is tried again until it takes it; a held request
// is called back when held and when final; another client gets none.
func TestCallbacks(t *testing.T) {
	e, recv := startCallbackEnv(t, func(id string, attempt int) int {
		if strings.HasSuffix(id, "-done") && attempt <= 2 {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	id := e.submitAs(t, tokenOther)
	held := e.submitAs(t, tokenOther)
	portal := e.submit(t)
	opened := e.takeRequests(t, 3)
	_ = opened
	name, data := e.sealResults(t, e.resultsHeader(), batch.Results{Results: []batch.Result{
		{RequestID: id, Status: batch.StatusDone, Rows: []map[string]any{{"fine": 200}}},
		{RequestID: held, Status: batch.StatusHeld, Reason: "approval_required", Message: "waits for an admin"},
		{RequestID: portal, Status: batch.StatusDone},
	}})
	e.drop(t, name, data)
	body := recv.wait(t, id+"-done")
	get := e.do(t, http.MethodGet, "/v1/requests/"+id, tokenOther, "", nil)
	if strings.TrimSpace(string(body)) != strings.TrimSpace(get.raw) {
		t.Fatalf("callback body\n%s\nGET\n%s", body, get.raw)
	}
	recv.mu.Lock()
	if n := recv.attempts[id+"-done"]; n != 3 {
		t.Errorf("%d attempts of a callback failing twice, want 3", n)
	}
	recv.mu.Unlock()
	var st statusReply
	if err := json.Unmarshal(recv.wait(t, held+"-held"), &st); err != nil || st.Status != batch.StatusHeld || st.Reason != "approval_required" {
		t.Fatalf("held callback %+v %v", st, err)
	}
	// The held request's final result: a second callback.
	h := e.resultsHeader()
	name, data = e.sealResults(t, h, batch.Results{Results: []batch.Result{{RequestID: held, Status: batch.StatusRejected, Reason: "approval_denied"}}})
	e.drop(t, name, data)
	if err := json.Unmarshal(recv.wait(t, held+"-rejected"), &st); err != nil || st.Reason != "approval_denied" {
		t.Fatalf("final callback %+v %v", st, err)
	}
	// Portal has no callback: nothing for its request, and nothing due.
	recv.mu.Lock()
	for k := range recv.attempts {
		if strings.HasPrefix(k, portal) {
			t.Errorf("a callback for a client without one: %s", k)
		}
	}
	recv.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := e.agent.spool.CountCallbacksDue(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d callbacks still due", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCallbacks_restartAndRefusal: a callback pending when the agent
// stops is delivered after it starts again; one the receiver refuses
// with a 4xx or a redirect is abandoned at once, not retried.
func TestCallbacks_restartAndRefusal(t *testing.T) {
	var mu sync.Mutex
	down := true
	e, recv := startCallbackEnv(t, func(id string, attempt int) int {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return http.StatusBadGateway
		}
		if strings.HasPrefix(id, "refuse") {
			return http.StatusBadRequest
		}
		return 0
	})
	id := e.submitAs(t, tokenOther)
	e.takeRequests(t, 1)
	name, data := e.sealResults(t, e.resultsHeader(), batch.Results{Results: []batch.Result{{RequestID: id, Status: batch.StatusDone}}})
	e.drop(t, name, data)
	deadline := time.Now().Add(10 * time.Second)
	for {
		recv.mu.Lock()
		n := recv.attempts[id+"-done"]
		recv.mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the failing receiver got %d attempts", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.stop()
	mu.Lock()
	down = false
	mu.Unlock()
	e.start(t, e.cfgPath)
	recv.wait(t, id+"-done")

	// A redirect: abandoned after one attempt.
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		recv.mu.Lock()
		recv.attempts[r.Header.Get("webhook-id")]++
		recv.mu.Unlock()
		http.Redirect(w, r, recv.srv.URL, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirect.Close)
	e.rewriteConfig(t, "url: "+recv.srv.URL, "url: "+redirect.URL)
	id2 := e.submitAs(t, tokenOther)
	e.takeRequests(t, 1)
	name, data = e.sealResults(t, e.resultsHeader(), batch.Results{Results: []batch.Result{{RequestID: id2, Status: batch.StatusDone}}})
	e.drop(t, name, data)
	deadline = time.Now().Add(10 * time.Second)
	for {
		n, err := e.agent.spool.CountCallbacksDue(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		recv.mu.Lock()
		a := recv.attempts[id2+"-done"]
		recv.mu.Unlock()
		if n == 0 && a > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("redirected callback: %d due, %d attempts", n, a)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // four retry periods
	recv.mu.Lock()
	defer recv.mu.Unlock()
	if a := recv.attempts[id2+"-done"]; a != 1 {
		t.Fatalf("a redirected callback was tried %d times, want 1", a)
	}
	if _, ok := recv.delivered[id2+"-done"]; ok {
		t.Fatal("the redirect was followed")
	}
}

// rewrite replaces old with new in the file at path.
func rewrite(t *testing.T, path, old, new string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(data), old, new, 1)
	if text == string(data) {
		t.Fatalf("%s does not hold %q", path, old)
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}
