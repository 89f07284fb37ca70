package queue

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/batch"
)

// Defaults for an IntakeConfig.
const (
	// DefaultCommitMax bounds the requests inserted by one transaction.
	DefaultCommitMax = 256
	// DefaultCommitDelay is how long the committer lingers after the first
	// waiting request for others to join its transaction. Zero: commit at
	// once; requests arriving during a commit form the next group, which
	// already batches under load without adding latency when idle.
	DefaultCommitDelay = 0
	// DefaultFlushTimeout bounds the final commit when the intake stops.
	DefaultFlushTimeout = 30 * time.Second
)

// IntakeConfig tunes group commit.
type IntakeConfig struct {
	MaxBatch int           // 0 means DefaultCommitMax
	Delay    time.Duration // 0 means DefaultCommitDelay
	Now      func() time.Time
}

// Accepted is the answer to Submit.
type Accepted struct {
	ID       string
	Status   string // "queued" for a new request; the stored status for a repeat
	Existing bool   // the idempotency key named a request already stored
	// Row is a new request's row number in the spool: rows are numbered
	// in the order they are stored, never reused, and [Backlog.LastRow]
	// says up to which row a count of the backlog saw. 0 for a repeat.
	Row int64
}

// IntakeStats counts the intake's work since it was created.
type IntakeStats struct {
	Commits  uint64 // transactions committed
	Inserted uint64 // requests inserted
}

// Intake group-commits accepted requests into a Spool.
type Intake struct {
	spool *Spool
	max   int
	delay time.Duration
	now   func() time.Time

	mu      sync.Mutex
	pending []*submission
	closed  bool

	wake      chan struct{} // a submission is pending
	full      chan struct{} // pending reached max
	committed chan struct{} // new requests were committed

	commits  atomic.Uint64
	inserted atomic.Uint64
}

type submission struct {
	req   Request
	hash  []byte
	reply chan submitResult // buffered, 1
}

type submitResult struct {
	acc Accepted
	err error
}

// NewIntake returns an intake writing into s. Run must be running for
// Submit to complete.
func NewIntake(s *Spool, cfg IntakeConfig) *Intake {
	in := &Intake{
		spool:     s,
		max:       cfg.MaxBatch,
		delay:     cfg.Delay,
		now:       cfg.Now,
		wake:      make(chan struct{}, 1),
		full:      make(chan struct{}, 1),
		committed: make(chan struct{}, 1),
	}
	if in.max <= 0 {
		in.max = DefaultCommitMax
	}
	if in.delay <= 0 {
		in.delay = DefaultCommitDelay
	}
	if in.now == nil {
		in.now = time.Now
	}
	return in
}

// Committed returns a channel that receives a value after a transaction
// that inserted new requests commits. Values are coalesced: one receive may
// stand for several commits.
func (in *Intake) Committed() <-chan struct{} { return in.committed }

// Stats returns the intake's counters.
func (in *Intake) Stats() IntakeStats {
	return IntakeStats{Commits: in.commits.Load(), Inserted: in.inserted.Load()}
}

// BodyHash is the hash an idempotency key is checked against: SHA-256 over
// the operation, a zero byte and the parameters' JSON, followed, only when
// subject is not empty, by a zero byte and the subject. Without a subject
// it is the hash the spool stored before subjects existed, so keys of
// requests stored by earlier versions still match their retries. Neither
// JSON nor a valid subject contains a zero byte, so the two forms cannot
// collide.
func BodyHash(operation string, params []byte, subject string) []byte {
	h := sha256.New()
	h.Write([]byte(operation))
	h.Write([]byte{0})
	h.Write(params)
	if subject != "" {
		h.Write([]byte{0})
		h.Write([]byte(subject))
	}
	return h.Sum(nil)
}

// Submit queues r for the next group commit and waits until the
// transaction holding it has committed. It returns the request's id, or
// ErrBadSubject (at once, storing nothing), or ErrIdempotencyConflict, or
// ErrClosed once Run has stopped. If ctx ends
// first Submit returns ctx.Err(), and the request may or may not have been
// stored (a client retries with the same idempotency key to find out).
func (in *Intake) Submit(ctx context.Context, r Request) (Accepted, error) {
	if r.Subject != "" && !batch.ValidSubject(r.Subject) {
		return Accepted{}, ErrBadSubject
	}
	if r.ID == "" {
		id, err := batch.NewID(rand.Reader)
		if err != nil {
			return Accepted{}, fmt.Errorf("submit: new id: %w", err)
		}
		r.ID = id
	}
	if r.Received.IsZero() {
		r.Received = in.now()
	}
	if len(r.Params) == 0 {
		r.Params = []byte("{}")
	}
	sub := &submission{req: r, hash: BodyHash(r.Operation, r.Params, r.Subject), reply: make(chan submitResult, 1)}
	in.mu.Lock()
	if in.closed {
		in.mu.Unlock()
		return Accepted{}, ErrClosed
	}
	in.pending = append(in.pending, sub)
	n := len(in.pending)
	in.mu.Unlock()
	signal(in.wake)
	if n >= in.max {
		signal(in.full)
	}
	select {
	case res := <-sub.reply:
		return res.acc, res.err
	case <-ctx.Done():
		return Accepted{}, ctx.Err()
	}
}

