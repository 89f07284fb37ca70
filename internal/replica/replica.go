// Package replica applies checked requests to the intranet's replica
// database, exactly once, and keeps the ledger that proves it.
//
// # Exactly once
//
// ferry's ledger tables (see sql/0001_ledger.sql) live inside the replica
// file, so that the effect of a request envelope and the record that it was
// applied commit in one SQLite transaction: either both survive a crash or
// neither does. [DB.Apply] looks the envelope id up first, then every request
// id; anything already recorded returns its stored result and has no second
// effect, however often, and under whatever file name, an envelope arrives.
//
// # Two handles
//
// A [DB] opens the file twice through [sqlitedb]: one writer connection (WAL,
// synchronous=FULL, BEGIN IMMEDIATE) that runs the ledger migrations, the
// write statements and the ledger updates, and a read-only pool (mode=ro,
// query_only) on which every read operation runs. A policy statement marked
// "read" therefore cannot change the replica even if it tries. Reads see the
// replica as of the last committed envelope, not the uncommitted writes of
// the envelope being applied.
//
// # The policy at work
//
// Each request is evaluated with the policy ([Checker], normally
// *policy.Policy) with its client, its subject and the agent's clock.
// Then the operation's rate limits are taken (ferry_rates, in the same
// transaction, so they hold across restarts; see ratelimit.go), and the
// statement runs under [sqlguard.Guard] with the access its operation
// declares: a read on a connection of the read-only pool, a write on the
// writer's connection inside the envelope's transaction. A statement the
// guard refuses (say, after a trigger was added that writes elsewhere)
// fails with apply_failed and has no effect. Read results have the
// operation's declared columns masked before they are stored and sent.
// [ProvePolicy] checks every statement against the replica once, when a
// policy is loaded.
//
// # Held writes
//
// A write whose operation requires approval is not run when its envelope
// is applied: it is recorded in ferry_held (sql/0003_held.sql) and
// answered "held" (reason approval_required), in the same transaction.
// [DB.Decide] later runs or denies it on an admin's verified decision, and
// [DB.ExpireHeld] answers the ones nobody decided in time. Their final
// results replace the held ones in ferry_requests and wait in
// [DB.Decided] until a result envelope carries them, without
// acknowledging any request envelope ([Outgoing.Decided]).
//
// # Answers
//
// The ledger also carries the answer's progress: an applied envelope is
// sealed into a result envelope stored in ferry_outbox ([DB.StoreSealed]),
// then published ([DB.MarkPublished]). [DB.Pending] and [DB.Unpublished]
// return the work a crash interrupted, so a restarted agent answers every
// applied envelope.
package replica

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/policy"
	"github.com/ferrybridge/ferry/internal/sqlguard"
	"github.com/ferrybridge/ferry/internal/sqlitedb"
)

// Component is the name of the ledger schema in the ferry_schema table.
const Component = "intranet-ledger"

// DefaultMaxRows bounds a read operation whose policy sets no row limit;
// it is the policy's own default, so a hand-built operation gets the same.
const DefaultMaxRows = policy.DefaultMaxRows

// DefaultMaxReaders is the size of the read-only pool.
const DefaultMaxReaders = 4

// Reason codes and messages of results the replica produces itself.
const (
	ReasonApplyFailed  = "apply_failed"
	ReasonCheckFailed  = "check_failed"
	messageApplyFailed = "the request could not be applied to the replica"
	messageCheckFailed = "the request could not be checked against the policy"
)

//go:embed sql/*.sql
var migrationFiles embed.FS

// Sentinel errors of Apply. Both describe the envelope, not the database:
// the caller quarantines the envelope and goes on.
var (
	// ErrReplay means another envelope already holds this envelope's
	// sender, channel and sequence number.
	ErrReplay = errors.New("replica: sequence number already used by another envelope")
	// ErrInvalid means the envelope's metadata or requests cannot be
	// recorded (malformed id, sequence number out of range, repeated
	// request id).
	ErrInvalid = errors.New("replica: invalid envelope")
)

