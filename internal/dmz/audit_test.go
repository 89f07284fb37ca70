package dmz

import (
	"net/http"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/audit/audittest"
	"github.com/ferrybridge/ferry/internal/keys"
	"github.com/ferrybridge/ferry/internal/sample"
)

// TestAgent_Audit: what the agent accepts, refuses, seals and publishes is
// in the zone's audit log when it stops, the log verifies with the audit
// public key alone, and it holds no subject or parameter in clear.
func TestAgent_Audit(t *testing.T) {
	e := startEnv(t)
	id := e.submit(t)
	refused := e.do(t, http.MethodPost, "/v1/requests", tokenPortal, `{"operation":"drivers.export","params":{}}`, nil)
	if refused.code != http.StatusBadRequest {
		t.Fatalf("an unknown operation: HTTP %d", refused.code)
	}
	e.takeRequests(t, 1)
	e.stop()

	file := e.cfg.AuditLog
	audittest.VerifyStopped(t, file, filepath.Join(e.cfg.Keys, keys.AuditPubFile))
	entries := audittest.Entries(t, file)
	for _, en := range entries {
		switch en.Event {
		case audit.EventRequestAccepted:
			if en.Request != id || en.Actor != "portal" || en.Subject == "" {
				t.Errorf("accepted entry %+v", en)
			}
		case audit.EventRequestRefused:
			if en.Actor != "portal" || en.Reason == "" {
				t.Errorf("refused entry %+v", en)
			}
		}
	}
	events := audittest.Events(entries)
	for _, want := range []string{audit.EventRequestAccepted, audit.EventRequestRefused, audit.EventEnvelopeSealed, audit.EventEnvelopePublished} {
		if !slices.Contains(events, want) {
			t.Errorf("no %s in the audit log: %v", want, events)
		}
	}
	c := sample.Citizens()[0]
	audittest.NoneInClear(t, file, c.IDNumber, c.Plate)
}
