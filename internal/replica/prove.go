package replica

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/ferrybridge/ferry/internal/policy"
	"github.com/ferrybridge/ferry/internal/sqlguard"
)

// Access returns what an operation's statement may touch, as its policy
// declares it (reads, inserts, updates).
func Access(op *policy.Operation) sqlguard.Access {
	return sqlguard.Access{Read: op.Reads, Insert: op.Inserts, Update: op.Updates}
}

// guardMode is the sqlguard mode of an operation.
func guardMode(op *policy.Operation) sqlguard.Mode {
	if op.Mode == policy.ModeWrite {
		return sqlguard.Write
	}
	return sqlguard.Read
}

// ProvePolicy compiles every statement of pol on db under the authorizer
// its operation's declared access allows, and checks that read statements
// are read-only and write statements are not. db is a replica (or a
// database holding the replica's schema). An operation that declares no
// access at all may touch nothing, so its statement fails the proof. The
// error joins one *sqlguard.ProofError per failing operation, each
// wrapped with the operation's name.
func ProvePolicy(ctx context.Context, db *sql.DB, pol *policy.Policy) error {
	c, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("prove policy: %w", err)
	}
	defer c.Close()
	var errs []error
	for _, op := range pol.Operations {
		if err := sqlguard.Prove(ctx, c, guardMode(op), Access(op), op.Statement); err != nil {
			errs = append(errs, fmt.Errorf("operation %s: %w", op.Name, err))
		}
	}
	return errors.Join(errs...)
}

// ProvePolicy proves pol against this replica on its read-only pool; see
// the function ProvePolicy.
func (db *DB) ProvePolicy(ctx context.Context, pol *policy.Policy) error {
	return ProvePolicy(ctx, db.ro, pol)
}
