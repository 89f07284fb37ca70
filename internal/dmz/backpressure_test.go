package dmz

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/envelope"
	"github.com/ferrybridge/ferry/internal/sample"
)

// logRecords keeps the level and message of every record an agent logs,
// and passes each record on to the test's log.
type logRecords struct {
	next slog.Handler
	mu   *sync.Mutex
	recs *[]string
}

func newLogRecords(t testing.TB) (*slog.Logger, func(level slog.Level, msg string) int) {
	h := logRecords{next: testLogger(t).Handler(), mu: &sync.Mutex{}, recs: &[]string{}}
	count := func(level slog.Level, msg string) int {
		h.mu.Lock()
		defer h.mu.Unlock()
		n := 0
		for _, r := range *h.recs {
			if r == level.String()+" "+msg {
				n++
			}
		}
		return n
	}
	return slog.New(h), count
}

func (h logRecords) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h logRecords) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	*h.recs = append(*h.recs, r.Level.String()+" "+r.Message)
	h.mu.Unlock()
	return h.next.Handle(ctx, r)
}

func (h logRecords) WithAttrs(as []slog.Attr) slog.Handler {
	h.next = h.next.WithAttrs(as)
	return h
}

func (h logRecords) WithGroup(name string) slog.Handler {
	h.next = h.next.WithGroup(name)
	return h
}

// The log lines of the overloaded state.
const (
	msgOverloaded = "limit reached: refusing new requests"
	msgRecovered  = "back under the limits: accepting new requests"
)

// keyed submits body with an Idempotency-Key.
func (e *env) keyed(t *testing.T, key, body string) *reply {
	t.Helper()
	return e.do(t, http.MethodPost, "/v1/requests", tokenPortal, body, map[string]string{"Idempotency-Key": key})
}

// checkOverloaded checks a 503 overloaded answer for limit.
func checkOverloaded(t *testing.T, r *reply, limit string) {
	t.Helper()
	if r.code != http.StatusServiceUnavailable || r.reason() != ReasonOverloaded {
		t.Fatalf("want 503 %s, got %d %s", ReasonOverloaded, r.code, r.raw)
	}
	want := map[string]string{LimitBacklog: "too many requests are waiting",
		LimitUnacked: "too many request envelopes are waiting"}[limit]
	msg, _ := r.body["error"].(map[string]any)["message"].(string)
	if !strings.Contains(msg, want) {
		t.Fatalf("message %q does not say %q", msg, want)
	}
	if _, ok := r.body["error"].(map[string]any)["param"]; ok {
		t.Fatalf("an overloaded answer names a param: %s", r.raw)
	}
	for _, c := range msg {
		if c >= '0' && c <= '9' {
			t.Fatalf("message %q gives numbers", msg)
		}
	}
}

// postRaw submits body and returns the answer with its headers.
func (e *env) postRaw(t *testing.T, body string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.base+"/v1/requests", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tokenPortal)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// answerAll plays the intranet: it takes every request envelope from the
// medium (at least want requests), and answers each request done and
// acknowledges each envelope in one results envelope.
func (e *env) answerAll(t *testing.T, want int) []string {
	t.Helper()
	var res batch.Results
	var ids []string
	for _, o := range e.takeRequests(t, want) {
		res.Acks = append(res.Acks, o.Header.ID)
		body, err := batch.DecodeRequests(o.Body)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range body.Requests {
			res.Results = append(res.Results, batch.Result{RequestID: r.ID, Status: batch.StatusDone})
			ids = append(ids, r.ID)
		}
	}
	name, data := e.sealResults(t, e.resultsHeader(), res)
	e.drop(t, name, data)
	return ids
}

