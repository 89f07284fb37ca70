package queue

import (
	"context"

	"github.com/ferrybridge/ferry/internal/audit"
)

// AuditSourceName names the spool's outbox in the zone's audit log.
const AuditSourceName = "spool"

// EnableAudit makes the spool record every decision it takes (a request
// accepted, an envelope sealed or published, a result applied, an
// acknowledgement, an expiry, an operator's retry or drop) as an audit
// entry of zone, staged in the decision's own transaction in the spool's
// database (audit.Stager), for the zone's audit log to drain
// ([Spool.AuditSource]). Subjects and parameters are recorded only as
// keyed hashes made with h. Call it before the spool is used.
func (s *Spool) EnableAudit(ctx context.Context, zone string, h *audit.Hasher) error {
	st, err := audit.NewStager(ctx, s.w, zone, h)
	if err != nil {
		return err
	}
	s.audit = st
	return nil
}

// AuditSource returns the spool's outbox as a source for the zone's
// audit log.
func (s *Spool) AuditSource() audit.Source {
	return audit.Source{Name: AuditSourceName, DB: s.w, Read: s.r}
}

// Audit stages entries that no other spool transaction carries (requests
// refused at the API, a quarantined result envelope), in one transaction
// of their own. It does nothing unless EnableAudit was called.
func (s *Spool) Audit(ctx context.Context, entries ...audit.Entry) error {
	return s.audit.Record(ctx, entries...)
}

// stageAction stages an operator's action on the queue. The admin's
// message is not copied (free text may hold anything); the spool's action
// log keeps it.
func (s *Spool) stageAction(ctx context.Context, x audit.Execer, a *Action) error {
	return s.audit.Stage(ctx, x, audit.Entry{Time: a.At, Event: audit.EventAdmin, Actor: a.Actor, Envelope: a.Envelope,
		Decision: "queue." + a.Action, Count: int64(a.Requests)})
}