// State is how far the answer to an applied request envelope has got.
type State string

// Envelope states.
const (
	StateApplied   State = "applied"   // applied; its results are not sealed yet
	StateSealed    State = "sealed"    // its results are in a sealed result envelope
	StatePublished State = "published" // that result envelope is on the medium
)

// Envelope is the metadata of a request envelope that the ledger records.
type Envelope struct {
	ID         string
	From       string
	Channel    string
	Seq        uint64
	Prev       [32]byte
	HeaderHash [32]byte
	File       string // the inbox file it was read from
	// Replaces is the sequence number of the envelope of the same sender
	// and channel that this one re-sends (batch.Requests.Replaces), or 0.
	Replaces uint64
}

// Checker evaluates a request against the policy; *policy.Policy is one.
// A refusal is a *policy.RejectError.
type Checker interface {
	Evaluate(r policy.Request) (*policy.Checked, error)
}

var _ Checker = (*policy.Policy)(nil)

// Applied is what Apply did with an envelope.
type Applied struct {
	// Results holds one result per request, in request order.
	Results []batch.Result
	// Duplicate reports that the envelope had been applied before; Results
	// are then the stored ones and nothing took effect.
	Duplicate bool
	// State and File are the envelope's ledger state and recorded inbox
	// file: for a new envelope StateApplied and the given file, for a
	// duplicate what the ledger held.
	State State
	File  string
	// Limited lists the requests of this envelope that a rate limit
	// refused, for the agent's log and metrics. It names the client and
	// the operation, never the subject.
	Limited []Limited
	// GapsOpened counts the ranges of sequence numbers this envelope
	// showed missing.
	GapsOpened int
}

// Limited is one request refused by a rate limit.
type Limited struct {
	Operation string
	Client    string
	Scope     string // ScopeSubject or ScopeClient
}

// Pending is an applied envelope whose results are not yet sealed.
type Pending struct {
	ID      string
	File    string
	Results []batch.Result
}

// Outgoing is a sealed result envelope.
type Outgoing struct {
	ID         string
	Channel    string
	Seq        uint64
	HeaderHash [32]byte
	Name       string   // file name on the medium
	Data       []byte   // the whole envelope file
	Covers     []string // ids of the request envelopes it answers
	Files      []string // their inbox files; set by Unpublished only
	// Decided lists the held requests whose final results it carries
	// (see DB.Decided); StoreSealed marks them sent.
	Decided []string
}

// DB is a replica database with ferry's ledger inside it.
type DB struct {
	path string
	w    *sql.DB // the single writer connection
	ro   *sql.DB // read-only pool for read operations
	now  func() time.Time

	applies int    // Apply calls since the rate table was last purged
	maxJump uint64 // see SetMaxSeqJump
	// audit, when set by EnableAudit, stages an audit entry with each
	// decision.
	audit *audit.Stager
}

// Open opens the replica database at path, which must already exist, and
// applies the ledger migrations.
func Open(ctx context.Context, path string) (*DB, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("open replica %s: file does not exist (create it with the replica's schema first)", path)
		}
		return nil, fmt.Errorf("open replica: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("open replica %s: not a regular file", path)
	}
	migs, err := fs.Sub(migrationFiles, "sql")
	if err != nil {
		return nil, fmt.Errorf("open replica: %w", err)
	}
	w, err := sqlitedb.Open(ctx, path, sqlitedb.Options{Component: Component, Migrations: migs})
	if err != nil {
		return nil, fmt.Errorf("open replica: %w", err)
	}
	ro, err := sqlitedb.Open(ctx, path, sqlitedb.Options{ReadOnly: true, MaxReaders: DefaultMaxReaders})
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open replica read-only: %w", err)
	}
	return &DB{path: path, w: w, ro: ro, now: time.Now, maxJump: DefaultMaxSeqJump}, nil
}

