package replica

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/policy"
	"github.com/ferrybridge/ferry/internal/sample"
)

// heldPolicy is the sample policy with exam.book held for approval
// within an hour.
func heldPolicy(t testing.TB) *policy.Policy {
	t.Helper()
	text := bytes.Replace(sample.Policy(), []byte("    inserts: [appointments]\n"),
		[]byte("    inserts: [appointments]\n    approval: {within: 1h}\n"), 1)
	pol := parsePolicy(t, text)
	if op, _ := pol.Operation("exam.book"); op.Approval == nil {
		t.Fatal("exam.book is not held in the test policy")
	}
	return pol
}

// heldFixture is a sample replica with one exam.book request held.
type heldFixture struct {
	db     *DB
	path   string
	pol    *policy.Policy
	clock  time.Time
	req    batch.Request
	env    Envelope
	before int // appointments before
}

func newHeldFixture(t *testing.T) *heldFixture {
	t.Helper()
	f := &heldFixture{path: sampleReplicaFile(t), pol: heldPolicy(t), clock: time.Date(2026, 7, 1, 9, 0, 0, 0, time.UTC)}
	f.open(t)
	me := sample.Citizens()[0].IDNumber
	f.before = appointments(t, f.db)
	f.req = sampleReq(t, "exam.book", me, map[string]any{"slot_id": freeSlot(t, f.db, me)})
	f.env = testEnvelope(t, 1)
	a, err := f.db.Apply(context.Background(), f.env, []batch.Request{f.req}, f.pol)
	if err != nil {
		t.Fatal(err)
	}
	r := a.Results[0]
	if r.Status != batch.StatusHeld || r.Reason != policy.ReasonApprovalRequired || r.RowsAffected != 0 ||
		r.Message != "operation exam.book waits for an admin's approval until 2026-07-01T10:00:00Z" {
		t.Fatalf("exam.book with approval: %+v, want held", r)
	}
	if n := appointments(t, f.db); n != f.before {
		t.Fatalf("a held write took effect: %d appointments, want %d", n, f.before)
	}
	return f
}

func (f *heldFixture) open(t *testing.T) {
	t.Helper()
	f.db = openTest(t, f.path)
	f.db.now = func() time.Time { return f.clock }
}

func (f *heldFixture) decision(approve bool) Decision {
	return Decision{RequestID: f.req.ID, Approve: approve, By: "carol", Time: f.clock, Approval: []byte("signed note of carol")}
}

// stored is what the ledger answers for the request now: a duplicate of
// the request in another envelope gets it.
func (f *heldFixture) stored(t *testing.T) batch.Result {
	t.Helper()
	a, err := f.db.Apply(context.Background(), testEnvelope(t, 1000+uint64(idCounter)), []batch.Request{f.req}, f.pol)
	if err != nil {
		t.Fatal(err)
	}
	return a.Results[0]
}

