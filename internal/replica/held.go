package replica

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/policy"
	"github.com/ferrybridge/ferry/internal/sqlitedb"
)

// Held request states, as stored in ferry_held.state.
const (
	HeldWaiting  = "held"     // waiting for an admin's decision
	HeldApproved = "approved" // approved and run (its result may still be a refusal)
	HeldDenied   = "denied"   // denied by an admin
	HeldExpired  = "expired"  // not decided within the operation's approval.within
)

// ApprovalSkew is how far an approval's time may be ahead of the agent's
// clock, or before the moment the request was held: admins' clocks are
// not exact, but an approval signed long before the request existed, or
// dated in the future, is refused.
const ApprovalSkew = 5 * time.Minute

// Errors of Decide. Each says why an approval cannot take effect; the
// caller refuses the approval file and goes on.
var (
	// ErrNotHeld means no request with that id is held.
	ErrNotHeld = errors.New("replica: no such held request")
	// ErrDecided means the request was decided before; errors.As gives a
	// *DecidedError.
	ErrDecided = errors.New("replica: held request already decided")
	// ErrApprovalTime means the approval's time is before the request was
	// held or ahead of the agent's clock, beyond ApprovalSkew.
	ErrApprovalTime = errors.New("replica: approval time out of range")
)

// DecidedError is returned by Decide for a request decided before.
type DecidedError struct {
	RequestID string
	State     string // HeldApproved, HeldDenied or HeldExpired
	By        string // the admin who decided; "" for HeldExpired
	// Same reports that the approval given is, byte for byte, the one
	// that decided it: the same file taken in again after a crash.
	Same bool
}

func (e *DecidedError) Error() string {
	if e.By == "" {
		return fmt.Sprintf("held request %s is already %s", e.RequestID, e.State)
	}
	return fmt.Sprintf("held request %s is already %s by %s", e.RequestID, e.State, e.By)
}

// Is makes a *DecidedError match ErrDecided.
func (e *DecidedError) Is(target error) bool { return target == ErrDecided }

// Held is a held write request as the ledger keeps it.
type Held struct {
	RequestID  string
	EnvelopeID string
	Client     string
	Operation  string
	// Subject and Params are what the request asserted and asked; both
	// are personal data, kept only while the request waits (empty once
	// decided). Never log them.
	Subject string
	Params  json.RawMessage
	HeldAt  time.Time
	Expires time.Time
	State   string
	// DecidedBy and DecidedAt are set once an admin decided.
	DecidedBy string
	DecidedAt time.Time
	// Sent reports that the final result is in a sealed result envelope.
	Sent bool
}

// Decision is an admin's verified decision on a held request.
type Decision struct {
	RequestID string
	Approve   bool      // true to run the request, false to deny it
	By        string    // the admin's key name
	Time      time.Time // when the admin signed it
	// Approval is the signed approval note, kept in the ledger as the
	// record of who decided.
	Approval []byte
}

// hold records r, which the policy allowed and which its operation holds
// for approval, and returns its "held" result.
func hold(ctx context.Context, tx *sql.Tx, envID string, r batch.Request, op *policy.Operation, now time.Time) (batch.Result, error) {
	expires := now.Add(op.Approval.Within)
	if _, err := tx.ExecContext(ctx, `INSERT INTO ferry_held
		(request_id, envelope_id, client, subject, operation, params, held_at, expires, state)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'held')`,
		r.ID, envID, r.Client, r.Subject, r.Operation, []byte(r.Params), now.UnixMilli(), expires.UnixMilli()); err != nil {
		return batch.Result{}, fmt.Errorf("hold: %w", err)
	}
	return batch.Result{
		RequestID: r.ID,
		Status:    batch.StatusHeld,
		Reason:    policy.ReasonApprovalRequired,
		Message: fmt.Sprintf("operation %s waits for an admin's approval until %s",
			op.Name, expires.UTC().Truncate(time.Second).Format(time.RFC3339)),
	}, nil
}

const heldColumns = `request_id, envelope_id, client, operation, subject, params, held_at, expires,
	state, decided_by, decided_at, result_id IS NOT NULL`

func scanHeld(sc interface{ Scan(...any) error }) (*Held, error) {
	var (
		h                        Held
		params                   []byte
		heldAt, expires, decided int64
	)
	if err := sc.Scan(&h.RequestID, &h.EnvelopeID, &h.Client, &h.Operation, &h.Subject, &params,
		&heldAt, &expires, &h.State, &h.DecidedBy, &decided, &h.Sent); err != nil {
		return nil, err
	}
	if params != nil {
		h.Params = json.RawMessage(params)
	}
	h.HeldAt, h.Expires = time.UnixMilli(heldAt).UTC(), time.UnixMilli(expires).UTC()
	if decided != 0 {
		h.DecidedAt = time.UnixMilli(decided).UTC()
	}
	return &h, nil
}