// Path returns the database file's path.
func (db *DB) Path() string { return db.path }

// Ping checks that the replica answers a read.
func (db *DB) Ping(ctx context.Context) error {
	var one int
	return db.ro.QueryRowContext(ctx, `SELECT 1`).Scan(&one)
}

// Close closes both handles.
func (db *DB) Close() error {
	return errors.Join(db.ro.Close(), db.w.Close())
}

// Apply applies the requests of one envelope in one write transaction and
// records the envelope and every result in the same transaction.
//
// An envelope id already in the ledger returns the stored results with
// Duplicate set and changes nothing. A request id already in the ledger
// (from another envelope) returns its stored result and takes no second
// effect. Every other request is checked with pol: a refusal becomes a
// "rejected" result carrying the *policy.RejectError's reason; a read runs
// on the read-only pool; a write runs inside the transaction under a
// savepoint, so a write that fails with an SQL error is undone alone and
// becomes a "failed" result with reason apply_failed and a generic message.
//
// Apply returns ErrReplay or ErrInvalid (wrapped) for an envelope that must
// be quarantined; any other error is the database's, and nothing was
// recorded.
func (db *DB) Apply(ctx context.Context, env Envelope, reqs []batch.Request, pol Checker) (*Applied, error) {
	if err := validEnvelope(env, reqs); err != nil {
		return nil, err
	}
	conn, tx, err := db.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("apply envelope %s: %w", env.ID, err)
	}
	defer conn.Close()
	defer tx.Rollback()

	var (
		state State
		file  string
		ids   string
	)
	err = tx.QueryRowContext(ctx, `SELECT state, file, requests FROM ferry_envelopes WHERE id = ?`, env.ID).Scan(&state, &file, &ids)
	switch {
	case err == nil:
		results, err := storedResults(ctx, tx, ids)
		if err != nil {
			return nil, fmt.Errorf("apply envelope %s: %w", env.ID, err)
		}
		return &Applied{Results: results, Duplicate: true, State: state, File: file}, nil
	case !errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("apply envelope %s: look up: %w", env.ID, err)
	}
	var other string
	err = tx.QueryRowContext(ctx, `SELECT id FROM ferry_envelopes WHERE sender = ? AND channel = ? AND seq = ?`,
		env.From, env.Channel, int64(env.Seq)).Scan(&other)
	switch {
	case err == nil:
		return nil, fmt.Errorf("apply envelope %s: %w: seq %d of channel %q belongs to envelope %s", env.ID, ErrReplay, env.Seq, env.Channel, other)
	case !errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("apply envelope %s: look up seq: %w", env.ID, err)
	}
	if err := withdrawn(ctx, tx, env); err != nil {
		return nil, err
	}
	if err := db.checkOrder(ctx, tx, env); err != nil {
		return nil, err
	}

	reqIDs := make([]string, len(reqs))
	for i, r := range reqs {
		reqIDs[i] = r.ID
	}
	idsJSON, err := json.Marshal(reqIDs)
	if err != nil {
		return nil, fmt.Errorf("apply envelope %s: %w", env.ID, err)
	}
	clock := db.now()
	now := clock.UnixMilli()
	if _, err := tx.ExecContext(ctx, `INSERT INTO ferry_envelopes
		(id, sender, channel, seq, prev, header_hash, file, requests, state, applied_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'applied', ?)`,
		env.ID, env.From, env.Channel, int64(env.Seq), env.Prev[:], env.HeaderHash[:], env.File, string(idsJSON), now); err != nil {
		return nil, fmt.Errorf("apply envelope %s: record envelope: %w", env.ID, err)
	}
	gaps, err := db.recordInbound(ctx, tx, env, clock)
	if err != nil {
		return nil, fmt.Errorf("apply envelope %s: %w", env.ID, err)
	}
	filled, err := withdraw(ctx, tx, env, clock)
	if err != nil {
		return nil, fmt.Errorf("apply envelope %s: %w", env.ID, err)
	}
	gaps = append(gaps, filled...)

	lookup, err := tx.PrepareContext(ctx, `SELECT result FROM ferry_requests WHERE id = ?`)
	if err != nil {
		return nil, fmt.Errorf("apply envelope %s: %w", env.ID, err)
	}
	defer lookup.Close()
	record, err := tx.PrepareContext(ctx, `INSERT INTO ferry_requests
		(id, envelope_id, operation, status, reason, message, result, applied_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return nil, fmt.Errorf("apply envelope %s: %w", env.ID, err)
	}
	defer record.Close()

	results := make([]batch.Result, len(reqs))
	var limited []Limited
	var trail []audit.Entry // staged with the envelope, if auditing is on
	for i, r := range reqs {
		var stored []byte
		err := lookup.QueryRowContext(ctx, r.ID).Scan(&stored)
		if err == nil {
			if err := json.Unmarshal(stored, &results[i]); err != nil {
				return nil, fmt.Errorf("apply envelope %s: stored result of request %s: %w", env.ID, r.ID, err)
			}
			continue
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("apply envelope %s: look up request %s: %w", env.ID, r.ID, err)
		}
		res, lim, err := db.applyOne(ctx, conn, tx, env.ID, r, pol, clock)
		if err != nil {
			return nil, fmt.Errorf("apply envelope %s: request %s: %w", env.ID, r.ID, err)
		}
		if lim != nil {
			limited = append(limited, *lim)
		}
		data, err := json.Marshal(res)
		if err != nil {
			// Rows JSON cannot carry (a REAL column holding an infinity,
			// say): a failed request, not a stuck envelope. A write has
			// no rows, so this never undoes an effect.
			res = batch.Result{RequestID: r.ID, Status: batch.StatusFailed, Reason: ReasonApplyFailed,
				Message: "the result could not be encoded"}
			if data, err = json.Marshal(res); err != nil {
				return nil, fmt.Errorf("apply envelope %s: request %s: encode result: %w", env.ID, r.ID, err)
			}
		}
		if res.Rows != nil {
			// Return what a later duplicate will read back, so that every
			// answer to this request is identical (numbers become float64).
			res = batch.Result{}
			if err := json.Unmarshal(data, &res); err != nil {
				return nil, fmt.Errorf("apply envelope %s: request %s: decode result: %w", env.ID, r.ID, err)
			}
		}
		results[i] = res
		if _, err := record.ExecContext(ctx, r.ID, env.ID, r.Operation, res.Status, res.Reason, res.Message, data, now); err != nil {
			return nil, fmt.Errorf("apply envelope %s: record request %s: %w", env.ID, r.ID, err)
		}
		trail = append(trail, audit.Entry{Time: clock, Event: audit.EventPolicyDecision, Actor: r.Client, Request: r.ID,
			Envelope: env.ID, Operation: r.Operation, Decision: res.Status, Reason: res.Reason,
			Rows: max(res.RowsAffected, int64(len(res.Rows))), Subject: db.audit.Subject(r.Subject), Params: db.audit.Params(r.Params)})
	}
	// The envelope's audit entries, its channel's gaps last, in one statement.
	trail = append(trail, audit.Entry{Time: clock, Event: audit.EventEnvelopeOpened, Envelope: env.ID, Channel: env.Channel,
		Seq: env.Seq, Count: int64(len(reqs))})
	if err := db.audit.Stage(ctx, tx, append(trail, gaps...)...); err != nil {
		return nil, fmt.Errorf("apply envelope %s: %w", env.ID, err)
	}
	if db.applies++; db.applies >= purgeEvery {
		db.applies = 0
		if err := purgeRates(ctx, tx, clock); err != nil {
			return nil, fmt.Errorf("apply envelope %s: %w", env.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("apply envelope %s: commit: %w", env.ID, err)
	}
	return &Applied{Results: results, State: StateApplied, File: env.File, Limited: limited,
		GapsOpened: audit.CountGaps(gaps, audit.GapOpened)}, nil
}

// begin starts a write transaction on the writer's one connection, which
// it holds so that a write statement's guard is installed on the
// connection the transaction runs on. The caller rolls tx back (a no-op
// after Commit) and then closes conn.
func (db *DB) begin(ctx context.Context) (*sql.Conn, *sql.Tx, error) {
	conn, err := db.w.Conn(ctx)
	if err != nil {
		return nil, nil, err
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("begin: %w", err)
	}
	return conn, tx, nil
}

func validEnvelope(env Envelope, reqs []batch.Request) error {
	switch {
	case !batch.ValidID(env.ID):
		return fmt.Errorf("%w: malformed envelope id", ErrInvalid)
	case env.Seq == 0 || env.Seq >= math.MaxInt64:
		return fmt.Errorf("apply envelope %s: %w: sequence number out of range (channels start at 1)", env.ID, ErrInvalid)
	case env.Replaces >= env.Seq:
		return fmt.Errorf("apply envelope %s: %w: it replaces seq %d, not below its own %d", env.ID, ErrInvalid, env.Replaces, env.Seq)
	}
	seen := make(map[string]bool, len(reqs))
	for i, r := range reqs {
		if !batch.ValidID(r.ID) || seen[r.ID] {
			return fmt.Errorf("apply envelope %s: %w: request %d: malformed or repeated id", env.ID, ErrInvalid, i)
		}
		seen[r.ID] = true
	}
	return nil
}

// applyOne checks and runs one request that the ledger has not seen. It
// returns an error only when the whole envelope must be abandoned: the
// context ended or the database failed. A request a rate limit refused
// also returns what to report about it.
func (db *DB) applyOne(ctx context.Context, conn *sql.Conn, tx *sql.Tx, envID string, r batch.Request, pol Checker, now time.Time) (batch.Result, *Limited, error) {
	res := batch.Result{RequestID: r.ID}
	checked, err := pol.Evaluate(policy.Request{Client: r.Client, Subject: r.Subject, Operation: r.Operation, Params: r.Params, Now: now})
	if err != nil {
		var rej *policy.RejectError
		if errors.As(err, &rej) {
			res.Status, res.Reason, res.Message = batch.StatusRejected, rej.Reason, rej.Message
			return res, nil, nil
		}
		res.Status, res.Reason, res.Message = batch.StatusFailed, ReasonCheckFailed, messageCheckFailed
		return res, nil, nil
	}
	if checked == nil || checked.Op == nil {
		res.Status, res.Reason, res.Message = batch.StatusFailed, ReasonCheckFailed, messageCheckFailed
		return res, nil, nil
	}
	op := checked.Op
	scope, rate, retry, err := limit(ctx, tx, op, r.Client, checked.Subject, now)
	if err != nil {
		return res, nil, err
	}
	if scope != "" {
		res.Status, res.Reason = batch.StatusRejected, policy.ReasonRateLimited
		res.RetryAfter = retrySeconds(retry)
		res.Message = fmt.Sprintf("operation %s is limited to %s requests per %s; retry in %ds", op.Name, rate, scope, res.RetryAfter)
		return res, &Limited{Operation: op.Name, Client: r.Client, Scope: scope}, nil
	}
	if op.Mode == policy.ModeWrite && op.Approval != nil {
		res, err := hold(ctx, tx, envID, r, op, now)
		return res, nil, err
	}
	switch op.Mode {
	case policy.ModeRead:
		rows, err := db.read(ctx, checked)
		if err != nil {
			if fatal(ctx, err) {
				return res, nil, err
			}
			res.Status, res.Reason, res.Message = batch.StatusFailed, ReasonApplyFailed, messageApplyFailed
			return res, nil, nil
		}
		res.Status, res.Rows = batch.StatusDone, rows
	case policy.ModeWrite:
		n, err := write(ctx, conn, tx, checked)
		if err != nil {
			if fatal(ctx, err) {
				return res, nil, err
			}
			res.Status, res.Reason, res.Message = batch.StatusFailed, ReasonApplyFailed, messageApplyFailed
			return res, nil, nil
		}
		res.Status, res.RowsAffected = batch.StatusDone, n
	default:
		res.Status, res.Reason, res.Message = batch.StatusFailed, ReasonCheckFailed, messageCheckFailed
	}
	return res, nil, nil
}

// read runs a read operation on a connection of the read-only pool, never
// on the writer, under the guard of the operation's declared access, and
// masks the declared columns of every row.
func (db *DB) read(ctx context.Context, c *policy.Checked) ([]map[string]any, error) {
	max := c.Op.MaxRows
	if max <= 0 {
		max = DefaultMaxRows
	}
	conn, err := db.ro.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var out []map[string]any
	err = sqlguard.Guard(ctx, conn, sqlguard.Read, Access(c.Op), func() error {
		rows, err := conn.QueryContext(ctx, c.Op.Statement, c.Args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		cols, err := rows.Columns()
		if err != nil {
			return err
		}
		out = []map[string]any{}
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for len(out) < max && rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				return err
			}
			m := make(map[string]any, len(cols))
			for i, c := range cols {
				if b, ok := vals[i].([]byte); ok {
					m[c] = string(b)
				} else {
					m[c] = vals[i]
				}
			}
			if len(c.Op.Mask) > 0 {
				c.Op.MaskRow(m)
			}
			out = append(out, m)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		return rows.Close()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// write runs a write operation inside tx under a savepoint, so that its
// failure undoes its own effect and nothing else, and under the guard of
// its declared access on the writer's connection.
func write(ctx context.Context, conn *sql.Conn, tx *sql.Tx, c *policy.Checked) (int64, error) {
	if _, err := tx.ExecContext(ctx, `SAVEPOINT ferry_request`); err != nil {
		return 0, err
	}
	var n int64
	err := sqlguard.Guard(ctx, conn, sqlguard.Write, Access(c.Op), func() error {
		res, err := tx.ExecContext(ctx, c.Op.Statement, c.Args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		if _, rerr := tx.ExecContext(ctx, `ROLLBACK TO ferry_request`); rerr != nil {
			return 0, errors.Join(err, fmt.Errorf("roll back request: %w", rerr))
		}
	}
	if _, rerr := tx.ExecContext(ctx, `RELEASE ferry_request`); rerr != nil {
		return 0, errors.Join(err, fmt.Errorf("release savepoint: %w", rerr))
	}
	return n, err
}

// fatal reports whether err from running a statement means the envelope
// must be abandoned (context ended, disk or database failure) rather than
// recorded as a failed request.
func fatal(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sqlite3.ErrIoErr, sqlite3.ErrFull, sqlite3.ErrBusy, sqlite3.ErrLocked, sqlite3.ErrNomem,
			sqlite3.ErrCorrupt, sqlite3.ErrCantOpen, sqlite3.ErrInterrupt, sqlite3.ErrProtocol, sqlite3.ErrNotADB:
			return true
		}
	}
	return false
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// storedResults loads the results of the request ids in idsJSON.
func storedResults(ctx context.Context, q queryer, idsJSON string) ([]batch.Result, error) {
	var ids []string
	if err := json.Unmarshal([]byte(idsJSON), &ids); err != nil {
		return nil, fmt.Errorf("stored request ids: %w", err)
	}
	results := make([]batch.Result, len(ids))
	for i, id := range ids {
		var data []byte
		if err := q.QueryRowContext(ctx, `SELECT result FROM ferry_requests WHERE id = ?`, id).Scan(&data); err != nil {
			return nil, fmt.Errorf("stored result of request %s: %w", id, err)
		}
		if err := json.Unmarshal(data, &results[i]); err != nil {
			return nil, fmt.Errorf("stored result of request %s: %w", id, err)
		}
	}
	return results, nil
}
