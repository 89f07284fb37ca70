package dmz

import (
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

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

// TestRefusals: refusals beyond the queue are counted, not lost, and all
// that queued up before a stop is staged.
func TestRefusals(t *testing.T) {
	r := &refusals{ch: make(chan audit.Entry, 2)}
	for range 5 {
		r.record(time.Now(), "portal", "violations.query", "forbidden")
	}
	var staged []audit.Entry
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // stopped at once: run stages what queued up, then returns
	stage := func(_ context.Context, es ...audit.Entry) error { staged = append(staged, es...); return nil }
	if err := r.run(ctx, stage, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if len(staged) != 3 || staged[0].Reason != "forbidden" || staged[2].Count != 3 {
		t.Fatalf("staged %+v, want two refusals and a count of three", staged)
	}
}
