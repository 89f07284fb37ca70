// Package queue is the DMZ agent's durable spool: the requests it has
// accepted, the request envelopes that carry them across the boundary, the
// sending state of its channel, and the results that came back.
//
// # Storage
//
// A [Spool] is one SQLite file opened with [sqlitedb.Open] (WAL,
// synchronous=FULL, BEGIN IMMEDIATE, application_id [ApplicationID]) with
// the schema in the embedded sql/ migrations. It holds two handles: one
// writer connection that every change goes through, and a separate
// read-only pool for status reads, so a client polling its request never
// waits behind a commit.
//
// # Group commit
//
// An [Intake] puts accepted requests into the spool. Callers of
// [Intake.Submit] queue their request and wait; the goroutine in
// [Intake.Run] takes every request waiting (up to a bound), inserts them in
// one transaction, commits, and only then answers each caller. One fsync
// serves every request that was waiting on it, and no caller is told its
// request was accepted before it is durable.
//
// # Idempotency
//
// A request may carry an idempotency key, unique per client. A request
// whose client and key are already in the spool is not inserted again: if
// its operation, parameters and subject are the same, Submit returns the
// stored request (same id); if they differ, Submit fails with
// [ErrIdempotencyConflict]. The comparison is on [BodyHash], stored with
// the request, so it still holds once the request is final and its
// parameters and subject are gone, and for requests stored before the
// subject existed (they hash as requests without a subject).
//
// # Subject
//
// A request may carry a subject, the citizen identity its client asserted
// ([batch.ValidSubject] shape, checked by Submit). The spool stores it
// with the request (migration 0002; older rows have none) and carries it
// into the [batch.Request] the batcher seals; [Spool.Get] never returns
// it.
//
// # Envelopes and the channel
//
// The batcher reads unsealed requests ([Spool.Unsealed]), seals them, and
// stores the sealed envelope with [Spool.StoreSealed], which in one
// transaction inserts the envelope's bytes, advances the channel's next
// sequence number and previous header hash, and assigns the requests to the
// envelope. Because the envelope is stored before it is published and the
// chain advances in the same transaction, a crash can never leave a
// sequence number used by two envelopes or a published envelope the spool
// does not know: at start the agent publishes the stored, unpublished
// envelopes again, byte for byte ([Spool.Unpublished]).
//
// # Re-sending and dead letters
//
// [Spool.MarkPublished] counts each publication of an envelope as an
// attempt and schedules the next: the envelope falls due to be sent again
// [Backoff.Delay] after it (resend_after, doubled for each further
// attempt, at most resend_max), or at once when the intranet reports it
// missing ([Spool.ResendMissing], once per envelope). [Spool.Due] returns
// the published envelopes due, through the partial index envelopes_due.
// A re-send is never the same envelope again: the agent seals what the
// envelope carried that still needs an answer (its queued and sent
// requests, [Spool.OpenRequests]; the requests a query asked about,
// [Spool.Queried]; nothing, for a heartbeat) into a new envelope, the
// channel's next, whose body names the one it replaces, and
// [Spool.StoreResend] stores it in the old one's place in one
// transaction: the requests move to it, it takes over the attempts (so
// backoff and max_resends go on counting), and the old row goes. An
// envelope due with nothing left to send is retired ([Spool.Retire]). The
// kind of each envelope (requests, query, heartbeat) is a column, added by
// migration 0009.
//
// Before that, [Spool.MarkDead] makes dead ([EnvDead]) the envelopes due
// that were already published max_resends times. A dead envelope is not
// sent again, but it is still open: an acknowledgement or results
// arriving late apply as for a published one, [Spool.Expire] expires it
// and orphans its requests (which stay "sent" until then), and
// [Spool.AskDue] asks again about the requests it asked about, since
// nobody publishes it any more. The open states (sealed, published, dead) are
// the partial index envelopes_open; a query must list them exactly as
// openStates does for SQLite to use it.
//
// An admin acts on envelopes with [Spool.Retry] and [Spool.RetryDead] (due
// now, attempts reset) and [Spool.Drop] (the envelope becomes
// [EnvDropped], final, and its requests still queued or sent are
// orphaned, as on expiry). Each action is recorded in the queue_actions table in
// its own transaction ([Spool.Actions]); an acknowledged, expired or
// dropped envelope is refused with [ErrEnvelopeState]. Migration 0007
// added the states, the attempts and resend_at columns and the table; to
// change the state CHECK constraint it rebuilt envelopes, and with it
// requests, whose foreign key refers to envelopes.
//
// # Results
//
// [Spool.ApplyResults] stores one result envelope's results against their
// requests and marks the request envelopes it acknowledges, in one
// transaction that also records the result envelope's id and sequence
// number, so a copy of it is recognised ([ErrDuplicate]) and an envelope
// reusing its sequence number is refused ([ErrReplay]). A request reaches a
// final status once; later results for it are ignored. Final requests lose
// their parameters and subject (personal data the spool no longer needs).
//
// A result may also be held (batch.StatusHeld, reason
// policy.ReasonApprovalRequired): the intranet holds a write until an
// admin approves or denies it, or the approval expires. Held is not final
// ([Final] is false; [Applied.Held] lists the requests a held result
// moved): it applies only to a queued or sent request, and the request
// loses its parameters and subject then, since the intranet holds them and
// the DMZ never sends it again. The held result comes in the envelope that
// acknowledges the request's envelope; the final result (done, rejected
// with approval_denied or approval_expired, or failed) comes later, in an
// envelope that may acknowledge nothing, and applies to a queued, sent or
// held request. So a held result arriving after the final one (envelopes
// may be reordered) is stale and ignored, an acknowledgement fails with
// ReasonNoResult only requests still queued or sent, and [Spool.Expire]
// never touches a held request. Migration 0005 added 'held' to the status
// column's CHECK constraint by rebuilding the requests table.
//
// # Asking the intranet
//
// Two kinds of request wait for an answer that nobody will send again by
// itself, so the DMZ asks the intranet about them (batch.Requests.Query):
//
//   - A held request: its final result comes in an envelope that
//     acknowledges nothing, and is lost for good if that envelope is.
//   - An orphaned request: its envelope expired ([Spool.Expire]) or was
//     dropped ([Spool.Drop]) before its result came back. The intranet may
//     have applied it and lost only the answer, so the DMZ never calls it
//     expired itself. Its status stays queued or sent; the orphaned column
//     (migration 0010) holds when its envelope closed, and it loses its
//     parameters and subject, since it is never sent again. The intranet
//     answers its stored result, or, for a request it never received,
//     records and answers expired with batch.ReasonNotReceived, and never
//     applies it after that. So the status a client sees never changes
//     once final, even if the envelope turns up at the intranet later.
//
// [Spool.AskDue] picks the requests due for asking, and [Spool.StoreQuery]
// stores the asking envelope (it carries no requests) like StoreSealed
// and records, in the same transaction, when each request was asked about
// and which envelope asked (migration 0006). A held request is due when it
// was last asked about, or became held, longer ago than the age given; an
// orphaned one at once, and then like a held one; neither while the
// envelope that last asked about it is still open: publishing it again
// asks again. Asking changes no status; an asking envelope that expires
// unacknowledged changes no request, and the answer is an ordinary final
// result. The partial index requests_ask holds the requests to ask about.
//
// # Catalogue
//
// The intranet sends its operation catalogue in results envelopes. The
// spool keeps the latest one ([Catalogue], migration 0003, a single row):
// ApplyResults stores the catalogue given in [ReceivedEnvelope.Catalogue]
// in the envelope's transaction, but only if the envelope's sequence
// number is higher than the stored catalogue's, so a late envelope never
// brings back an older catalogue. The spool does not interpret it.
package queue

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/sqlitedb"
)

