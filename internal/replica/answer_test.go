package replica

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/sample"
)

// askingEnvelope records an envelope that carries no requests, as the
// DMZ's asking envelope is recorded before its query is answered.
func askingEnvelope(t *testing.T, db *DB, seq uint64) Envelope {
	t.Helper()
	env := testEnvelope(t, seq)
	if _, err := db.Apply(context.Background(), env, nil, testChecker); err != nil {
		t.Fatal(err)
	}
	return env
}

func ledgerRequests(t *testing.T, db *DB) int {
	t.Helper()
	st, err := db.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Requests
}

func notReceived(id string) batch.Result {
	return batch.Result{RequestID: id, Status: batch.StatusExpired, Reason: batch.ReasonNotReceived, Message: messageNotReceived}
}

// TestDB_Answer_kinds asks about one request of every kind, in an order
// that is neither the ledger's nor the ids': each is answered (or not) as
// the ledger holds it, in the order asked, and asking again gives the
// same answers and records nothing.
func TestDB_Answer_kinds(t *testing.T) {
	ctx := context.Background()
	f := newHeldFixture(t) // f.req is held in f.env, seq 1
	c := sample.Citizens()[0]
	read := sampleReq(t, "violations.query", c.IDNumber, map[string]any{"plate": c.Plate})
	bad := sampleReq(t, "violations.query", c.IDNumber, map[string]any{"id_number": "not-an-id", "plate": c.Plate})
	me := sample.Citizens()[1].IDNumber
	waiting := sampleReq(t, "exam.book", me, map[string]any{"slot_id": freeSlot(t, f.db, me)})
	applied, err := f.db.Apply(ctx, testEnvelope(t, 2), []batch.Request{read, bad, waiting}, f.pol)
	if err != nil {
		t.Fatal(err)
	}
	if r := applied.Results; r[0].Status != batch.StatusDone || len(r[0].Rows) == 0 || r[1].Status != batch.StatusRejected || r[2].Status != batch.StatusHeld {
		t.Fatalf("applied: %+v", r)
	}
	f.clock = f.clock.Add(time.Minute)
	decided, err := f.db.Decide(ctx, f.decision(false), f.pol)
	if err != nil {
		t.Fatal(err)
	}
	before, digest := ledgerRequests(t, f.db), dataDigest(t, f.db)

	unknown1, unknown2 := newID(t), newID(t)
	ask := []string{unknown2, waiting.ID, read.ID, f.req.ID, unknown1, bad.ID}
	want := []batch.Result{notReceived(unknown2), applied.Results[0], *decided, notReceived(unknown1), applied.Results[1]}
	ans, err := f.db.Answer(ctx, askingEnvelope(t, f.db, 3).ID, ask)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ans, want) {
		t.Fatalf("answers:\n got %+v\nwant %+v", ans, want)
	}
	if n := ledgerRequests(t, f.db); n != before+2 {
		t.Fatalf("%d requests in the ledger after settling two, want %d", n, before+2)
	}
	again, err := f.db.Answer(ctx, askingEnvelope(t, f.db, 4).ID, ask)
	if err != nil || !reflect.DeepEqual(again, want) {
		t.Fatalf("asked again: %v\n got %+v\nwant %+v", err, again, want)
	}
	if n := ledgerRequests(t, f.db); n != before+2 {
		t.Fatalf("asking again recorded something: %d requests, want %d", n, before+2)
	}
	if dataDigest(t, f.db) != digest {
		t.Fatal("answering changed the replica's data")
	}
	// The request still waits, and is decided as usual later.
	if h, err := f.db.HeldRequest(ctx, waiting.ID); err != nil || h.State != HeldWaiting {
		t.Fatalf("held request after asking: %+v, %v", h, err)
	}
}

// TestDB_Answer_settled: a request settled as never received is never
// applied, even when its envelope arrives afterwards, and the settlement
// survives a restart.
func TestDB_Answer_settled(t *testing.T) {
	ctx := context.Background()
	db, path := newTestReplica(t)
	lost, other := req(t, "slot.book", 7), req(t, "slot.book", 8)
	asking := askingEnvelope(t, db, 2)
	ans, err := db.Answer(ctx, asking.ID, []string{lost.ID})
	if err != nil || !reflect.DeepEqual(ans, []batch.Result{notReceived(lost.ID)}) {
		t.Fatalf("Answer: %+v, %v", ans, err)
	}
	db.Close()
	db = openTest(t, path)
	digest := dataDigest(t, db)
	// The request's own envelope, late (seq 1): its request is answered
	// from the ledger and nothing is written.
	late := apply(t, db, testEnvelope(t, 1), lost)
	if late.Duplicate || !reflect.DeepEqual(late.Results, ans) {
		t.Fatalf("late envelope: %+v, want the settled result", late)
	}
	if dataDigest(t, db) != digest {
		t.Fatal("a settled request was applied")
	}
	// In a re-send beside a new request, only the new one is applied.
	both := apply(t, db, testEnvelope(t, 3), lost, other)
	if !reflect.DeepEqual(both.Results[0], ans[0]) || both.Results[1].Status != batch.StatusDone {
		t.Fatalf("re-sent with another request: %+v", both.Results)
	}
	if n := countRows(t, db); n != 1 {
		t.Fatalf("%d appointments, want 1 (the new request's)", n)
	}
	if again, err := db.Answer(ctx, askingEnvelope(t, db, 4).ID, []string{lost.ID, other.ID}); err != nil ||
		!reflect.DeepEqual(again, both.Results) {
		t.Fatalf("asked after the late envelope: %+v, %v", again, err)
	}
	// The settlement is recorded in the asking envelope's name.
	var envID, op, status, reason string
	if err := db.w.QueryRow(`SELECT envelope_id, operation, status, reason FROM ferry_requests WHERE id = ?`, lost.ID).
		Scan(&envID, &op, &status, &reason); err != nil {
		t.Fatal(err)
	}
	if envID != asking.ID || op != "" || status != batch.StatusExpired || reason != batch.ReasonNotReceived {
		t.Fatalf("ledger row: envelope %s operation %q status %s reason %s", envID, op, status, reason)
	}
}

