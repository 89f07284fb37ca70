package replica

import (
	"context"
	"fmt"
	"time"

	"github.com/ferrybridge/ferry/internal/audit"
)

// auditing is how the ledger records its decisions once EnableAudit was
// called: entries staged in the decision's own transaction.
type auditing struct {
	zone string
	hash *audit.Hasher
}

// AuditSourceName names the ledger's outbox in the zone's audit log.
const AuditSourceName = "ledger"

// EnableAudit makes the ledger record every decision it takes (each
// request's policy decision and what it returned or wrote, each request
// envelope applied, each result envelope sealed and published) as an
// audit entry of zone, staged in the decision's own transaction in the
// replica database's ledger (audit.Stage), for the zone's audit log to
// drain ([DB.AuditSource]). Subjects and parameters are recorded only as
// keyed hashes made with h. Call it before the DB is used.
func (db *DB) EnableAudit(ctx context.Context, zone string, h *audit.Hasher) error {
	if err := audit.MigrateOutbox(ctx, db.w); err != nil {
		return err
	}
	db.audit = &auditing{zone: zone, hash: h}
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
	if db.audit == nil || len(entries) == 0 {
		return nil
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer tx.Rollback()
	if err := db.stage(ctx, tx, entries...); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// stage stages entries with x, filling in the zone and, where missing,
// the time.
func (db *DB) stage(ctx context.Context, x audit.Execer, entries ...audit.Entry) error {
	if db.audit == nil || len(entries) == 0 {
		return nil
	}
	now := time.Now()
	for i := range entries {
		entries[i].Zone = db.audit.zone
		if entries[i].Time.IsZero() {
			entries[i].Time = now
		}
	}
	return audit.Stage(ctx, x, entries...)
}

// hashes returns the keyed hashes of a request's subject and parameters.
func (db *DB) hashes(subject string, params []byte) (string, string) {
	if db.audit == nil || db.audit.hash == nil {
		return "", ""
	}
	return db.audit.hash.Subject(subject), db.audit.hash.Params(params)
}
