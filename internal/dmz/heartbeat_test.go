package dmz

import (
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
)

// TestAgent_Heartbeat leaves the agent without requests: once the requests
// channel has been quiet for heartbeat it seals an envelope carrying
// nothing, chained like any other; it seals no second one while the first
// is unacknowledged, and seals the next once the intranet acknowledged it.
func TestAgent_Heartbeat(t *testing.T) {
	e := startEnvWith(t, envOptions{extra: "heartbeat: 200ms\nresend_after: 1h\nresend_max: 1h\n"})
	first := e.nextEnvelope(t, 10*time.Second)
	if first == nil {
		t.Fatal("no heartbeat within 10s of quiet, want one after 200ms")
	}
	if b := first.body; len(b.Requests) != 0 || len(b.Query) != 0 || b.Replaces != 0 || first.opened.Header.Seq != 1 {
		t.Fatalf("heartbeat seq %d body %+v, want seq 1 carrying nothing", first.opened.Header.Seq, b)
	}
	// Unacknowledged: no other heartbeat piles up behind it.
	if got := e.nextEnvelope(t, 1500*time.Millisecond); got != nil {
		t.Fatalf("second heartbeat (seq %d) while the first is unacknowledged", got.opened.Header.Seq)
	}
	name, data := e.sealResults(t, e.resultsHeader(), batch.Results{Acks: []string{first.opened.Header.ID}, Results: []batch.Result{}})
	e.drop(t, name, data)
	second := e.nextEnvelope(t, 10*time.Second)
	if second == nil {
		t.Fatal("no heartbeat after the first was acknowledged")
	}
	if h := second.opened.Header; h.Seq != 2 || h.Prev != first.opened.HeaderHash || second.body.Replaces != 0 ||
		len(second.body.Requests) != 0 {
		t.Fatalf("second heartbeat seq %d body %+v, want seq 2 after the first", h.Seq, second.body)
	}
}

// TestAgent_ResendMissing has the intranet report a request envelope
// missing while it acknowledges a later one: the DMZ re-sends the
// missing envelope's request at once, in a new envelope replacing it,
// long before resend_after, and only once.
func TestAgent_ResendMissing(t *testing.T) {
	// resend_after 16s: reported envelopes published 2s ago are re-sent.
	e := startEnvWith(t, envOptions{extra: "resend_after: 16s\nresend_max: 16s\n"})
	lostID := e.submit(t)
	lost := e.nextEnvelope(t, 10*time.Second)
	published := time.Now()
	e.submit(t)
	got := e.nextEnvelope(t, 10*time.Second)
	if lost == nil || got == nil {
		t.Fatal("request envelopes not published")
	}
	e.waitStatus(t, lostID, batch.StatusSent)
	time.Sleep(time.Until(published.Add(2100 * time.Millisecond)))
	seq := lost.opened.Header.Seq
	report := &batch.Received{Contiguous: seq - 1, Through: got.opened.Header.Seq, Missing: [][2]uint64{{seq, seq}}}
	name, data := e.sealResults(t, e.resultsHeader(), batch.Results{Acks: []string{got.opened.Header.ID},
		Results:  []batch.Result{{RequestID: got.body.Requests[0].ID, Status: batch.StatusDone, Rows: []map[string]any{}}},
		Received: report})
	e.drop(t, name, data)
	resend := e.nextEnvelope(t, 5*time.Second)
	if resend == nil {
		t.Fatalf("envelope reported missing not re-sent within 5s (resend_after 16s)")
	}
	if resend.body.Replaces != seq || len(resend.body.Requests) != 1 || resend.body.Requests[0].ID != lostID {
		t.Fatalf("re-send replaces %d with %+v, want seq %d with request %s", resend.body.Replaces, resend.body.Requests, seq, lostID)
	}
	// Reported missing again: no second early re-send.
	name, data = e.sealResults(t, e.resultsHeader(), batch.Results{Acks: []string{}, Results: []batch.Result{}, Received: report})
	e.drop(t, name, data)
	if again := e.nextEnvelope(t, 2*time.Second); again != nil {
		t.Fatalf("second early re-send: seq %d replaces %d", again.opened.Header.Seq, again.body.Replaces)
	}
}
