package dmz

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrybridge/ferry/internal/metrics"
)

// TestMetrics_requests: every answer to POST /v1/requests is counted by
// operation and outcome, an operation the catalogue does not know only as
// "unknown" (a client cannot add label values), and an accepted request's
// time goes into the intake histogram.
func TestMetrics_requests(t *testing.T) {
	e := startEnv(t)
	e.submit(t)
	r := e.do(t, http.MethodPost, "/v1/requests", tokenPortal, `{"operation":"made.up.by.a.client","params":{}}`, nil)
	if r.code != http.StatusBadRequest {
		t.Fatalf("unknown operation: HTTP %d %s", r.code, r.raw)
	}
	e.do(t, http.MethodPost, "/v1/requests", "wrong-token", goodBody(t), nil)
	g := e.agent.ops.Metrics.Gatherer()
	want := `
# HELP ferry_requests_total Answers to POST /v1/requests by operation and outcome.
# TYPE ferry_requests_total counter
ferry_requests_total{operation="unknown",outcome="invalid_token",zone="dmz"} 1
ferry_requests_total{operation="unknown",outcome="unknown_operation",zone="dmz"} 1
ferry_requests_total{operation="violations.query",outcome="accepted",zone="dmz"} 1
`
	if err := testutil.GatherAndCompare(g, strings.NewReader(want), metrics.Requests); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(g, metrics.IntakeSeconds); err != nil || n != 1 {
		t.Fatalf("intake histogram: %d series, %v", n, err)
	}
}

// TestMetrics_envelopes: the request envelope published is counted sent,
// and the snapshot's gauges follow the spool.
func TestMetrics_envelopes(t *testing.T) {
	e := startEnv(t)
	e.submit(t)
	e.takeRequests(t, 1)
	// The publication is marked, and the backlog counted, a moment later.
	s := e.agent.ops.Monitor.Refresh(t.Context())
	for deadline := time.Now().Add(5 * time.Second); (s.Queue.Unacked != 1 || s.Queue.Envelopes["published"] != 1) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		s = e.agent.ops.Monitor.Refresh(t.Context())
	}
	if s.LastSent.IsZero() || time.Since(s.LastSent) > time.Minute {
		t.Fatalf("last sent %v", s.LastSent)
	}
	if s.Queue.Unacked != 1 || s.Queue.Envelopes["published"] != 1 || s.Queue.OldestUnacked.IsZero() {
		t.Fatalf("queue %+v", s.Queue)
	}
	g := e.agent.ops.Metrics.Gatherer()
	want := `
# HELP ferry_envelopes_total Envelopes sent and received.
# TYPE ferry_envelopes_total counter
ferry_envelopes_total{direction="received",zone="dmz"} 0
ferry_envelopes_total{direction="sent",zone="dmz"} 1
# HELP ferry_unacked_envelopes Request envelopes published and not yet acknowledged.
# TYPE ferry_unacked_envelopes gauge
ferry_unacked_envelopes{zone="dmz"} 1
`
	if err := testutil.GatherAndCompare(g, strings.NewReader(want), metrics.EnvelopesTotal, metrics.Unacked); err != nil {
		t.Fatal(err)
	}
}

// TestSnapshot_state: the snapshot says starting before the API serves,
// serving while it does, and stopping once the drain began.
func TestSnapshot_state(t *testing.T) {
	e := startEnv(t)
	if s := e.agent.ops.Monitor.Refresh(t.Context()); s.State != "serving" {
		t.Fatalf("state %q while serving", s.State)
	}
	e.agent.ready.Store(false)
	if s := e.agent.ops.Monitor.Refresh(t.Context()); s.State != "starting" {
		t.Fatalf("state %q before serving", s.State)
	}
	e.agent.ready.Store(true)
	e.stop()
	if s := e.agent.ops.Monitor.Refresh(t.Context()); s.State != "stopping" {
		t.Fatalf("state %q after the drain began", s.State)
	}
}
