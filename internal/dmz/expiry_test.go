package dmz

import (
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
)

// TestAgent_ExpiryAsksIntranet lets two requests' envelope expire
// unanswered and checks that the DMZ does not call them expired itself:
// they stay sent, it asks the intranet about them at once in a query
// envelope, and the intranet's answers are their final results: done
// for the one it had applied (only the answer was lost), expired with
// not_received for the one it never received.
func TestAgent_ExpiryAsksIntranet(t *testing.T) {
	var logs logBuffer
	log := slog.New(slog.NewJSONHandler(io.MultiWriter(&logs, tWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := startEnvWith(t, envOptions{log: log, extra: "resend_after: 1s\n"})
	applied, lost := e.submit(t), e.submit(t)
	first := e.takeRequests(t, 2)
	e.waitStatus(t, applied, batch.StatusSent)
	e.waitStatus(t, lost, batch.StatusSent)

	// Two hours pass on the DMZ's clock: every envelope carrying them
	// (the harness seals with an hour's expiry, and a re-send keeps it)
	// has expired.
	e.offset.Store(int64(2 * time.Hour))
	asked := map[string]string{} // request id: the envelope asking
	deadline := time.Now().Add(15 * time.Second)
	for len(asked) < 2 {
		te := e.nextEnvelope(t, time.Until(deadline))
		if te == nil {
			t.Fatalf("asked about %v within 15s, want both %s and %s", asked, applied, lost)
		}
		if len(te.body.Query) == 0 {
			// A re-send sealed before the clock moved, or a heartbeat
			// (the channel looks quiet after the jump).
			if len(te.body.Requests) > 0 && !te.opened.Header.Created.Before(first[0].Header.Expires) {
				t.Fatalf("envelope %+v sealed after the expiry carries requests", te.opened.Header)
			}
			continue
		}
		if len(te.body.Requests) != 0 {
			t.Fatalf("a query envelope carries requests: %+v", te.body)
		}
		for _, id := range te.body.Query {
			asked[id] = te.opened.Header.ID
		}
	}
	for _, id := range []string{applied, lost} {
		if asked[id] == "" {
			t.Fatalf("not asked about %s: %v", id, asked)
		}
		if r := e.status(t, id); r.str("status") != batch.StatusSent {
			t.Fatalf("%s while the intranet is asked: %s, want sent", id, r.raw)
		}
	}
	if !strings.Contains(logs.String(), "request envelopes expired before their results came") {
		t.Fatal("no log line for the expiry")
	}

	var acks []string
	for _, id := range asked {
		if !slices.Contains(acks, id) {
			acks = append(acks, id)
		}
	}
	name, data := e.sealResults(t, e.resultsHeader(), batch.Results{Acks: acks, Results: []batch.Result{
		{RequestID: applied, Status: batch.StatusDone, Rows: []map[string]any{{"n": 1.0}}},
		{RequestID: lost, Status: batch.StatusExpired, Reason: batch.ReasonNotReceived, Message: "never received"},
	}})
	e.drop(t, name, data)
	e.waitStatus(t, applied, batch.StatusDone)
	r := e.waitStatus(t, lost, batch.StatusExpired)
	if r.str("reason") != batch.ReasonNotReceived {
		t.Fatalf("expired request: %s", r.raw)
	}

	// Answered: never asked about again.
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		te := e.nextEnvelope(t, time.Until(end))
		if te == nil {
			break
		}
		if slices.Contains(te.body.Query, applied) || slices.Contains(te.body.Query, lost) {
			t.Fatalf("asked again after the answer: %+v", te.body)
		}
	}
}