// TestDB_Answer_appliedFirst: a request applied before it is asked about
// is answered with its stored result, and is not settled.
func TestDB_Answer_appliedFirst(t *testing.T) {
	ctx := context.Background()
	db, _ := newTestReplica(t)
	book, list := req(t, "slot.book", 1), req(t, "slot.list", 1)
	a := apply(t, db, testEnvelope(t, 1), book)
	// The read after the write, so that its rows (numbers that JSON
	// turns into float64) are stored.
	b := apply(t, db, testEnvelope(t, 2), list)
	if len(b.Results[0].Rows) != 1 {
		t.Fatalf("slot.list: %+v", b.Results[0])
	}
	ans, err := db.Answer(ctx, askingEnvelope(t, db, 3).ID, []string{list.ID, book.ID})
	if err != nil || !reflect.DeepEqual(ans, []batch.Result{b.Results[0], a.Results[0]}) {
		t.Fatalf("Answer: %+v, %v", ans, err)
	}
	if n := countRows(t, db); n != 1 {
		t.Fatalf("%d appointments after asking, want 1", n)
	}
}

// TestDB_Answer_maxQuery settles batch.MaxQuery requests at once.
func TestDB_Answer_maxQuery(t *testing.T) {
	ctx := context.Background()
	db, _ := newTestReplica(t)
	ids := make([]string, batch.MaxQuery)
	for i := range ids {
		ids[i] = newID(t)
	}
	asking := askingEnvelope(t, db, 1)
	start := time.Now()
	ans, err := db.Answer(ctx, asking.ID, ids)
	if err != nil || len(ans) != len(ids) {
		t.Fatalf("Answer: %d answers, %v", len(ans), err)
	}
	t.Logf("settled %d requests in %v", len(ids), time.Since(start))
	for i, r := range ans {
		if !reflect.DeepEqual(r, notReceived(ids[i])) {
			t.Fatalf("answer %d: %+v", i, r)
		}
	}
	start = time.Now()
	again, err := db.Answer(ctx, asking.ID, ids)
	if err != nil || !reflect.DeepEqual(again, ans) {
		t.Fatalf("asked again: %d answers, %v", len(again), err)
	}
	t.Logf("answered %d settled requests in %v", len(ids), time.Since(start))
	if n := ledgerRequests(t, db); n != len(ids) {
		t.Fatalf("%d requests in the ledger, want %d", n, len(ids))
	}
}

// TestDB_Answer refuses what it cannot record, and settles nothing then.
func TestDB_Answer(t *testing.T) {
	ctx := context.Background()
	db, _ := newTestReplica(t)
	asking := askingEnvelope(t, db, 1)
	id := newID(t)
	for _, tc := range []struct {
		name    string
		env     string
		ids     []string
		invalid bool
	}{
		{"malformed request id", asking.ID, []string{id, "not-an-id"}, true},
		{"repeated request id", asking.ID, []string{id, newID(t), id}, true},
		{"malformed envelope id", "x", []string{id}, true},
		// The asking envelope must be recorded first.
		{"envelope not recorded", newID(t), []string{id}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ans, err := db.Answer(ctx, tc.env, tc.ids)
			if err == nil || errors.Is(err, ErrInvalid) != tc.invalid {
				t.Fatalf("Answer: %+v, %v (want ErrInvalid: %v)", ans, err, tc.invalid)
			}
			if n := ledgerRequests(t, db); n != 0 {
				t.Fatalf("%d requests settled by a refused query", n)
			}
		})
	}
	if ans, err := db.Answer(ctx, asking.ID, nil); err != nil || ans != nil {
		t.Fatalf("empty query: %+v, %v", ans, err)
	}
}

// BenchmarkDB_Answer asks about batch.MaxQuery requests already settled.
func BenchmarkDB_Answer(b *testing.B) {
	ctx := context.Background()
	db, _ := newTestReplica(b)
	env := testEnvelope(b, 1)
	if _, err := db.Apply(ctx, env, nil, testChecker); err != nil {
		b.Fatal(err)
	}
	ids := make([]string, batch.MaxQuery)
	for i := range ids {
		ids[i] = fmt.Sprintf("%032x", 1<<40+i)
	}
	if _, err := db.Answer(ctx, env.ID, ids); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := db.Answer(ctx, env.ID, ids); err != nil {
			b.Fatal(err)
		}
	}
}
