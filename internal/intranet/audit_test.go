package intranet

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/audit/audittest"
	"github.com/ferrybridge/ferry/internal/keys"
	"github.com/ferrybridge/ferry/internal/sample"
)

// TestAgent_Audit: each request's policy decision, the envelope applied
// and the results sealed and published are in the zone's audit log when
// the agent stops; the log verifies with the audit public key alone and
// holds no subject in clear.
func TestAgent_Audit(t *testing.T) {
	e := newTestEnv(t)
	r := e.start(t)
	reqs := e.bookings(t, 2)
	env := e.send(t, reqs)
	e.waitAcked(t, env.Header.ID)
	r.stop(t)

	audittest.VerifyStopped(t, e.cfg.AuditLog, filepath.Join(e.cfg.Keys, keys.AuditPubFile))
	entries := audittest.Entries(t, e.cfg.AuditLog)
	decided := map[string]audit.Entry{}
	loaded := 0
	for _, en := range entries {
		if en.Event == audit.EventPolicyDecision {
			decided[en.Request] = en
		}
		if en.Event == audit.EventAdmin && en.Decision == "policy.loaded" && en.Actor != "" && en.Count > 0 {
			loaded++
		}
	}
	if loaded != 1 {
		t.Errorf("%d policy.loaded entries with their signers, want 1", loaded)
	}
	events := audittest.Events(entries)
	for _, want := range []string{audit.EventPolicyDecision, audit.EventEnvelopeOpened, audit.EventEnvelopeSealed, audit.EventEnvelopePublished} {
		if !slices.Contains(events, want) {
			t.Errorf("no %s in the audit log: %v", want, events)
		}
	}
	for _, req := range reqs {
		d, ok := decided[req.ID]
		if !ok || d.Operation != req.Operation || d.Decision == "" || d.Subject == "" || d.Envelope != env.Header.ID {
			t.Errorf("decision of request %s: %+v", req.ID, d)
		}
	}
	var ids []string
	for _, c := range sample.Citizens() {
		ids = append(ids, c.IDNumber)
	}
	audittest.NoneInClear(t, e.cfg.AuditLog, ids...)
}