// waitAccepted submits body until it is accepted (the agent counts its
// backlog again at most every backlogRefresh) and returns the answer.
func (e *env) waitAccepted(t *testing.T, key, body string) *reply {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := e.keyed(t, key, body)
		if r.code == http.StatusAccepted {
			return r
		}
		if r.code != http.StatusServiceUnavailable || r.reason() != ReasonOverloaded || time.Now().After(deadline) {
			t.Fatalf("still refused after 10s (or another answer): %d %s", r.code, r.raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAgent_BackpressureBacklog(t *testing.T) {
	log, count := newLogRecords(t)
	e := startEnvWith(t, envOptions{log: log, extra: "limits: {max_backlog: 3, max_unacked: 1000, retry_after: 2500ms}\n"})
	// Five different requests: the sample has fewer citizens.
	cit := sample.Citizens()
	bodies := make([]string, 5)
	for i := range bodies {
		bodies[i] = citizenBody(t, cit[i%len(cit)], []string{"licence.status", "violations.query"}[i%2])
	}
	var ids []string
	for i := range 3 {
		r := e.keyed(t, fmt.Sprint("k", i), bodies[i])
		if r.code != http.StatusAccepted {
			t.Fatalf("submit %d: %d %s", i, r.code, r.raw)
		}
		ids = append(ids, r.str("id"))
	}
	// The fourth is refused at once: the intake's own count, not the
	// next refresh, knows the backlog is full.
	resp := e.postRaw(t, bodies[3], map[string]string{"Idempotency-Key": "k3"})
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "3" {
		t.Fatalf("fourth: HTTP %d, Retry-After %q; want 503 and 3 (2.5s rounded up)", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	checkOverloaded(t, e.keyed(t, "k3", bodies[3]), LimitBacklog)
	checkOverloaded(t, e.do(t, http.MethodPost, "/v1/requests", tokenPortal, bodies[4], nil), LimitBacklog)
	if n := countRequests(t, e); n != 3 {
		t.Fatalf("%d requests stored, want 3: a refused request was stored", n)
	}
	// A retry of a stored request gets its stored answer; a key reused
	// for another request is still a conflict.
	if r := e.keyed(t, "k1", bodies[1]); r.code != http.StatusAccepted || r.str("id") != ids[1] {
		t.Fatalf("retry of an accepted request: %d %s, want 202 with id %s", r.code, r.raw, ids[1])
	}
	if r := e.keyed(t, "k1", bodies[4]); r.code != http.StatusConflict || r.reason() != ReasonIdempotencyConflict {
		t.Fatalf("conflicting retry: %d %s", r.code, r.raw)
	}
	// Reads are never refused.
	if r := e.status(t, ids[0]); r.code != http.StatusOK || r.str("status") == "" {
		t.Fatalf("status read while overloaded: %d %s", r.code, r.raw)
	}
	if r := e.do(t, http.MethodGet, "/v1/operations", tokenPortal, "", nil); r.code != http.StatusOK {
		t.Fatalf("operations while overloaded: %d %s", r.code, r.raw)
	}
	if r := e.do(t, http.MethodGet, "/readyz", "", "", nil); r.code != http.StatusServiceUnavailable || r.reason() != ReasonNotReady {
		t.Fatalf("readyz while overloaded: %d %s", r.code, r.raw)
	}
	if st := e.agent.Backpressure(); st.Overloaded != LimitBacklog || st.Refused != 3 || st.Backlog != 3 {
		t.Fatalf("Backpressure %+v, want overloaded by the backlog, 3 refused, backlog 3", st)
	}

	// The intranet answers: the backlog drains and requests are accepted
	// again.
	answered := e.answerAll(t, 3)
	if len(answered) != 3 {
		t.Fatalf("%d requests crossed, want 3", len(answered))
	}
	for _, id := range ids {
		e.waitStatus(t, id, batch.StatusDone)
	}
	r := e.waitAccepted(t, "k3", bodies[3])
	if r.str("status") != batch.StatusQueued {
		t.Fatalf("accepted again: %s", r.raw)
	}
	if r := e.do(t, http.MethodGet, "/readyz", "", "", nil); r.code != http.StatusOK {
		t.Fatalf("readyz once drained: %d %s", r.code, r.raw)
	}
	if n := countRequests(t, e); n != 4 {
		t.Fatalf("%d requests stored, want 4", n)
	}
	// One line on entering and one on leaving, not one per refusal.
	if w, i := count(slog.LevelWarn, msgOverloaded), count(slog.LevelInfo, msgRecovered); w != 1 || i != 1 {
		t.Fatalf("%d WARN %q and %d INFO %q lines, want 1 and 1", w, msgOverloaded, i, msgRecovered)
	}
}

func TestAgent_BackpressureUnacked(t *testing.T) {
	log, count := newLogRecords(t)
	e := startEnvWith(t, envOptions{log: log, extra: "limits: {max_backlog: 1000, max_unacked: 2, retry_after: 1s}\n"})
	// Two envelopes of one request each, neither acknowledged: the
	// intranet does not answer. Each is taken off the medium before the
	// next request, so that each request gets its own envelope.
	var taken []*envelope.Opened
	var ids []string
	for i := range 2 {
		r := e.keyed(t, fmt.Sprint("u", i), plainBody)
		if r.code != http.StatusAccepted {
			t.Fatalf("submit %d: %d %s", i, r.code, r.raw)
		}
		ids = append(ids, r.str("id"))
		taken = append(taken, e.takeRequests(t, 1)...)
	}
	// The window is counted at most backlogRefresh later.
	deadline := time.Now().Add(5 * time.Second)
	for e.agent.Backpressure().Unacked < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("Backpressure %+v after 5s, want 2 unacked", e.agent.Backpressure())
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp := e.postRaw(t, plainBody, map[string]string{"Idempotency-Key": "u2"})
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("third: HTTP %d, Retry-After %q; want 503 and 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	checkOverloaded(t, e.keyed(t, "u2", plainBody), LimitUnacked)
	if n := countRequests(t, e); n != 2 {
		t.Fatalf("%d requests stored, want 2", n)
	}
	if r := e.keyed(t, "u0", plainBody); r.code != http.StatusAccepted || r.str("id") != ids[0] {
		t.Fatalf("retry of an accepted request: %d %s, want 202 with id %s", r.code, r.raw, ids[0])
	}
	if r := e.status(t, ids[1]); r.code != http.StatusOK {
		t.Fatalf("status read while overloaded: %d %s", r.code, r.raw)
	}
	if st := e.agent.Backpressure(); st.Overloaded != LimitUnacked {
		t.Fatalf("Backpressure %+v, want overloaded by the unacknowledged window", st)
	}

	// Acknowledge both envelopes, with their results.
	res := batch.Results{}
	for i, o := range taken {
		res.Acks = append(res.Acks, o.Header.ID)
		res.Results = append(res.Results, batch.Result{RequestID: ids[i], Status: batch.StatusDone})
	}
	name, data := e.sealResults(t, e.resultsHeader(), res)
	e.drop(t, name, data)
	e.waitAccepted(t, "u2", plainBody)
	if w, i := count(slog.LevelWarn, msgOverloaded), count(slog.LevelInfo, msgRecovered); w != 1 || i != 1 {
		t.Fatalf("%d WARN %q and %d INFO %q lines, want 1 and 1", w, msgOverloaded, i, msgRecovered)
	}
}

// TestAgent_BackpressureBurst checks the bound the gate guarantees: however many
// submissions arrive at once between two counts, the requests stored
// never exceed max_backlog.
func TestAgent_BackpressureBurst(t *testing.T) {
	e := startEnvWith(t, envOptions{extra: "limits: {max_backlog: 20, max_unacked: 1000, retry_after: 1s}\n"})
	const clients = 64
	var wg sync.WaitGroup
	codes := make([]int, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = e.postRaw(t, plainBody, nil).StatusCode
		}()
	}
	wg.Wait()
	accepted := 0
	for _, c := range codes {
		switch c {
		case http.StatusAccepted:
			accepted++
		case http.StatusServiceUnavailable:
		default:
			t.Fatalf("HTTP %d", c)
		}
	}
	if n := countRequests(t, e); accepted != 20 || n != 20 {
		t.Fatalf("%d accepted and %d stored of %d at once, want exactly max_backlog (20)", accepted, n, clients)
	}
}
