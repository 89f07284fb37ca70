package remote

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Reconnect backoff defaults: the wait before a dial after n consecutive
// failures is about DefaultBackoffMin·2^(n-1), at most DefaultBackoffMax,
// with jitter ([Backoff]).
const (
	DefaultBackoffMin = 100 * time.Millisecond
	DefaultBackoffMax = 30 * time.Second
)

// Attribute keys for the Reconnector's log records.
const (
	logAddr  = "addr"
	logDelay = "delay"
)

// ErrDropped is the reason a [Link] is closed with when it is dropped
// after a failure.
var ErrDropped = errors.New("connection dropped after a failure")

// Link is one protocol connection that a [Reconnector] keeps: in
// practice a pointer to the protocol's connection type.
type Link interface {
	comparable
	// Abort closes the connection, recording why; the first reason wins.
	// It is safe from any goroutine and makes every operation in flight
	// fail.
	Abort(reason error)
	// Release aborts the connection and waits for its goroutines. It is
	// never called from those goroutines.
	Release(reason error)
	// Dead reports whether the connection has been closed.
	Dead() bool
	// Reason returns why the connection was closed; it is set before
	// Dead reports true.
	Reason() error
}

// Lifetime is whether a protocol's connection has been closed, and why.
// Embed it (made by [NewLifetime]) in the connection type for the Dead
// and Reason methods of [Link], and close the connection with
// [Lifetime.End].
type Lifetime struct {
	once   sync.Once
	done   chan struct{} // closed once the connection is closed
	reason error         // why it was closed; set before done is closed
}

// NewLifetime returns the Lifetime of a connection that is open.
func NewLifetime() *Lifetime { return &Lifetime{done: make(chan struct{})} }

// End records reason and runs closeFn, which closes the connection; only
// the first call does anything. It is safe from any goroutine.
func (l *Lifetime) End(reason error, closeFn func()) {
	l.once.Do(func() {
		l.reason = reason
		close(l.done)
		closeFn()
	})
}

// Done is closed when the connection has been closed.
func (l *Lifetime) Done() <-chan struct{} { return l.done }

// Dead reports whether the connection has been closed.
func (l *Lifetime) Dead() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// Reason returns why the connection was closed, or nil while it is open.
func (l *Lifetime) Reason() error {
	if !l.Dead() {
		return nil
	}
	return l.reason
}

// ReconnectorConfig configures a [Reconnector].
type ReconnectorConfig[C Link] struct {
	Address   string        // the server, for errors and logs
	Protocol  string        // "sftp", "ftp": names the connection in log messages
	OpTimeout time.Duration // bounds each operation [Reconnector.Run] runs; must be > 0
	// Dial opens a connection within the protocol's dial timeout or until
	// ctx ends.
	Dial func(ctx context.Context) (C, error)
	// Probe, if set, checks a live connection before Get hands it out
	// again; an error drops it without counting a failure, and Get dials.
	Probe func(ctx context.Context, cn C) error
	// IsAnswer reports whether an operation's error is the server's
	// answer (the connection works) rather than a failure of the
	// connection.
	IsAnswer func(err error) bool
	// Closed is the error of every call after Close.
	Closed error
	// ConnectedAttrs are added to the log record of a new connection.
	ConnectedAttrs []any
	Logger         *slog.Logger // nil: slog.Default()
}

// Reconnector dials and keeps the connection of one publisher or
// receiver: it hands out the live connection, dials a new one after a
// failure once the backoff that consecutive failures call for has
// passed, and bounds each operation by OpTimeout. It also holds a
// one-slot turn ([Reconnector.Lock]) that callers use to share one dial,
// or, for a protocol that runs one command at a time, one connection.
type Reconnector[C Link] struct {
	cfg ReconnectorConfig[C]
	log *slog.Logger

	backoffMin, backoffMax time.Duration

	turn chan struct{} // one-slot semaphore: Lock, Unlock, TryLock
	quit chan struct{} // closed by Close, to end a backoff wait

	mu       sync.Mutex
	cur      C
	failures int // consecutive connection failures, for the backoff
	closed   bool
}

// NewReconnector returns a Reconnector that has not dialed yet.
func NewReconnector[C Link](cfg ReconnectorConfig[C]) *Reconnector[C] {
	return &Reconnector[C]{
		cfg:        cfg,
		log:        logger(cfg.Logger),
		backoffMin: DefaultBackoffMin,
		backoffMax: DefaultBackoffMax,
		turn:       make(chan struct{}, 1),
		quit:       make(chan struct{}),
	}
}

// SetBackoff replaces the reconnect backoff bounds; tests shorten them.
// Call it before the first Get.
func (r *Reconnector[C]) SetBackoff(lo, hi time.Duration) {
	r.backoffMin, r.backoffMax = lo, hi
}