// HeldRequests returns the held requests in the given states (all of
// them if none is given), oldest first.
func (db *DB) HeldRequests(ctx context.Context, states ...string) ([]*Held, error) {
	return listHeld(ctx, db.ro, states)
}

// HeldRequest returns one held request, decided or not, or an error
// matching ErrNotHeld.
func (db *DB) HeldRequest(ctx context.Context, id string) (*Held, error) {
	return heldByID(ctx, db.ro, id)
}

func heldByID(ctx context.Context, q queryer, id string) (*Held, error) {
	h, err := scanHeld(q.QueryRowContext(ctx, `SELECT `+heldColumns+` FROM ferry_held WHERE request_id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("request %s: %w", id, ErrNotHeld)
	}
	if err != nil {
		return nil, fmt.Errorf("held request %s: %w", id, err)
	}
	return h, nil
}

func listHeld(ctx context.Context, q *sql.DB, states []string) ([]*Held, error) {
	if states == nil {
		states = []string{}
	}
	filter, _ := json.Marshal(states)
	rows, err := q.QueryContext(ctx, `SELECT `+heldColumns+` FROM ferry_held
		WHERE ? = '[]' OR state IN (SELECT value FROM json_each(?))
		ORDER BY held_at, rowid`, string(filter), string(filter))
	if err != nil {
		return nil, fmt.Errorf("held requests: %w", err)
	}
	defer rows.Close()
	var out []*Held
	for rows.Next() {
		h, err := scanHeld(rows)
		if err != nil {
			return nil, fmt.Errorf("held requests: %w", err)
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("held requests: %w", err)
	}
	return out, nil
}

// Decide carries out an admin's decision on a held request, in one
// transaction: an approval runs the request on the writer, checked again
// against pol (the policy in force now, with the agent's clock; rate
// limits were taken when it was held) and under the guard of its
// operation's declared access; a denial answers it "rejected" with reason
// approval_denied. The final result replaces the held one in the ledger,
// so a duplicate of the request is answered with it, and it waits for
// [DB.Decided] to hand it to a result envelope.
//
// A request whose approval expired is marked expired instead, and Decide
// returns its final result with an error matching ErrDecided. Decide
// returns ErrNotHeld, ErrDecided (a *DecidedError) or ErrApprovalTime,
// wrapped, for a decision that cannot take effect; any other error is the
// database's, and nothing changed.
func (db *DB) Decide(ctx context.Context, d Decision, pol Checker) (*batch.Result, error) {
	conn, tx, err := db.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("decide %s: %w", d.RequestID, err)
	}
	defer conn.Close()
	defer tx.Rollback()
	h, err := heldByID(ctx, tx, d.RequestID)
	if err != nil {
		return nil, fmt.Errorf("decide: %w", err)
	}
	if h.State != HeldWaiting {
		var approval []byte
		if err := tx.QueryRowContext(ctx, `SELECT approval FROM ferry_held WHERE request_id = ?`, d.RequestID).Scan(&approval); err != nil {
			return nil, fmt.Errorf("decide %s: %w", d.RequestID, err)
		}
		same := approval != nil && string(approval) == string(d.Approval)
		return nil, fmt.Errorf("decide: %w", &DecidedError{RequestID: h.RequestID, State: h.State, By: h.DecidedBy, Same: same})
	}
	clock := db.now()
	if !clock.Before(h.Expires) {
		res, err := expireOne(ctx, tx, h, clock)
		if err != nil {
			return nil, fmt.Errorf("decide %s: %w", d.RequestID, err)
		}
		if err := db.stageHeld(ctx, tx, h, audit.EventApprovalExpired, "", res, clock); err != nil {
			return nil, fmt.Errorf("decide %s: %w", d.RequestID, err)
		}
		if err := tx.Commit(); err != nil {
			return nil, fmt.Errorf("decide %s: commit: %w", d.RequestID, err)
		}
		return &res, fmt.Errorf("decide: %w", &DecidedError{RequestID: h.RequestID, State: HeldExpired})
	}
	if d.Time.Before(h.HeldAt.Add(-ApprovalSkew)) || d.Time.After(clock.Add(ApprovalSkew)) {
		return nil, fmt.Errorf("decide %s: %w: signed %s, request held %s, now %s", d.RequestID, ErrApprovalTime,
			d.Time.UTC().Format(time.RFC3339), h.HeldAt.Format(time.RFC3339), clock.UTC().Format(time.RFC3339))
	}
	res := batch.Result{RequestID: h.RequestID}
	state := HeldDenied
	if d.Approve {
		state = HeldApproved
		res, err = db.runHeld(ctx, conn, tx, h, pol, clock)
		if err != nil {
			return nil, fmt.Errorf("decide %s: %w", d.RequestID, err)
		}
	} else {
		res.Status, res.Reason = batch.StatusRejected, policy.ReasonApprovalDenied
		res.Message = "an admin denied the request"
	}
	if err := settle(ctx, tx, h.RequestID, state, d.By, clock, d.Approval, res); err != nil {
		return nil, fmt.Errorf("decide %s: %w", d.RequestID, err)
	}
	if err := db.stageHeld(ctx, tx, h, audit.EventAdmin, d.By, res, clock); err != nil {
		return nil, fmt.Errorf("decide %s: %w", d.RequestID, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("decide %s: commit: %w", d.RequestID, err)
	}
	return &res, nil
}

// stageHeld records how a held request ended: an admin's approval or
// denial (event admin, by the admin's key, with the request's final
// result), or the expiry of its approval window.
func (db *DB) stageHeld(ctx context.Context, tx *sql.Tx, h *Held, event, by string, res batch.Result, now time.Time) error {
	e := audit.Entry{Time: now, Event: event, Actor: by, Request: h.RequestID, Envelope: h.EnvelopeID, Operation: h.Operation,
		Decision: res.Status, Reason: res.Reason, Rows: max(res.RowsAffected, int64(len(res.Rows))),
		Subject: db.audit.Subject(h.Subject), Params: db.audit.Params(h.Params)}
	if event == audit.EventAdmin {
		e.Detail = "approval of a held request"
	}
	return db.audit.Stage(ctx, tx, e)
}

// runHeld runs an approved request: the policy in force checks it again
// and the write runs under the guard. Like applyOne, it returns an error
// only when the decision must be abandoned.
func (db *DB) runHeld(ctx context.Context, conn *sql.Conn, tx *sql.Tx, h *Held, pol Checker, now time.Time) (batch.Result, error) {
	res := batch.Result{RequestID: h.RequestID}
	checked, err := pol.Evaluate(policy.Request{Client: h.Client, Subject: h.Subject, Operation: h.Operation, Params: h.Params, Now: now})
	var rej *policy.RejectError
	switch {
	case errors.As(err, &rej):
		res.Status, res.Reason, res.Message = batch.StatusRejected, rej.Reason, rej.Message
		return res, nil
	case err != nil, checked == nil, checked.Op == nil, checked.Op.Mode != policy.ModeWrite:
		// The operation is no longer a write (or cannot be checked): an
		// approval never turns a request into something else.
		res.Status, res.Reason, res.Message = batch.StatusFailed, ReasonCheckFailed, messageCheckFailed
		return res, nil
	}
	n, err := write(ctx, conn, tx, checked)
	if err != nil {
		if fatal(ctx, err) {
			return res, err
		}
		res.Status, res.Reason, res.Message = batch.StatusFailed, ReasonApplyFailed, messageApplyFailed
		return res, nil
	}
	res.Status, res.RowsAffected = batch.StatusDone, n
	return res, nil
}

// settle records a held request's final result: in ferry_held (state, who
// decided, the approval; the personal data dropped) and in ferry_requests,
// where it replaces the held result.
func settle(ctx context.Context, tx *sql.Tx, id, state, by string, now time.Time, approval []byte, res batch.Result) error {
	data, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	n, err := affected(tx.ExecContext(ctx, `UPDATE ferry_held SET state = ?, decided_by = ?, decided_at = ?,
		approval = ?, subject = '', params = NULL WHERE request_id = ? AND state = 'held'`,
		state, by, now.UnixMilli(), approval, id))
	if err != nil {
		return fmt.Errorf("settle held request: %w", err)
	}
	if n != 1 {
		return fmt.Errorf("settle held request: %d rows changed, want 1", n)
	}
	n, err = affected(tx.ExecContext(ctx, `UPDATE ferry_requests SET status = ?, reason = ?, message = ?, result = ?
		WHERE id = ? AND status = 'held'`, res.Status, res.Reason, res.Message, data, id))
	if err != nil {
		return fmt.Errorf("settle request: %w", err)
	}
	if n != 1 {
		return fmt.Errorf("settle request: %d rows changed, want 1", n)
	}
	return nil
}

func affected(r sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return r.RowsAffected()
}

// expireOne answers a held request whose approval did not come in time.
func expireOne(ctx context.Context, tx *sql.Tx, h *Held, now time.Time) (batch.Result, error) {
	res := batch.Result{RequestID: h.RequestID, Status: batch.StatusRejected, Reason: policy.ReasonApprovalExpired,
		Message: fmt.Sprintf("no admin approved the request before %s", h.Expires.Truncate(time.Second).Format(time.RFC3339))}
	return res, settle(ctx, tx, h.RequestID, HeldExpired, "", now, nil, res)
}

// ExpireHeld answers every held request whose approval time has passed
// with "rejected", reason approval_expired, in one transaction, and
// returns their ids. Their results wait for [DB.Decided] like any other
// decision.
func (db *DB) ExpireHeld(ctx context.Context) ([]string, error) {
	clock := db.now()
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("expire held requests: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT `+heldColumns+` FROM ferry_held
		WHERE state = 'held' AND expires <= ? ORDER BY expires, rowid`, clock.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("expire held requests: %w", err)
	}
	var due []*Held
	for rows.Next() {
		h, err := scanHeld(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("expire held requests: %w", err)
		}
		due = append(due, h)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, fmt.Errorf("expire held requests: %w", err)
	}
	if len(due) == 0 {
		return nil, nil
	}
	ids := make([]string, len(due))
	for i, h := range due {
		res, err := expireOne(ctx, tx, h, clock)
		if err != nil {
			return nil, fmt.Errorf("expire held request %s: %w", h.RequestID, err)
		}
		if err := db.stageHeld(ctx, tx, h, audit.EventApprovalExpired, "", res, clock); err != nil {
			return nil, fmt.Errorf("expire held request %s: %w", h.RequestID, err)
		}
		ids[i] = h.RequestID
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("expire held requests: commit: %w", err)
	}
	return ids, nil
}

// scanResults decodes a column of stored result JSON.
func scanResults(rows *sql.Rows) ([]batch.Result, error) {
	defer rows.Close()
	var out []batch.Result
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return nil, err
		}
		var r batch.Result
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Decided returns the final results of held requests that were decided
// (or expired) but are not yet in a sealed result envelope, in the order
// they were decided. A result envelope carrying them lists their ids in
// [Outgoing.Decided], and [DB.StoreSealed] marks them sent.
func (db *DB) Decided(ctx context.Context) ([]batch.Result, error) {
	rows, err := db.w.QueryContext(ctx, `SELECT r.result FROM ferry_held h JOIN ferry_requests r ON r.id = h.request_id
		WHERE h.state <> 'held' AND h.result_id IS NULL ORDER BY h.decided_at, h.rowid`)
	if err != nil {
		return nil, fmt.Errorf("decided requests: %w", err)
	}
	out, err := scanResults(rows)
	if err != nil {
		return nil, fmt.Errorf("decided requests: %w", err)
	}
	return out, nil
}

// Ledger is a read-only view of a replica's ledger, for tools such as
// ferryctl that look at the held requests while the agent runs. It never
// writes, and does not migrate: the agent does.
type Ledger struct {
	ro *sql.DB
}

// OpenLedger opens the replica at path read-only.
func OpenLedger(ctx context.Context, path string) (*Ledger, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("open replica ledger: %w", err)
	}
	ro, err := sqlitedb.Open(ctx, path, sqlitedb.Options{ReadOnly: true, MaxReaders: 1})
	if err != nil {
		return nil, fmt.Errorf("open replica ledger %s: %w", path, err)
	}
	var n int
	if err := ro.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'ferry_held'`).Scan(&n); err != nil || n != 1 {
		ro.Close()
		return nil, fmt.Errorf("open replica ledger %s: no ferry_held table (start the intranet agent once on this replica to migrate it)", path)
	}
	return &Ledger{ro: ro}, nil
}

// Close closes the ledger.
func (l *Ledger) Close() error { return l.ro.Close() }

// HeldRequests is [DB.HeldRequests].
func (l *Ledger) HeldRequests(ctx context.Context, states ...string) ([]*Held, error) {
	return listHeld(ctx, l.ro, states)
}

// HeldRequest is [DB.HeldRequest].
func (l *Ledger) HeldRequest(ctx context.Context, id string) (*Held, error) {
	return heldByID(ctx, l.ro, id)
}
