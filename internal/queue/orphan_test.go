package queue

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
)

// TestSpool_Orphaned follows the requests of an envelope that expired
// unanswered: they are orphaned, not expired; asked about at once; and
// final only with the intranet's answer, whatever it is.
func TestSpool_Orphaned(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	in := runIntake(t, s, IntakeConfig{})
	ctx := ctxT(t)
	env, reqs := publishedEnvelope(t, s, in, 3, spoolT0)
	a, b, c := reqs[0], reqs[1], reqs[2]

	at := env.Expires
	orphaned, err := s.Expire(ctx, at)
	if err != nil || !slices.Equal(orphaned, reqs) {
		t.Fatalf("expire: %v %v, want %v", orphaned, err, reqs)
	}
	for _, id := range reqs {
		if st := statusOf(t, s, id); st.Status != batch.StatusSent || orphanedAt(t, s, id) != ms(at) {
			t.Fatalf("%s after expiry: %+v, orphaned %d", id, st, orphanedAt(t, s, id))
		}
		if params, subject := personal(t, s, id); params != nil || subject != "" {
			t.Fatalf("orphaned request %s keeps personal data", id)
		}
	}
	if ids, err := s.OpenRequests(ctx, env.ID); err != nil || len(ids) != 0 {
		t.Fatalf("orphaned requests offered for a re-send: %v %v", ids, err)
	}
	due := func(step string, before time.Time, want ...string) {
		t.Helper()
		got, err := s.AskDue(ctx, before, 10)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("%s: due %v %v, want %v", step, got, err, want)
		}
	}
	// Due at once: however small the age, an orphan never asked waits.
	due("orphaned", spoolT0.Add(-time.Hour), a, b, c)

	q := queryEnvelope(t, s, reqs, at)
	due("asked", at.Add(24*time.Hour))
	if ids, err := s.Queried(ctx, q.ID); err != nil || !slices.Equal(ids, reqs) {
		t.Fatalf("queried: %v %v", ids, err)
	}

	// The intranet applied a before the envelope expired (only the answer
	// was lost) and never received b; c's answer does not fit this time.
	var seq uint64
	apply := func(res *batch.Results) *Applied {
		t.Helper()
		seq++
		got, err := s.ApplyResults(ctx, ReceivedEnvelope{ID: strings.Repeat(string(rune('0'+seq)), 32), Channel: "results", Seq: seq}, res, at)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	got := apply(&batch.Results{Acks: []string{q.ID}, Results: []batch.Result{
		{RequestID: a, Status: batch.StatusDone, RowsAffected: 1},
		{RequestID: b, Status: batch.StatusExpired, Reason: batch.ReasonNotReceived, Message: "never received"},
	}})
	if !slices.Equal(got.Final, []string{a, b}) || got.Acked != 1 || len(got.NoResult) != 0 {
		t.Fatalf("answers: %+v", got)
	}
	if st := statusOf(t, s, a); st.Status != batch.StatusDone || st.RowsAffected != 1 {
		t.Fatalf("a: %+v", st)
	}
	if st := statusOf(t, s, b); st.Status != batch.StatusExpired || st.Reason != batch.ReasonNotReceived {
		t.Fatalf("b: %+v", st)
	}
	// c is asked again once the age passed since the asking.
	due("c unanswered, too soon", at.Add(-time.Second))
	due("c unanswered", at.Add(time.Second), c)
	if ids, err := s.Queried(ctx, q.ID); err != nil || !slices.Equal(ids, []string{c}) {
		t.Fatalf("queried after answers: %v %v", ids, err)
	}

	// A second answer is stale: the first final status is the only one.
	got = apply(&batch.Results{Results: []batch.Result{{RequestID: b, Status: batch.StatusDone}}})
	if got.Stale != 1 || len(got.Final) != 0 {
		t.Fatalf("second answer: %+v", got)
	}
	if st := statusOf(t, s, b); st.Status != batch.StatusExpired {
		t.Fatalf("b after a second answer: %+v", st)
	}
}

// TestSpool_AskDueUsesIndex checks that the search for requests to ask
// about reads the partial index requests_ask, never the whole requests
// table, which keeps every request ever accepted.
func TestSpool_AskDueUsesIndex(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	plan := queryPlan(t, s, askDueQuery, 0, 1)
	found := false
	for _, step := range plan {
		if strings.Contains(step, "requests_ask") {
			found = true
		}
		if strings.HasPrefix(step, "SCAN r") && !strings.Contains(step, " INDEX ") {
			t.Errorf("AskDue scans the requests table: %q", step)
		}
	}
	if !found {
		t.Errorf("AskDue does not use requests_ask:\n%s", strings.Join(plan, "\n"))
	}
}