// ApplicationID is the SQLite application_id of a DMZ spool ("fry1").
const ApplicationID = 0x66727931

// Component names the spool's schema in the ferry_schema table.
const Component = "dmz-spool"

// DefaultMaxReaders bounds the read-only pool used for status reads.
const DefaultMaxReaders = 4

//go:embed sql/*.sql
var migrations embed.FS

// Errors callers branch on.
var (
	// ErrNotFound is returned by Get for an unknown request id.
	ErrNotFound = errors.New("queue: request not found")
	// ErrIdempotencyConflict is returned by Submit when the client already
	// used the idempotency key for a different operation or parameters.
	ErrIdempotencyConflict = errors.New("queue: idempotency key already used with a different request")
	// ErrBadSubject is returned by Submit for a request whose subject is
	// neither empty nor of the batch.ValidSubject shape.
	ErrBadSubject = errors.New("queue: invalid subject")
	// ErrClosed is returned by Submit once the intake has stopped.
	ErrClosed = errors.New("queue: intake stopped")
	// ErrSeqConflict is returned by StoreSealed when the channel's next
	// sequence number is not the one the envelope was sealed with.
	ErrSeqConflict = errors.New("queue: channel sequence number moved")
	// ErrDuplicate is returned by ApplyResults for a result envelope
	// already applied.
	ErrDuplicate = errors.New("queue: result envelope already applied")
	// ErrReplay is returned by ApplyResults for a result envelope whose
	// channel and sequence number belong to another envelope already
	// applied.
	ErrReplay = errors.New("queue: sequence number already used by another envelope")
	// ErrSeqJump is returned by ApplyResults for a result envelope whose
	// sequence number is further above the highest one received on its
	// channel than the bound SetMaxSeqJump set.
	ErrSeqJump = errors.New("queue: sequence number too far ahead")
	// ErrChainBroken is returned by ApplyResults for a result envelope
	// whose prev is not the header hash of the envelope before it on the
	// channel, or whose header hash the envelope after it does not name.
	ErrChainBroken = errors.New("queue: hash chain broken")
	// ErrBadSeq is returned by ApplyResults for a result envelope with
	// sequence number 0.
	ErrBadSeq = errors.New("queue: sequence number 0")
)

