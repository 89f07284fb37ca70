package dmz

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/queue"
)

// logLines returns the JSON log lines whose message is msg.
func logLines(t *testing.T, logs *logBuffer, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// deadLetterLines returns the "request envelope is a dead letter" log
// lines.
func deadLetterLines(t *testing.T, logs *logBuffer) []map[string]any {
	t.Helper()
	return logLines(t, logs, "request envelope is a dead letter")
}

// TestAgent_ResendBackoffDeadLetter runs an agent with no intranet
// (resend_after 1s, resend_max 2s, max_resends 2) and counts what the
// request medium sees: the envelope is published, its request re-sent
// after resend_after in a new envelope that names it as replaced, which,
// once the doubled wait has passed, becomes a dead letter (one Error log
// line) and is not published again; its request stays sent. An admin's
// retry, made through a second handle on the spool as ferryctl does, has
// the running agent re-send the request once more.
func TestAgent_ResendBackoffDeadLetter(t *testing.T) {
	var logs logBuffer
	e := startEnvWith(t, envOptions{log: jsonLogger(t, &logs),
		extra: "resend_after: 1s\nresend_max: 2s\nmax_resends: 2\n"})
	id := e.submit(t)
	first := e.nextEnvelope(t, 10*time.Second)
	if first == nil || len(first.body.Requests) != 1 || first.body.Requests[0].ID != id {
		t.Fatalf("first publication: %+v", first)
	}
	t1 := time.Now()
	envID := first.opened.Header.ID
	e.waitStatus(t, id, batch.StatusSent)

	second := e.nextEnvelope(t, 10*time.Second)
	t2 := time.Now()
	if second == nil || second.opened.Header.ID == envID || second.body.Replaces != first.opened.Header.Seq ||
		len(second.body.Requests) != 1 || second.body.Requests[0].ID != id ||
		!second.opened.Header.Expires.Equal(first.opened.Header.Expires) {
		t.Fatalf("second publication: %+v, want a new envelope replacing seq %d with request %s and its expiry",
			second, first.opened.Header.Seq, id)
	}
	if gap := t2.Sub(t1); gap < 900*time.Millisecond {
		t.Fatalf("re-sent %s after the first publication, before resend_after", gap)
	}
	envID = second.opened.Header.ID
	// A second handle on the spool, as ferryctl opens it while the agent
	// runs: the second publication is recorded (within markEvery) with
	// the next re-send due twice resend_after later, capped at resend_max.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	admin, err := queue.Open(ctx, e.cfg.Spool)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	stored := waitAttempts(t, admin, envID, 2)
	if wait := stored.ResendAt.Sub(stored.Published); wait != 2*time.Second {
		t.Fatalf("after the second publication the next is due %s later, want 2s", wait)
	}

	// The next re-send would be due 2s (resend_after doubled, at
	// resend_max) after the second: instead the envelope is dead.
	if got := e.nextEnvelope(t, 4*time.Second); got != nil {
		t.Fatalf("published a third time (%s) with max_resends 2", got.opened.Header.ID)
	}
	lines := deadLetterLines(t, &logs)
	if len(lines) != 1 {
		t.Fatalf("dead letter log lines %v, want one", lines)
	}
	l := lines[0]
	if l["level"] != "ERROR" || l[logEnvelope] != envID || l[logSeq] != float64(second.opened.Header.Seq) ||
		l[logCount] != 1.0 || l[logAttempts] != 2.0 {
		t.Fatalf("dead letter log line %v", l)
	}
	deadAt, err := time.Parse(time.RFC3339Nano, l["time"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if wait := deadAt.Sub(t2); wait < 1900*time.Millisecond {
		t.Fatalf("dead %s after the second publication, before the doubled wait of 2s", wait)
	}
	if r := e.status(t, id); r.str("status") != batch.StatusSent {
		t.Fatalf("request of a dead envelope: %s, want sent", r.raw)
	}

	// ferryctl queue retry, while the agent runs.
	if _, err := admin.Retry(ctx, envID, "test", time.Now()); err != nil {
		t.Fatal(err)
	}
	third := e.nextEnvelope(t, 5*time.Second)
	if third == nil || third.body.Replaces != second.opened.Header.Seq || len(third.body.Requests) != 1 {
		t.Fatalf("after retry: %+v, want the request re-sent in place of seq %d", third, second.opened.Header.Seq)
	}
	if len(deadLetterLines(t, &logs)) != 1 {
		t.Fatal("dead letter logged again")
	}
	// The backoff starts over.
	if stored := waitAttempts(t, admin, third.opened.Header.ID, 1); stored.State != queue.EnvPublished ||
		stored.ResendAt.Sub(stored.Published) != time.Second {
		t.Fatalf("retried envelope after its publication: %+v", stored)
	}
}

// waitAttempts waits until envelope id has been marked published
// attempts times (marks follow publications within markEvery) and
// returns it.
func waitAttempts(t *testing.T, s *queue.Spool, id string, attempts int) *queue.Envelope {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		e, err := s.EnvelopeByID(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if e.Attempts == attempts {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("envelope %s: %d attempts after 5s, want %d", id, e.Attempts, attempts)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
