package queue

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
)

// TestSpool_callbacks: a request of a callback client is due when it
// becomes held and again when it becomes final, whatever path changes
// its status (a result, an acknowledgement without a result); other
// clients' requests never are; a settled callback is not due; a retry is
// due at its time; an outcome for a state the request has left does not
// settle the newer state.
func TestSpool_callbacks(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	in := runIntake(t, s, IntakeConfig{})
	ctx := ctxT(t)
	if err := s.SetCallbackClients(ctx, []string{"portal"}); err != nil {
		t.Fatal(err)
	}
	submit := func(client string) string {
		acc, err := in.Submit(ctx, Request{Client: client, Operation: "op", Params: json.RawMessage(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		return acc.ID
	}
	held, noResult, other := submit("portal"), submit("portal"), submit("kiosk")
	env := sealNext(t, s, 10)
	if err := s.MarkPublished(ctx, []string{env.ID}, time.Now(), testBackoff); err != nil {
		t.Fatal(err)
	}
	due := func(at time.Time) []string {
		t.Helper()
		d, err := s.CallbacksDue(ctx, at, 100)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range d {
			out = append(out, c.ID+" "+c.Status)
		}
		slices.Sort(out)
		return out
	}
	now := time.Now()
	if got := due(now.Add(time.Hour)); len(got) != 0 {
		t.Fatalf("due before any result: %v", got)
	}
	_, err := s.ApplyResults(ctx, ReceivedEnvelope{ID: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Channel: "results", Seq: 1},
		&batch.Results{Results: []batch.Result{
			{RequestID: held, Status: batch.StatusHeld, Reason: "approval_required"},
			{RequestID: other, Status: batch.StatusDone},
		}}, now)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{held + " held"}
	if got := due(now); !slices.Equal(got, want) {
		t.Fatalf("due after the held result: %v, want %v", got, want)
	}
	// The held request becomes done before its held callback went out:
	// one callback, in the newest state; the stale outcome for "held"
	// settles nothing.
	later := now.Add(time.Second)
	_, err = s.ApplyResults(ctx, ReceivedEnvelope{ID: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", Channel: "results", Seq: 2},
		&batch.Results{Acks: []string{env.ID}, Results: []batch.Result{{RequestID: held, Status: batch.StatusDone}}}, later)
	if err != nil {
		t.Fatal(err)
	}
	want = []string{held + " done", noResult + " failed"}
	slices.Sort(want)
	if got := due(later); !slices.Equal(got, want) {
		t.Fatalf("due after the final results: %v, want %v", got, want)
	}
	if err := s.SettleCallbacks(ctx, []CallbackOutcome{{ID: held, Status: batch.StatusHeld}}); err != nil {
		t.Fatal(err)
	}
	if got := due(later); !slices.Equal(got, want) {
		t.Fatalf("a stale outcome settled a newer state: due %v, want %v", got, want)
	}
	// One delivered, one to retry in a minute.
	retry := later.Add(time.Minute)
	if err := s.SettleCallbacks(ctx, []CallbackOutcome{{ID: held, Status: batch.StatusDone}, {ID: noResult, Status: batch.StatusFailed, Retry: retry}}); err != nil {
		t.Fatal(err)
	}
	if got := due(later); len(got) != 0 {
		t.Fatalf("due before the retry time: %v", got)
	}
	d, err := s.CallbacksDue(ctx, retry, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(d) != 1 || d[0].ID != noResult || d[0].Attempts != 1 || d[0].Client != "portal" || !d[0].Since.Equal(later.Truncate(time.Millisecond).UTC()) {
		t.Fatalf("due at the retry time: %+v", d)
	}
	if n, err := s.CountCallbacksDue(ctx); err != nil || n != 1 {
		t.Fatalf("CountCallbacksDue = %d, %v; want 1", n, err)
	}
	// Once the client has no callback, its requests are no longer marked.
	if err := s.SetCallbackClients(ctx, nil); err != nil {
		t.Fatal(err)
	}
	id := submit("portal")
	sealNext(t, s, 10)
	if _, err := s.ApplyResults(ctx, ReceivedEnvelope{ID: "cccccccccccccccccccccccccccccccc", Channel: "results", Seq: 3},
		&batch.Results{Results: []batch.Result{{RequestID: id, Status: batch.StatusDone}}}, retry); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.CountCallbacksDue(ctx); n != 1 {
		t.Fatalf("a request of a client without callback marked: %d due", n)
	}
}
