package dmz

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/envelope"
	"github.com/ferrybridge/ferry/internal/policy"
)

// askingLines returns the "asking the intranet about requests" log lines.
func askingLines(t *testing.T, logs *logBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["msg"] == "asking the intranet about requests" {
			out = append(out, m)
		}
	}
	return out
}

// TestAgent_AskAgainAboutHeld loses the envelope carrying a held request's
// final result and checks that the DMZ asks again: after resend_after it
// publishes a requests envelope with no requests and the id in query; it
// sends that asking again as a new envelope replacing it, and asks nothing
// new, while it is not acknowledged; an acknowledgement without an answer
// leads to a new asking; and the answer, the final result in the envelope acknowledging
// the asking one, makes the request final, after which it is never asked
// about again.
func TestAgent_AskAgainAboutHeld(t *testing.T) {
	var logs logBuffer
	log := slog.New(slog.NewJSONHandler(io.MultiWriter(&logs, tWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	const resend = time.Second
	e := startEnvWith(t, envOptions{log: log, extra: "resend_after: 1s\n"})
	id := e.submitBody(t, renewBody(t))
	reqEnv := e.takeRequests(t, 1)[0]
	e.waitStatus(t, id, batch.StatusSent)

	heldAt := time.Now()
	name, data := e.sealResults(t, e.resultsHeader(), batch.Results{Acks: []string{reqEnv.Header.ID},
		Results: []batch.Result{{RequestID: id, Status: batch.StatusHeld, Reason: policy.ReasonApprovalRequired}}})
	e.drop(t, name, data)
	e.waitStatus(t, id, batch.StatusHeld)
	// The admin approves; the intranet's envelope with the final result
	// (sequence number 2) is lost on the medium.
	e.resultsHeader()

	q1 := e.nextEnvelope(t, 10*time.Second)
	if q1 == nil {
		t.Fatal("no envelope asking about the held request within 10s")
	}
	if waited := time.Since(heldAt); waited < resend {
		t.Fatalf("asked about the held request after %s, before resend_after %s", waited, resend)
	}
	h := q1.opened.Header
	if h.Kind != envelope.KindRequests || h.Channel != RequestsChannel || h.Seq != reqEnv.Header.Seq+1 ||
		h.Prev != reqEnv.HeaderHash || len(q1.body.Requests) != 0 || !slices.Equal(q1.body.Query, []string{id}) {
		t.Fatalf("asking envelope %+v body %+v, want requests seq %d after %s, no requests, query [%s]",
			h, q1.body, reqEnv.Header.Seq+1, reqEnv.Header.ID, id)
	}
	if lines := askingLines(t, &logs); len(lines) != 1 || lines[0][logCount] != 1.0 || lines[0][logEnvelope] != h.ID {
		t.Fatalf("asking log lines %v, want one for %s with 1 request", lines, h.ID)
	}

	// Unacknowledged, the asking is sent again as a new envelope that
	// names the first as replaced, and no other asking comes meanwhile.
	again := e.nextEnvelope(t, 10*time.Second)
	if again == nil || again.opened.Header.ID == h.ID || again.body.Replaces != h.Seq ||
		len(again.body.Requests) != 0 || !slices.Equal(again.body.Query, []string{id}) {
		t.Fatalf("after resend_after: %+v, want a new asking in place of seq %d", again, h.Seq)
	}
	q1, h = again, again.opened.Header
	// A batcher poll period more: still no other asking while h is open.
	for end := time.Now().Add(batcherPoll + 200*time.Millisecond); time.Now().Before(end); {
		if got := e.nextEnvelope(t, time.Until(end)); got != nil && got.body.Replaces != h.Seq {
			t.Fatalf("asked again (%s, query %v) while %s is open", got.opened.Header.ID, got.body.Query, h.ID)
		} else if got != nil {
			q1, h = got, got.opened.Header // its own re-send, on a slow machine
		}
	}
	// The intranet has not decided (its answer was lost, but say the
	// approval is still pending on a restart): an ack and no result.
	ack := func(envID string) {
		name, data := e.sealResults(t, e.resultsHeader(), batch.Results{Acks: []string{envID}, Results: []batch.Result{}})
		e.drop(t, name, data)
		e.waitConsumed(t, name)
	}
	ack(h.ID)
	var q2 *takenEnvelope
	for q2 == nil {
		got := e.nextEnvelope(t, 10*time.Second)
		switch {
		case got == nil:
			t.Fatal("no second asking within 10s of the ack")
		case got.body.Replaces == h.Seq:
			// A re-send that raced with the ack: acknowledge it too.
			q1, h = got, got.opened.Header
			ack(h.ID)
		default:
			q2 = got
		}
	}
	h2 := q2.opened.Header
	if h2.Seq != h.Seq+1 || h2.Prev != q1.opened.HeaderHash || len(q2.body.Requests) != 0 || q2.body.Replaces != 0 ||
		!slices.Equal(q2.body.Query, []string{id}) {
		t.Fatalf("second asking %+v body %+v", h2, q2.body)
	}
	if st := e.status(t, id); st.str("status") != batch.StatusHeld {
		t.Fatalf("request after an unanswered asking: %s", st.raw)
	}

	// The answer: the stored final result, in the envelope acknowledging
	// the asking one.
	polled := e.pollAsync(t, id, "10s")
	name, data = e.sealResults(t, e.resultsHeader(), batch.Results{Acks: []string{h2.ID},
		Results: []batch.Result{{RequestID: id, Status: batch.StatusDone, Rows: []map[string]any{}, RowsAffected: 1}}})
	e.drop(t, name, data)
	if r := <-polled; r.code != http.StatusOK || r.str("status") != batch.StatusDone || !strings.Contains(r.raw, `"rows_affected":1`) {
		t.Fatalf("answered request: HTTP %d %s", r.code, r.raw)
	}
	// Final, it is never asked about again.
	due, err := e.agent.spool.AskDue(t.Context(), time.Now().Add(time.Hour), batch.MaxQuery)
	if err != nil || len(due) != 0 {
		t.Fatalf("due after the answer: %v %v", due, err)
	}
	if lines := askingLines(t, &logs); len(lines) != 2 {
		t.Fatalf("%d asking log lines, want 2", len(lines))
	}
}