// Final reports whether a request status is final: done, rejected, failed
// or expired. Queued, sent and held are not.
func Final(status string) bool {
	switch status {
	case batch.StatusDone, batch.StatusRejected, batch.StatusFailed, batch.StatusExpired:
		return true
	}
	return false
}

// ReasonNoResult is the one reason the spool itself gives for a final
// status: the intranet acknowledged the envelope carrying the request but
// sent no result for it. Every other final status comes from the intranet,
// expired included (see [Spool.Expire]).
const ReasonNoResult = "no_result"

// Spool is the DMZ agent's durable state.
type Spool struct {
	w *sql.DB // the single writer connection
	r *sql.DB // read-only pool
	// maxJump bounds how far above the highest sequence number received
	// a result envelope may be (see SetMaxSeqJump).
	maxJump uint64
	// due fires when ResendMissing made envelopes due early.
	due chan struct{}
	// audit, when set by EnableAudit, stages an audit entry with each
	// decision.
	audit *audit.Stager
}

// Open opens (creating if needed) the spool database at path and applies
// pending migrations.
func Open(ctx context.Context, path string) (*Spool, error) {
	sub, err := fs.Sub(migrations, "sql")
	if err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	w, err := sqlitedb.Open(ctx, path, sqlitedb.Options{
		ApplicationID: ApplicationID,
		Component:     Component,
		Migrations:    sub,
	})
	if err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	r, err := sqlitedb.Open(ctx, path, sqlitedb.Options{
		ReadOnly:      true,
		MaxReaders:    DefaultMaxReaders,
		ApplicationID: ApplicationID,
	})
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open spool: %w", err)
	}
	return &Spool{w: w, r: r, due: make(chan struct{}, 1)}, nil
}

