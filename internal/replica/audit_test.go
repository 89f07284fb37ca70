package replica

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/audit/audittest"
	"github.com/ferrybridge/ferry/internal/batch"
)

// drainTo drains db's audit outbox into a fresh audit log and returns
// its entries.
func drainTo(t *testing.T, db *DB) []audit.Entry {
	t.Helper()
	_, entries := audittest.Drain(t, "intranet", db.AuditSource())
	return entries
}

// TestDB_Audit_held: an admin's approval of a held request is recorded
// with the admin as actor and the request's final result, and the expiry
// of an approval window as approval.expired; the subject only hashed.
func TestDB_Audit_held(t *testing.T) {
	ctx := context.Background()
	h, _ := audit.NewHasher(bytes.Repeat([]byte{3}, audit.HMACKeySize))

	f := newHeldFixture(t)
	if err := f.db.EnableAudit(ctx, "intranet", h); err != nil {
		t.Fatal(err)
	}
	f.clock = f.clock.Add(10 * time.Minute)
	if _, err := f.db.Decide(ctx, f.decision(true), f.pol); err != nil {
		t.Fatal(err)
	}
	got := drainTo(t, f.db)
	if len(got) != 1 {
		t.Fatalf("entries %+v, want one", got)
	}
	e := got[0]
	if e.Event != audit.EventAdmin || e.Actor != "carol" || e.Request != f.req.ID || e.Decision != batch.StatusDone ||
		e.Rows != 1 || e.Operation != "exam.book" || e.Subject != h.Subject(f.req.Subject) {
		t.Fatalf("approval entry %+v", e)
	}

	g := newHeldFixture(t)
	if err := g.db.EnableAudit(ctx, "intranet", h); err != nil {
		t.Fatal(err)
	}
	g.clock = g.clock.Add(time.Hour)
	if _, err := g.db.ExpireHeld(ctx); err != nil {
		t.Fatal(err)
	}
	got = drainTo(t, g.db)
	if len(got) != 1 || got[0].Event != audit.EventApprovalExpired || got[0].Request != g.req.ID || got[0].Decision != batch.StatusRejected {
		t.Fatalf("expiry entries %+v", got)
	}
}

// TestDB_Audit_answer: a request the intranet settles as never received
// (asked about by the DMZ) is recorded as its policy decision.
func TestDB_Audit_answer(t *testing.T) {
	ctx := context.Background()
	db, _ := newTestReplica(t)
	h, _ := audit.NewHasher(bytes.Repeat([]byte{3}, audit.HMACKeySize))
	env := askingEnvelope(t, db, 2)
	if err := db.EnableAudit(ctx, "intranet", h); err != nil {
		t.Fatal(err)
	}
	const lost = "0123456789abcdef0123456789abcdef"
	if _, err := db.Answer(ctx, env.ID, []string{lost}); err != nil {
		t.Fatal(err)
	}
	got := drainTo(t, db)
	if len(got) != 1 || got[0].Event != audit.EventPolicyDecision || got[0].Request != lost ||
		got[0].Decision != batch.StatusExpired || got[0].Reason != batch.ReasonNotReceived || got[0].Envelope != env.ID {
		t.Fatalf("entries %+v, want the settlement of %s", got, lost)
	}
}