func TestDB_Decide_approve(t *testing.T) {
	ctx := context.Background()
	f := newHeldFixture(t)
	st, err := f.db.Stats(ctx)
	if err != nil || st.Held != 1 || st.Undelivered != 0 {
		t.Fatalf("stats %+v (%v), want 1 held", st, err)
	}
	list, err := f.db.HeldRequests(ctx, HeldWaiting)
	if err != nil || len(list) != 1 {
		t.Fatalf("HeldRequests: %v, %v", list, err)
	}
	h := list[0]
	if h.RequestID != f.req.ID || h.EnvelopeID != f.env.ID || h.Operation != "exam.book" || h.Client != "portal" ||
		h.Subject != f.req.Subject || !bytes.Equal(h.Params, f.req.Params) || !h.HeldAt.Equal(f.clock) ||
		!h.Expires.Equal(f.clock.Add(time.Hour)) || h.State != HeldWaiting || h.Sent {
		t.Fatalf("held request %+v", h)
	}
	// A duplicate of the request while it waits is answered "held" and
	// held once.
	if r := f.stored(t); r.Status != batch.StatusHeld {
		t.Fatalf("duplicate while held: %+v", r)
	}

	if ans, err := f.db.Answer(ctx, f.env.ID, []string{f.req.ID}); err != nil || len(ans) != 0 {
		t.Fatalf("Answer while held: %+v, %v", ans, err)
	}
	f.clock = f.clock.Add(10 * time.Minute)
	res, err := f.db.Decide(ctx, f.decision(true), f.pol)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != batch.StatusDone || res.RowsAffected != 1 || res.RequestID != f.req.ID {
		t.Fatalf("approved: %+v, want done with one row", res)
	}
	if n := appointments(t, f.db); n != f.before+1 {
		t.Fatalf("%d appointments after approval, want %d", n, f.before+1)
	}
	if r := f.stored(t); r.Status != batch.StatusDone || r.RowsAffected != 1 {
		t.Fatalf("duplicate after approval: %+v, want the final result", r)
	}
	h, err = f.db.HeldRequest(ctx, f.req.ID)
	if err != nil || h.State != HeldApproved || h.DecidedBy != "carol" || !h.DecidedAt.Equal(f.clock) || h.Subject != "" || h.Params != nil {
		t.Fatalf("after approval: %+v (%v), want approved by carol with the personal data dropped", h, err)
	}

	// Asked again, the ledger answers with the final result.
	ans, err := f.db.Answer(ctx, f.env.ID, []string{f.req.ID})
	if err != nil || len(ans) != 1 || ans[0].RequestID != f.req.ID || ans[0].Status != batch.StatusDone || ans[0].RowsAffected != 1 {
		t.Fatalf("Answer after approval: %+v, %v", ans, err)
	}

	// The final result waits for a result envelope, once.
	dec, err := f.db.Decided(ctx)
	if err != nil || len(dec) != 1 || dec[0].Status != batch.StatusDone || dec[0].RequestID != f.req.ID {
		t.Fatalf("Decided: %+v, %v", dec, err)
	}
	out := &Outgoing{ID: newID(t), Channel: "results", Seq: 1, Name: "r1", Data: []byte("x"), Decided: []string{f.req.ID}}
	if err := f.db.StoreSealed(ctx, out); err != nil {
		t.Fatal(err)
	}
	if dec, err := f.db.Decided(ctx); err != nil || len(dec) != 0 {
		t.Fatalf("Decided after sealing: %+v, %v", dec, err)
	}
	out2 := &Outgoing{ID: newID(t), Channel: "results", Seq: 2, Name: "r2", Data: []byte("x"), Decided: []string{f.req.ID}}
	if err := f.db.StoreSealed(ctx, out2); err == nil {
		t.Fatal("a decision was sealed twice")
	}

	// The same approval again (say, after a crash before its file was
	// removed) is recognised; another one is refused.
	var de *DecidedError
	_, err = f.db.Decide(ctx, f.decision(true), f.pol)
	if !errors.As(err, &de) || !errors.Is(err, ErrDecided) || !de.Same || de.State != HeldApproved || de.By != "carol" {
		t.Fatalf("same approval again: %v", err)
	}
	other := f.decision(false)
	other.Approval = []byte("another note")
	_, err = f.db.Decide(ctx, other, f.pol)
	if !errors.As(err, &de) || de.Same {
		t.Fatalf("another decision after the first: %v", err)
	}
	if n := appointments(t, f.db); n != f.before+1 {
		t.Fatalf("%d appointments, want %d", n, f.before+1)
	}
}

func TestDB_Decide_deny(t *testing.T) {
	ctx := context.Background()
	f := newHeldFixture(t)
	res, err := f.db.Decide(ctx, f.decision(false), f.pol)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != batch.StatusRejected || res.Reason != policy.ReasonApprovalDenied {
		t.Fatalf("denied: %+v", res)
	}
	if n := appointments(t, f.db); n != f.before {
		t.Fatalf("a denied write took effect")
	}
	if r := f.stored(t); r.Reason != policy.ReasonApprovalDenied {
		t.Fatalf("duplicate after denial: %+v", r)
	}
}