// Existing returns the stored request that r repeats, without queueing
// anything: the client's request under r's idempotency key, with its
// current status, if its operation, params and subject are r's (see
// [BodyHash]). It returns ErrIdempotencyConflict if they differ, and
// ErrNotFound if r has no idempotency key or the spool holds no request
// of r's client under it. It reads from the spool's read-only pool, so it
// sees committed requests only: one still waiting in the intake is not
// found. The DMZ agent uses it to answer retries while it refuses new
// requests.
func (in *Intake) Existing(ctx context.Context, r Request) (Accepted, error) {
	if r.IdempotencyKey == "" {
		return Accepted{}, ErrNotFound
	}
	params := r.Params
	if len(params) == 0 {
		params = []byte("{}")
	}
	var (
		id, status string
		hash       []byte
	)
	err := in.spool.r.QueryRowContext(ctx, `SELECT id, body_hash, status FROM requests WHERE client = ? AND idem_key = ?`,
		r.Client, r.IdempotencyKey).Scan(&id, &hash, &status)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Accepted{}, ErrNotFound
	case err != nil:
		return Accepted{}, fmt.Errorf("idempotency lookup: %w", err)
	case !bytes.Equal(hash, BodyHash(r.Operation, params, r.Subject)):
		return Accepted{}, ErrIdempotencyConflict
	}
	return Accepted{ID: id, Status: status, Existing: true}, nil
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// take removes and returns up to in.max pending submissions.
func (in *Intake) take() []*submission {
	in.mu.Lock()
	defer in.mu.Unlock()
	n := min(len(in.pending), in.max)
	if n == 0 {
		return nil
	}
	group := in.pending[:n:n]
	in.pending = in.pending[n:]
	if len(in.pending) == 0 {
		in.pending = nil // let the old backing array go
	}
	return group
}

// Run commits waiting submissions until ctx ends. Then it refuses new
// submissions, commits the ones already waiting (within
// DefaultFlushTimeout, even though ctx has ended) and returns nil.
// A failed transaction fails only the submissions it held.
func (in *Intake) Run(ctx context.Context) error {
	// Commits are not cancelled with ctx: a request that is waiting was
	// accepted over HTTP and must be committed or refused, not abandoned.
	wctx := context.WithoutCancel(ctx)
	for {
		select {
		case <-in.wake:
		case <-ctx.Done():
			in.mu.Lock()
			in.closed = true
			in.mu.Unlock()
			fctx, cancel := context.WithTimeout(wctx, DefaultFlushTimeout)
			defer cancel()
			for group := in.take(); group != nil; group = in.take() {
				in.commit(fctx, group)
			}
			return nil
		}
		if in.delay > 0 {
			t := time.NewTimer(in.delay)
			select {
			case <-t.C:
			case <-in.full:
			case <-ctx.Done():
			}
			t.Stop()
		}
		for group := in.take(); group != nil; group = in.take() {
			in.commit(wctx, group)
		}
	}
}

// commit inserts group in one transaction and answers every submission.
func (in *Intake) commit(ctx context.Context, group []*submission) {
	results, inserted, err := in.insert(ctx, group)
	for i, sub := range group {
		if err != nil {
			sub.reply <- submitResult{err: err}
			continue
		}
		sub.reply <- results[i]
	}
	if err == nil {
		in.commits.Add(1)
		if inserted > 0 {
			in.inserted.Add(uint64(inserted))
			signal(in.committed)
		}
	}
}

func (in *Intake) insert(ctx context.Context, group []*submission) ([]submitResult, int, error) {
	tx, err := in.spool.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("intake: begin: %w", err)
	}
	defer tx.Rollback()
	ins, err := tx.PrepareContext(ctx, `INSERT INTO requests
		(id, client, idem_key, body_hash, operation, params, subject, received, status, updated)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?)`)
	if err != nil {
		return nil, 0, fmt.Errorf("intake: prepare: %w", err)
	}
	defer ins.Close()
	var lookup *sql.Stmt
	results := make([]submitResult, len(group))
	inserted := 0
	var trail []audit.Entry // staged with the group, if auditing is on
	now := ms(in.now())
	for i, sub := range group {
		r := sub.req
		var key any
		if r.IdempotencyKey != "" {
			key = r.IdempotencyKey
			if lookup == nil {
				lookup, err = tx.PrepareContext(ctx, `SELECT id, body_hash, status FROM requests WHERE client = ? AND idem_key = ?`)
				if err != nil {
					return nil, 0, fmt.Errorf("intake: prepare: %w", err)
				}
				defer lookup.Close()
			}
			var id, status string
			var hash []byte
			err := lookup.QueryRowContext(ctx, r.Client, r.IdempotencyKey).Scan(&id, &hash, &status)
			switch {
			case err == nil && bytes.Equal(hash, sub.hash):
				results[i] = submitResult{acc: Accepted{ID: id, Status: status, Existing: true}}
				continue
			case err == nil:
				results[i] = submitResult{err: ErrIdempotencyConflict}
				continue
			case !errors.Is(err, sql.ErrNoRows):
				return nil, 0, fmt.Errorf("intake: idempotency lookup: %w", err)
			}
		}
		res, err := ins.ExecContext(ctx, r.ID, r.Client, key, sub.hash, r.Operation, []byte(r.Params), r.Subject, ms(r.Received), now)
		if err != nil {
			return nil, 0, fmt.Errorf("intake: insert request: %w", err)
		}
		row, err := res.LastInsertId()
		if err != nil {
			return nil, 0, fmt.Errorf("intake: insert request: %w", err)
		}
		results[i] = submitResult{acc: Accepted{ID: r.ID, Status: batch.StatusQueued, Row: row}}
		inserted++
		trail = append(trail, audit.Entry{Time: r.Received, Event: audit.EventRequestAccepted, Actor: r.Client,
			Request: r.ID, Operation: r.Operation, Subject: in.spool.audit.Subject(r.Subject), Params: in.spool.audit.Params(r.Params)})
	}
	// The group's audit entries, in one statement.
	if err := in.spool.audit.Stage(ctx, tx, trail...); err != nil {
		return nil, 0, fmt.Errorf("intake: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, 0, fmt.Errorf("intake: commit: %w", err)
	}
	return results, inserted, nil
}
