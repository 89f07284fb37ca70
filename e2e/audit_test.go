package e2e

import (
	"path/filepath"
	"testing"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/audit/audittest"
)

// checkAudit checks both zones' audit logs after a run whose agents have
// stopped: each verifies with `ferryctl audit verify` and its public key
// alone, `ferryctl audit reconcile` finds no difference between them, and
// the intranet's log holds exactly one policy decision for
// each request in ids, however often the agents were killed and the
// envelopes re-sent, and the DMZ's exactly one acceptance.
func checkAudit(t *testing.T, d *deployment, ids []string) {
	t.Helper()
	for _, zone := range []string{"dmz", "intranet"} {
		ferryctl(t, "audit", "verify", filepath.Join(d.dir, zone, "state"),
			"--pubkey", filepath.Join(d.dir, zone, "keys", "audit.pub"))
	}
	// The two logs agree: every envelope and request accounted for.
	ferryctl(t, "audit", "reconcile", filepath.Join(d.dir, "dmz", "state"), filepath.Join(d.dir, "intranet", "state"),
		"--pubkey-dmz", filepath.Join(d.dir, "dmz", "keys", "audit.pub"),
		"--pubkey-intranet", filepath.Join(d.dir, "intranet", "keys", "audit.pub"))
	count := func(zone, event string) map[string]int {
		n := map[string]int{}
		for _, e := range audittest.Entries(t, filepath.Join(d.dir, zone, "state", audit.FileName)) {
			if e.Event == event {
				n[e.Request]++
			}
		}
		return n
	}
	decided, accepted := count("intranet", audit.EventPolicyDecision), count("dmz", audit.EventRequestAccepted)
	for _, id := range ids {
		if decided[id] != 1 || accepted[id] != 1 {
			t.Errorf("request %s: %d policy decisions in the intranet's audit log, %d acceptances in the DMZ's; want 1 and 1",
				id, decided[id], accepted[id])
		}
	}
}