// Lock takes the turn, or returns ctx.Err() if ctx ends first.
func (r *Reconnector[C]) Lock(ctx context.Context) error {
	select {
	case r.turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Unlock gives the turn back.
func (r *Reconnector[C]) Unlock() { <-r.turn }

// TryLock takes the turn if it is free.
func (r *Reconnector[C]) TryLock() bool {
	select {
	case r.turn <- struct{}{}:
		return true
	default:
		return false
	}
}

// Get returns the live connection, dialing a new one if there is none,
// after the backoff that the failures so far call for. The caller holds
// the turn, so that concurrent callers never dial twice.
func (r *Reconnector[C]) Get(ctx context.Context) (C, error) {
	var zero C
	r.mu.Lock()
	cn, closed := r.cur, r.closed
	r.mu.Unlock()
	if closed {
		return zero, r.cfg.Closed
	}
	if cn != zero && !cn.Dead() {
		if r.cfg.Probe == nil {
			return cn, nil
		}
		err := r.cfg.Probe(ctx, cn)
		if err == nil {
			return cn, nil
		}
		r.Drop(cn, err, false)
		cn = zero
	}
	if cn != zero {
		r.Drop(cn, cn.Reason(), true)
	}
	r.mu.Lock()
	failures := r.failures
	r.mu.Unlock()
	if d := Backoff(failures, r.backoffMin, r.backoffMax); d > 0 {
		r.log.Debug("waiting before reconnecting", slog.String(logAddr, r.cfg.Address), slog.Duration(logDelay, d))
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return zero, ctx.Err()
		case <-r.quit:
			t.Stop()
			return zero, r.cfg.Closed
		}
	}
	cn, err := r.cfg.Dial(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return zero, ctx.Err()
		}
		r.mu.Lock()
		r.failures++
		r.mu.Unlock()
		return zero, fmt.Errorf("connect to %s: %w", r.cfg.Address, err)
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		cn.Release(r.cfg.Closed)
		return zero, r.cfg.Closed
	}
	r.cur = cn
	r.mu.Unlock()
	r.log.Info("connected to "+r.cfg.Protocol+" server", append([]any{slog.String(logAddr, r.cfg.Address)}, r.cfg.ConnectedAttrs...)...)
	return cn, nil
}

// Run runs op, one operation on cn, within OpTimeout: an overrun closes
// the connection, which fails op. With exclusive (a connection only this
// caller uses), the end of ctx closes the connection too. A success
// resets the backoff; an answer of the server comes back marked with
// [Answer]; any other failure drops the connection and comes back with
// the reason the connection was closed.
func (r *Reconnector[C]) Run(ctx context.Context, cn C, what string, exclusive bool, op func() error) error {
	return r.RunProgress(ctx, cn, what, exclusive, func(func()) error { return op() })
}

// RunProgress is [Reconnector.Run] for an operation that moves a file of
// any size in one command (FTP's STOR): op calls progress whenever it
// has moved a piece, and each call grants it another OpTimeout. So a
// transfer fails when it stalls for OpTimeout, however long it takes as
// a whole.
func (r *Reconnector[C]) RunProgress(ctx context.Context, cn C, what string, exclusive bool, op func(progress func()) error) error {
	timer := time.AfterFunc(r.cfg.OpTimeout, func() {
		cn.Abort(fmt.Errorf("%s: no answer within %v", what, r.cfg.OpTimeout))
	})
	if exclusive {
		stop := context.AfterFunc(ctx, func() { cn.Abort(context.Cause(ctx)) })
		defer stop()
	}
	err := op(func() { timer.Reset(r.cfg.OpTimeout) })
	timer.Stop()
	if err == nil {
		r.mu.Lock()
		r.failures = 0
		r.mu.Unlock()
		return nil
	}
	if !cn.Dead() && r.cfg.IsAnswer(err) {
		return Answer(err)
	}
	// A connection this caller closed because its ctx ended is no failure
	// of the server.
	r.Drop(cn, err, !(exclusive && ctx.Err() != nil))
	if reason := cn.Reason(); reason != nil && !errors.Is(err, reason) {
		return fmt.Errorf("%w (connection closed: %v)", err, reason)
	}
	return err
}

// Drop closes cn and forgets it, if it is the current connection; a
// failure counts towards the backoff and is logged with its cause.
func (r *Reconnector[C]) Drop(cn C, cause error, failure bool) {
	var zero C
	r.mu.Lock()
	mine := r.cur == cn
	if mine {
		r.cur = zero
		if failure {
			r.failures++
		}
	}
	r.mu.Unlock()
	if cause == nil {
		cause = ErrDropped
	}
	if mine && failure {
		r.log.Warn(r.cfg.Protocol+" connection lost", slog.String(logAddr, r.cfg.Address), slog.String(logError, cause.Error()))
	}
	cn.Release(ErrDropped)
}

// Close closes the connection; later calls fail with Closed, and a
// backoff wait ends. If bye is set and the turn is free, bye says
// goodbye to the server on the connection first (it must not wait long).
// A dial in progress finishes and closes what it opened.
func (r *Reconnector[C]) Close(bye func(C)) error {
	var zero C
	r.mu.Lock()
	cn := r.cur
	wasClosed := r.closed
	r.cur, r.closed = zero, true
	r.mu.Unlock()
	if !wasClosed {
		close(r.quit)
	}
	if cn == zero {
		return nil
	}
	// Never wait for an operation that holds the turn.
	if bye != nil && r.TryLock() {
		bye(cn)
		r.Unlock()
	}
	cn.Release(r.cfg.Closed)
	return nil
}
