package intranet

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/metrics"
)

// TestMetrics_decisions: the policy's decisions are counted by decision
// and reason, a bad file by its quarantine reason, and the snapshot shows
// the policy in force with its signers.
func TestMetrics_decisions(t *testing.T) {
	e := newTestEnv(t)
	r := e.start(t)
	read, denied := readRequest(), newRequest("citizens.dump", map[string]any{})
	env := e.send(t, []batch.Request{read, denied})
	e.drop(t, "garbage-0001.fxe", []byte("this is not an envelope\n"))
	e.waitAcked(t, env.Header.ID)
	g := r.agent.ops.Metrics.Gatherer()
	want := `
# HELP ferry_policy_decisions_total Policy decisions by decision and reason.
# TYPE ferry_policy_decisions_total counter
ferry_policy_decisions_total{decision="allow",reason="",zone="intranet"} 1
ferry_policy_decisions_total{decision="refuse",reason="unknown_operation",zone="intranet"} 1
`
	if err := testutil.GatherAndCompare(g, strings.NewReader(want), metrics.PolicyDecisions); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(g, metrics.Quarantined); err != nil || n != 1 {
		t.Fatalf("quarantines: %d series, %v", n, err)
	}
	s := r.agent.ops.Monitor.Refresh(t.Context())
	if s.Policy == nil || len(s.Policy.Signers) == 0 || s.Policy.Operations == 0 || s.Policy.Expires.IsZero() {
		t.Fatalf("policy in the snapshot: %+v", s.Policy)
	}
	if s.Recent.Quarantined != 1 || s.Queue.Quarantined != 1 {
		t.Fatalf("quarantines in the snapshot: recent %d, files %d", s.Recent.Quarantined, s.Queue.Quarantined)
	}
}