// Close closes both handles.
func (s *Spool) Close() error {
	return errors.Join(s.r.Close(), s.w.Close())
}

// Ping checks that the spool answers reads.
func (s *Spool) Ping(ctx context.Context) error {
	return s.r.PingContext(ctx)
}

// Request is an accepted request as the intake stores it.
type Request struct {
	ID             string // 32 hex digits; Submit fills it when empty
	Client         string
	IdempotencyKey string // empty for none
	Operation      string
	Params         json.RawMessage // a compact JSON object
	Received       time.Time       // Submit fills it when zero
	// Subject is the citizen identity the client asserted, empty for
	// none. Personal data: never log it.
	Subject string
}

// Status is a request as a client sees it. It has no subject: a status
// read never returns one.
type Status struct {
	ID           string
	Client       string
	Operation    string
	Status       string // one of the batch.Status… values
	EnvelopeID   string // the request envelope carrying it, once sealed
	Received     time.Time
	Updated      time.Time
	Reason       string
	Message      string
	Result       json.RawMessage // JSON array of rows, when done
	RowsAffected int64
	RetryAfter   int64 // seconds, for a request refused with rate_limited
}

// Get returns the status of request id, or ErrNotFound. It reads from the
// read-only pool.
func (s *Spool) Get(ctx context.Context, id string) (*Status, error) {
	var (
		st                Status
		env               sql.NullString
		result            []byte
		received, updated int64
	)
	err := s.r.QueryRowContext(ctx, `SELECT id, client, operation, status, envelope_id, received, updated,
		reason, message, result, rows_affected, retry_after FROM requests WHERE id = ?`, id).Scan(
		&st.ID, &st.Client, &st.Operation, &st.Status, &env, &received, &updated,
		&st.Reason, &st.Message, &result, &st.RowsAffected, &st.RetryAfter)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("get request %s: %w", id, err)
	}
	st.EnvelopeID = env.String
	st.Received, st.Updated = time.UnixMilli(received).UTC(), time.UnixMilli(updated).UTC()
	if len(result) > 0 {
		st.Result = json.RawMessage(result)
	}
	return &st, nil
}

// Unsealed returns up to limit requests not yet sealed into an envelope,
// oldest first, as they cross to the intranet. It reads from the read-only
// pool, which sees every committed transaction.
func (s *Spool) Unsealed(ctx context.Context, limit int) ([]batch.Request, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, client, operation, params, received, subject FROM requests
		WHERE envelope_id IS NULL ORDER BY rid LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("unsealed requests: %w", err)
	}
	out, err := scanRequests(rows)
	if err != nil {
		return nil, fmt.Errorf("unsealed requests: %w", err)
	}
	return out, nil
}

// scanRequests reads rows of id, client, operation, params, received and
// subject to the end, as a request envelope carries them, and closes them.
func scanRequests(rows *sql.Rows) ([]batch.Request, error) {
	defer rows.Close()
	var out []batch.Request
	for rows.Next() {
		var (
			r        batch.Request
			params   []byte
			received int64
		)
		if err := rows.Scan(&r.ID, &r.Client, &r.Operation, &params, &received, &r.Subject); err != nil {
			return nil, err
		}
		if len(params) == 0 {
			params = []byte("{}")
		}
		r.Params = json.RawMessage(params)
		r.Received = time.UnixMilli(received).UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

// CountUnsealed returns how many requests are not yet sealed into an
// envelope, counting no further than limit. It is cheaper than Unsealed
// and lets the batcher wait for a full batch without reading it.
func (s *Spool) CountUnsealed(ctx context.Context, limit int) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM
		(SELECT 1 FROM requests WHERE envelope_id IS NULL LIMIT ?)`, limit).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count unsealed requests: %w", err)
	}
	return n, nil
}

// ms converts a time to the spool's unix milliseconds.
func ms(t time.Time) int64 { return t.UnixMilli() }