func TestDB_ExpireHeld(t *testing.T) {
	ctx := context.Background()
	f := newHeldFixture(t)
	f.clock = f.clock.Add(59 * time.Minute)
	if ids, err := f.db.ExpireHeld(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("expired before its time: %v, %v", ids, err)
	}
	f.clock = f.clock.Add(time.Minute)
	ids, err := f.db.ExpireHeld(ctx)
	if err != nil || len(ids) != 1 || ids[0] != f.req.ID {
		t.Fatalf("ExpireHeld: %v, %v", ids, err)
	}
	r := f.stored(t)
	if r.Status != batch.StatusRejected || r.Reason != policy.ReasonApprovalExpired || r.Message != "no admin approved the request before 2026-07-01T10:00:00Z" {
		t.Fatalf("expired: %+v", r)
	}
	if dec, err := f.db.Decided(ctx); err != nil || len(dec) != 1 || dec[0].Reason != policy.ReasonApprovalExpired {
		t.Fatalf("Decided: %+v, %v", dec, err)
	}
	// An approval that comes too late changes nothing.
	var de *DecidedError
	if _, err := f.db.Decide(ctx, f.decision(true), f.pol); !errors.As(err, &de) || de.State != HeldExpired {
		t.Fatalf("approval after expiry: %v", err)
	}
	if n := appointments(t, f.db); n != f.before {
		t.Fatalf("an expired write took effect")
	}
}

// An approval taken in after the request's time passed but before
// ExpireHeld ran expires it rather than running it.
func TestDB_Decide_overdue(t *testing.T) {
	ctx := context.Background()
	f := newHeldFixture(t)
	f.clock = f.clock.Add(2 * time.Hour)
	res, err := f.db.Decide(ctx, f.decision(true), f.pol)
	var de *DecidedError
	if !errors.As(err, &de) || de.State != HeldExpired || res == nil || res.Reason != policy.ReasonApprovalExpired {
		t.Fatalf("overdue approval: %+v, %v", res, err)
	}
	if n := appointments(t, f.db); n != f.before {
		t.Fatalf("an overdue approval took effect")
	}
}

func TestDB_Decide_refused(t *testing.T) {
	ctx := context.Background()
	f := newHeldFixture(t)
	d := f.decision(true)
	d.RequestID = newID(t)
	if _, err := f.db.Decide(ctx, d, f.pol); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("unknown request: %v", err)
	}
	for name, at := range map[string]time.Time{
		"signed before the request was held": f.clock.Add(-ApprovalSkew - time.Second),
		"signed in the future":               f.clock.Add(ApprovalSkew + time.Second),
	} {
		d := f.decision(true)
		d.Time = at
		if _, err := f.db.Decide(ctx, d, f.pol); !errors.Is(err, ErrApprovalTime) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if h, err := f.db.HeldRequest(ctx, f.req.ID); err != nil || h.State != HeldWaiting {
		t.Fatalf("after refused decisions: %+v, %v", h, err)
	}
	// A policy that no longer allows the operation refuses it when it is
	// approved: the approval does not bypass the policy in force.
	text := bytes.Replace(sample.Policy(), []byte("name: exam.book"), []byte("name: exam.book.v2"), 1)
	res, err := f.db.Decide(ctx, f.decision(true), parsePolicy(t, text))
	if err != nil || res.Status != batch.StatusRejected || res.Reason != policy.ReasonUnknownOperation {
		t.Fatalf("approved under a policy without the operation: %+v, %v", res, err)
	}
	if n := appointments(t, f.db); n != f.before {
		t.Fatalf("a write the policy in force refuses took effect")
	}
}

// A held request survives the agent's restart, and a read-only Ledger
// sees it while the agent has the replica open.
func TestDB_held_acrossRestart(t *testing.T) {
	ctx := context.Background()
	f := newHeldFixture(t)
	l, err := OpenLedger(ctx, f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if list, err := l.HeldRequests(ctx); err != nil || len(list) != 1 || list[0].RequestID != f.req.ID {
		t.Fatalf("Ledger.HeldRequests: %v, %v", list, err)
	}
	f.db.Close()
	f.open(t)
	if res, err := f.db.Decide(ctx, f.decision(true), f.pol); err != nil || res.Status != batch.StatusDone {
		t.Fatalf("approval after a restart: %+v, %v", res, err)
	}
	if h, err := l.HeldRequest(ctx, f.req.ID); err != nil || h.State != HeldApproved {
		t.Fatalf("Ledger.HeldRequest: %+v, %v", h, err)
	}
	if _, err := l.HeldRequest(ctx, newID(t)); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Ledger.HeldRequest of an unknown id: %v", err)
	}
}
