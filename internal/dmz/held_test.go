package dmz

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/envelope"
	"github.com/ferrybridge/ferry/internal/policy"
	"github.com/ferrybridge/ferry/internal/sample"
)

// renewBody is a licence.renew request of the first sample citizen: the
// sample policy's write that needs an admin's approval.
func renewBody(t testing.TB) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"operation": "licence.renew", "params": map[string]any{},
		"subject": sample.Citizens()[0].IDNumber})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (e *env) submitBody(t testing.TB, body string) string {
	t.Helper()
	r := e.do(t, http.MethodPost, "/v1/requests", tokenPortal, body, nil)
	if r.code != http.StatusAccepted {
		t.Fatalf("submit: HTTP %d %s", r.code, r.raw)
	}
	return r.str("id")
}

// pollAsync starts GET /v1/requests/{id}?wait=… and returns once the poll
// waits on the agent, so that a result dropped afterwards must wake it.
func (e *env) pollAsync(t *testing.T, id, wait string) <-chan *reply {
	t.Helper()
	out := make(chan *reply, 1)
	go func() { out <- e.do(t, http.MethodGet, "/v1/requests/"+id+"?wait="+wait, tokenPortal, "", nil) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.agent.waiters.mu.Lock()
		n := len(e.agent.waiters.m[id])
		e.agent.waiters.mu.Unlock()
		if n > 0 {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatal("long poll not waiting after 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// envelopeIDs returns the ids of opened envelopes, for acks.
func envelopeIDs(opened []*envelope.Opened) []string {
	var ids []string
	for _, o := range opened {
		ids = append(ids, o.Header.ID)
	}
	return ids
}

// appliedLines returns the "results applied" log lines, decoded.
func appliedLines(t *testing.T, logs *logBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if m["msg"] == "results applied" {
			out = append(out, m)
		}
	}
	return out
}

// waitConsumed waits until the result file name has left the medium and
// the inbox, and checks that it was not quarantined.
func (e *env) waitConsumed(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, errDrop := os.Stat(filepath.Join(e.dir, "exchange", "results", name))
		_, errIn := os.Stat(filepath.Join(e.dir, "state", "inbox", name))
		if errors.Is(errDrop, os.ErrNotExist) && errors.Is(errIn, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not consumed within 10s", name)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "state", "quarantine", name)); err == nil {
		t.Fatalf("%s was quarantined", name)
	}
}

// TestAgent_HeldThenFinal plays an intranet that holds a write for
// approval: the held result acknowledges the request envelope and wakes a
// waiting long poll, GET shows held, a long poll on the held request waits,
// and the final result arrives later in an envelope that acknowledges
// nothing.
func TestAgent_HeldThenFinal(t *testing.T) {
	var logs logBuffer
	log := slog.New(slog.NewJSONHandler(io.MultiWriter(&logs, tWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := startEnvLogger(t, log)
	id := e.submitBody(t, renewBody(t))
	opened := e.takeRequests(t, 1)
	e.waitStatus(t, id, batch.StatusSent)

	polled := e.pollAsync(t, id, "10s")
	const msg = "operation licence.renew waits for an admin's approval"
	name, data := e.sealResults(t, e.resultsHeader(), batch.Results{Acks: envelopeIDs(opened),
		Results: []batch.Result{{RequestID: id, Status: batch.StatusHeld, Reason: policy.ReasonApprovalRequired, Message: msg}}})
	e.drop(t, name, data)
	// Becoming held ends a long poll: the client learns the write waits.
	start := time.Now()
	r := <-polled
	if r.code != http.StatusOK || r.str("status") != batch.StatusHeld || time.Since(start) > 5*time.Second {
		t.Fatalf("long poll across the held result: HTTP %d %s after %s, want held at once", r.code, r.raw, time.Since(start))
	}
	r = e.status(t, id)
	if r.str("status") != batch.StatusHeld || r.str("reason") != policy.ReasonApprovalRequired || r.str("message") != msg {
		t.Fatalf("held request: %s", r.raw)
	}
	for _, k := range []string{"result", "rows_affected", "retry_after"} {
		if _, ok := r.body[k]; ok {
			t.Fatalf("held request shows %s: %s", k, r.raw)
		}
	}
	// Held is not final: a long poll on a held request waits its time.
	t0 := time.Now()
	if r := e.do(t, http.MethodGet, "/v1/requests/"+id+"?wait=300ms", tokenPortal, "", nil); r.str("status") != batch.StatusHeld ||
		time.Since(t0) < 250*time.Millisecond {
		t.Fatalf("poll on a held request: %s after %s, want held after the wait", r.raw, time.Since(t0))
	}

	// The admin approves: the final result comes with no ack.
	polled = e.pollAsync(t, id, "10s")
	name, data = e.sealResults(t, e.resultsHeader(), batch.Results{Acks: []string{},
		Results: []batch.Result{{RequestID: id, Status: batch.StatusDone, Rows: []map[string]any{}, RowsAffected: 1}}})
	e.drop(t, name, data)
	r = <-polled
	if r.str("status") != batch.StatusDone || !strings.Contains(r.raw, `"rows_affected":1`) || r.str("reason") != "" {
		t.Fatalf("long poll across the final result: %s", r.raw)
	}
	e.waitConsumed(t, name)

	lines := appliedLines(t, &logs)
	if len(lines) != 2 {
		t.Fatalf("%d results applied log lines, want 2", len(lines))
	}
	for i, want := range []struct{ final, held, acked float64 }{{0, 1, 1}, {1, 0, 0}} {
		l := lines[i]
		if l[logFinal] != want.final || l[logHeld] != want.held || l[logAcked] != want.acked {
			t.Errorf("results applied line %d: %v, want final %v held %v acked %v", i, l, want.final, want.held, want.acked)
		}
	}
}

// TestAgent_HeldAfterFinal delivers a request's final result before its
// held result (the medium reorders files): the held result is stale and
// ignored, and its acknowledgement does not fail the other request, which
// it holds, for want of a result.
func TestAgent_HeldAfterFinal(t *testing.T) {
	e := startEnv(t)
	a, b := e.submitBody(t, renewBody(t)), e.submitBody(t, renewBody(t))
	opened := e.takeRequests(t, 2)
	e.waitStatus(t, a, batch.StatusSent)
	e.waitStatus(t, b, batch.StatusSent)
	held := func(id string) batch.Result {
		return batch.Result{RequestID: id, Status: batch.StatusHeld, Reason: policy.ReasonApprovalRequired}
	}
	// The intranet sent seq 1 (the acks, both held) and then seq 2 (b
	// approved); seq 2 arrives first.
	n1, d1 := e.sealResults(t, e.headerSeq(1), batch.Results{Acks: envelopeIDs(opened),
		Results: []batch.Result{held(a), held(b)}})
	n2, d2 := e.sealResults(t, e.headerSeq(2), batch.Results{Acks: []string{},
		Results: []batch.Result{{RequestID: b, Status: batch.StatusDone, Rows: []map[string]any{}, RowsAffected: 1}}})
	e.drop(t, n2, d2)
	e.waitStatus(t, b, batch.StatusDone)
	e.drop(t, n1, d1)
	e.waitConsumed(t, n1)
	e.waitStatus(t, a, batch.StatusHeld)
	if r := e.status(t, b); r.str("status") != batch.StatusDone || !strings.Contains(r.raw, `"rows_affected":1`) {
		t.Fatalf("final request after a late held result: %s", r.raw)
	}
	// a's approval expires on the intranet.
	e.seq = 2
	n3, d3 := e.sealResults(t, e.resultsHeader(), batch.Results{Acks: []string{},
		Results: []batch.Result{{RequestID: a, Status: batch.StatusRejected, Reason: policy.ReasonApprovalExpired,
			Message: "no admin approved the write in time"}}})
	e.drop(t, n3, d3)
	if r := e.waitStatus(t, a, batch.StatusRejected); r.str("reason") != policy.ReasonApprovalExpired {
		t.Fatalf("expired approval: %s", r.raw)
	}
}
