package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/ferrybridge/ferry/internal/audit"
)

// auditing is how the spool records its decisions once EnableAudit was
// called: entries staged in the decision's own transaction.
type auditing struct {
	zone string
	hash *audit.Hasher
}

// AuditSourceName names the spool's outbox in the zone's audit log.
const AuditSourceName = "spool"

// EnableAudit makes the spool record every decision it takes (a request
// accepted, an envelope sealed or published, a result applied, an
// acknowledgement, an expiry, an operator's retry or drop) as an audit
// entry of zone, staged in the decision's own transaction in the spool's
// database (audit.Stage), for the zone's audit log to drain
// ([Spool.AuditSource]). Subjects and parameters are recorded only as
// keyed hashes made with h. Call it before the spool is used.
func (s *Spool) EnableAudit(ctx context.Context, zone string, h *audit.Hasher) error {
	if err := audit.MigrateOutbox(ctx, s.w); err != nil {
		return err
	}
	s.audit = &auditing{zone: zone, hash: h}
	return nil
}

// AuditSource returns the spool's outbox as a source for the zone's
// audit log.
func (s *Spool) AuditSource() audit.Source {
	return audit.Source{Name: AuditSourceName, DB: s.w}
}

// Audit stages entries that no other spool transaction carries (requests
// refused at the API, a quarantined result envelope), in one transaction
// of their own. It does nothing unless EnableAudit was called.
func (s *Spool) Audit(ctx context.Context, entries ...audit.Entry) error {
	if s.audit == nil || len(entries) == 0 {
		return nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer tx.Rollback()
	if err := s.stage(ctx, tx, entries...); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// stage stages entries with x (the decision's transaction), filling in
// the zone and, where missing, the time.
func (s *Spool) stage(ctx context.Context, x audit.Execer, entries ...audit.Entry) error {
	if s.audit == nil || len(entries) == 0 {
		return nil
	}
	now := time.Now()
	for i := range entries {
		entries[i].Zone = s.audit.zone
		if entries[i].Time.IsZero() {
			entries[i].Time = now
		}
	}
	return audit.Stage(ctx, x, entries...)
}

// subject returns the keyed hash of a subject, "" without auditing.
func (s *Spool) subjectHash(subject string) string {
	if s.audit == nil || s.audit.hash == nil {
		return ""
	}
	return s.audit.hash.Subject(subject)
}

// paramsHash returns the keyed hash of a request's parameters.
func (s *Spool) paramsHash(params []byte) string {
	if s.audit == nil || s.audit.hash == nil {
		return ""
	}
	return s.audit.hash.Params(params)
}

// stageAction stages an operator's action on the queue. The admin's
// message is not copied (free text may hold anything); the spool's action
// log keeps it.
func (s *Spool) stageAction(ctx context.Context, x audit.Execer, a *Action) error {
	return s.stage(ctx, x, audit.Entry{Time: a.At, Event: audit.EventAdmin, Actor: a.Actor, Envelope: a.Envelope,
		Decision: "queue." + a.Action, Count: int64(a.Requests)})
}
