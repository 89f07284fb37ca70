package replica

import (
	"context"

	"github.com/ferrybridge/ferry/internal/audit"
)

// AuditSourceName names the ledger's outbox in the zone's audit log.
const AuditSourceName = "ledger"

// EnableAudit makes the ledger record every decision it takes (each
// request's policy decision and what it returned or wrote, each request
// envelope applied, each result envelope sealed and published) as an
// audit entry of zone, staged in the decision's own transaction in the
// replica database's ledger (audit.Stager), for the zone's audit log to
// drain ([DB.AuditSource]). Subjects and parameters are recorded only as
// keyed hashes made with h. Call it before the DB is used.
func (db *DB) EnableAudit(ctx context.Context, zone string, h *audit.Hasher) error {
	st, err := audit.NewStager(ctx, db.w, zone, h)
	if err != nil {
		return err
	}
	db.audit = st
	return nil
}

// AuditSource returns the ledger's outbox as a source for the zone's
// audit log.
func (db *DB) AuditSource() audit.Source {
	return audit.Source{Name: AuditSourceName, DB: db.w}
}

// Audit stages entries that no other ledger transaction carries (a
// quarantined envelope), in one transaction of their own. It does nothing
// unless EnableAudit was called.
func (db *DB) Audit(ctx context.Context, entries ...audit.Entry) error {
	return db.audit.Record(ctx, entries...)
}
