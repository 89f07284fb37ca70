package dmz

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/ferrybridge/ferry/internal/queue"
)

// Backpressure: the limits of the config's limits section, kept cheaply.
//
// The spool is counted (queue.Spool.Backlog: indexed counts on the
// read-only pool, with the last request row the count saw) when the agent
// starts and then every backlogRefresh by the agent's "backlog" loop.
// Between two counts the gate adds, under one mutex:
//
//   - the requests the API stored since, that is with a row above the
//     count's last row (queue.Accepted.Row), and
//   - its reservations: the submissions it admitted whose Intake.Submit
//     has not returned yet. The handler waits for Submit even if its
//     client goes away (context.WithoutCancel), so a reservation ends
//     only once its request is stored or refused.
//
// That estimate is never below the true backlog; it is above it only by
// the requests stored in the instant between a count's snapshot and the
// return of their Submit. A request is admitted only while the estimate is
// below limits.max_backlog, and then reserves its place, so:
//
//   - the requests accepted and not yet final or held never exceed
//     limits.max_backlog because of the API, however many arrive between
//     two counts. Requests that leave the backlog (results, expiry, an
//     admin's drop) are seen at the next count, at most backlogRefresh
//     later (longer only while counting is slow, see refreshCostFactor);
//     requests an admin puts back are seen then too.
//   - limits.max_unacked is compared with the last count, at most about
//     backlogRefresh old. It stops new requests, not the batcher: the
//     envelopes of requests already accepted are still sealed and sent, so
//     the window may grow past max_unacked by up to one refresh's worth of
//     envelopes plus those of the accepted backlog (at most max_backlog /
//     batch.max_requests), and by heartbeats and queries about held
//     requests.
//
// While a limit is reached, POST /v1/requests answers 503 overloaded with
// Retry-After (a retry with an idempotency key the spool holds still gets
// its stored answer). Reaching a limit also puts the agent in the
// overloaded state, which /readyz reports (503) and the log records: it
// ends only when the backlog and the window are both back at or below
// their low-water marks (lowWater: a tenth under the limit), so that the
// state, the load balancer's view and the log do not flap with every
// result. Admission itself has no such margin: a request is taken as soon
// as there is room.

// backlogRefresh is how often the backpressure loop counts the spool.
const backlogRefresh = 200 * time.Millisecond

// refreshCostFactor keeps the count cheap when the backlog is large: the
// loop waits at least this many times as long as the last count took, so
// counting never takes more than a fifth of one core.
const refreshCostFactor = 4

// Limits an overloaded agent names, in BackpressureStats.Overloaded and in
// its log lines.
const (
	// LimitBacklog: limits.max_backlog requests are accepted and not
	// yet final or held.
	LimitBacklog = "backlog"
	// LimitUnacked: limits.max_unacked request envelopes are waiting
	// for the intranet's acknowledgement.
	LimitUnacked = "unacked"
)

// Log attribute keys of the backpressure log lines.
const (
	logLimit      = "limit"
	logBacklog    = "backlog"
	logUnackedN   = "unacked"
	logMaxBacklog = "max_backlog"
	logMaxUnacked = "max_unacked"
	logRefused    = "refused"
	logDuration   = "overloaded_for"
)

// overloadWhat says, by limit, what an overloaded agent has too many of,
// for its answers: which limit, not its numbers.
var overloadWhat = map[string]string{
	LimitBacklog: "too many requests are waiting for the intranet",
	LimitUnacked: "too many request envelopes are waiting for the intranet's acknowledgement",
}

// BackpressureStats is the state of the agent's backpressure.
type BackpressureStats struct {
	// Overloaded is "" unless the agent is in the overloaded state, and
	// then the limit that put or keeps it there: LimitBacklog or
	// LimitUnacked. The state starts when a limit is reached and ends
	// when both figures are back at their low-water marks; new requests
	// are refused only while a limit is actually reached.
	Overloaded string
	// Backlog is the estimate of the requests accepted and not yet final
	// or held; it is never below the true figure.
	Backlog int
	// Unacked is the request envelopes unacknowledged at the last count.
	Unacked int
	// Refused counts the requests refused with 503 overloaded since the
	// agent started.
	Refused uint64
}

// lowWater is the level a figure must fall back to before the agent
// leaves the overloaded state: a tenth under limit, and at least one
// under.
func lowWater(limit int) int { return limit - max(1, limit/10) }

// gate admits new requests while the spool is under its limits. A nil
// *gate admits every request and counts nothing: the benchmarks measure
// the agent without backpressure that way.
type gate struct {
	maxBacklog, maxUnacked int
	lowBacklog, lowUnacked int
	count                  func(context.Context) (queue.Backlog, error)
	log                    *slog.Logger
	now                    func() time.Time

	mu       sync.Mutex
	counted  queue.Backlog // the last count
	stored   []int64       // rows the API stored above counted.LastRow
	reserved int           // admitted, Submit not returned yet
	over     string        // the overloaded state: "" or the limit reached
	since    time.Time     // when over was set
	refused  uint64        // refused during this overload
	total    uint64        // refused since start
	failing  bool          // the last count failed
}

func newGate(lim LimitsConfig, spool *queue.Spool, log *slog.Logger, now func() time.Time) *gate {
	return &gate{
		maxBacklog: lim.MaxBacklog,
		maxUnacked: lim.MaxUnacked,
		lowBacklog: lowWater(lim.MaxBacklog),
		lowUnacked: lowWater(lim.MaxUnacked),
		count:      spool.Backlog,
		log:        log,
		now:        now,
	}
}

// transition is a change of the overloaded state, logged outside the lock.
type transition struct {
	entered, left          bool
	limit                  string
	backlog                int
	unacked                int
	maxBacklog, maxUnacked int
	refused                uint64
	lasted                 time.Duration
}

// setLimits puts new limits in force (a reload); the next request and
// the next count are judged by them.
func (g *gate) setLimits(lim LimitsConfig) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.maxBacklog, g.maxUnacked = lim.MaxBacklog, lim.MaxUnacked
	g.lowBacklog, g.lowUnacked = lowWater(lim.MaxBacklog), lowWater(lim.MaxUnacked)
}

// backlogLocked returns the estimate of the backlog.
func (g *gate) backlogLocked() int {
	return g.counted.Requests + len(g.stored) + g.reserved
}

// limitLocked returns the limit a backlog estimate reaches, or "".
func (g *gate) limitLocked(backlog int) string {
	switch {
	case backlog >= g.maxBacklog:
		return LimitBacklog
	case g.counted.Unacked >= g.maxUnacked:
		return LimitUnacked
	}
	return ""
}

// updateLocked moves the overloaded state for a backlog estimate and
// returns the change, if any.
func (g *gate) updateLocked(backlog int) transition {
	unacked := g.counted.Unacked
	limit := g.limitLocked(backlog)
	if limit == "" && g.over != "" {
		switch {
		case backlog > g.lowBacklog:
			limit = LimitBacklog
		case unacked > g.lowUnacked:
			limit = LimitUnacked
		}
	}
	tr := transition{limit: limit, backlog: backlog, unacked: unacked, maxBacklog: g.maxBacklog, maxUnacked: g.maxUnacked}
	switch {
	case g.over == "" && limit != "":
		g.since, g.refused = g.now(), 0
		tr.entered = true
	case g.over != "" && limit == "":
		tr.left, tr.limit, tr.refused, tr.lasted = true, g.over, g.refused, g.now().Sub(g.since)
	}
	g.over = limit
	return tr
}

func (g *gate) logTransition(tr transition) {
	switch {
	case tr.entered:
		g.log.Warn("limit reached: refusing new requests", slog.String(logLimit, tr.limit),
			slog.Int(logBacklog, tr.backlog), slog.Int(logMaxBacklog, tr.maxBacklog),
			slog.Int(logUnackedN, tr.unacked), slog.Int(logMaxUnacked, tr.maxUnacked))
	case tr.left:
		g.log.Info("back under the limits: accepting new requests", slog.String(logLimit, tr.limit),
			slog.Int(logBacklog, tr.backlog), slog.Int(logUnackedN, tr.unacked),
			slog.Uint64(logRefused, tr.refused), slog.Duration(logDuration, tr.lasted))
	}
}

// admit decides whether a new request may be stored. It returns "" and
// holds a reservation, which the caller gives back with release once
// Intake.Submit has returned; or it returns the limit that refuses the
// request.
func (g *gate) admit() string {
	if g == nil {
		return ""
	}
	g.mu.Lock()
	backlog := g.backlogLocked()
	limit := g.limitLocked(backlog)
	if limit == "" {
		g.reserved++
	}
	// The request that fills the last place puts the agent in the
	// overloaded state too.
	tr := g.updateLocked(g.backlogLocked())
	g.mu.Unlock()
	g.logTransition(tr)
	return limit
}

// release gives back a reservation admit made, once Intake.Submit has
// returned; acc is its answer, if it stored a request.
func (g *gate) release(acc queue.Accepted, err error) {
	if g == nil {
		return
	}
	g.mu.Lock()
	g.reserved--
	if err == nil && !acc.Existing && acc.Row > g.counted.LastRow {
		g.stored = append(g.stored, acc.Row)
	}
	g.mu.Unlock()
}

// countRefused counts a request refused with 503 overloaded.
func (g *gate) countRefused() {
	g.mu.Lock()
	g.refused++
	g.total++
	g.mu.Unlock()
}

// overloaded returns the limit that keeps the agent in the overloaded
// state, or "".
func (g *gate) overloaded() string {
	if g == nil {
		return ""
	}
	g.mu.Lock()
	tr := g.updateLocked(g.backlogLocked())
	limit := g.over
	g.mu.Unlock()
	g.logTransition(tr)
	return limit
}

// refresh counts the spool and makes that count the gate's base.
func (g *gate) refresh(ctx context.Context) error {
	b, err := g.count(ctx)
	if err != nil {
		return err
	}
	g.mu.Lock()
	if b.LastRow >= g.counted.LastRow {
		// Keep the rows stored after the count's snapshot: it does not
		// hold them. (A count older than the last one is ignored.)
		kept := g.stored[:0]
		for _, row := range g.stored {
			if row > b.LastRow {
				kept = append(kept, row)
			}
		}
		g.stored = kept
		g.counted = b
	}
	tr := g.updateLocked(g.backlogLocked())
	g.mu.Unlock()
	g.logTransition(tr)
	return nil
}

// run refreshes the count every backlogRefresh until ctx ends. A count
// that fails is logged once until one succeeds again; meanwhile the
// estimate only grows with the requests stored, so the limits still hold.
func (g *gate) run(ctx context.Context) error {
	if g == nil {
		return nil
	}
	t := time.NewTimer(backlogRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		start := time.Now()
		err := g.refresh(ctx)
		took := time.Since(start)
		if ctx.Err() != nil {
			return nil
		}
		g.mu.Lock()
		wasFailing := g.failing
		g.failing = err != nil
		g.mu.Unlock()
		switch {
		case err != nil && !wasFailing:
			g.log.Warn("counting the backlog failed; the limits use the last count", slog.String(logError, err.Error()))
		case err == nil && wasFailing:
			g.log.Info("counting the backlog works again")
		}
		t.Reset(max(backlogRefresh, refreshCostFactor*took))
	}
}

// stats returns the gate's state.
func (g *gate) stats() BackpressureStats {
	if g == nil {
		return BackpressureStats{}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return BackpressureStats{Overloaded: g.over, Backlog: g.backlogLocked(), Unacked: g.counted.Unacked, Refused: g.total}
}

// Backpressure returns the state of the agent's backpressure: whether it
// refuses new requests and why, its estimate of the backlog, and how many
// requests it refused.
func (a *Agent) Backpressure() BackpressureStats { return a.gate.stats() }

// retryAfterSeconds is the Retry-After value of a 503 overloaded: the
// config's limits.retry_after in whole seconds, rounded up.
func (a *Agent) retryAfterSeconds() string {
	s := math.Ceil(time.Duration(a.limits.Load().RetryAfter).Seconds())
	return strconv.FormatInt(max(int64(s), 1), 10)
}

// refuseOverloaded answers a new request the gate refused for limit. A
// retry of a request the spool holds (same client and idempotency key)
// gets the stored answer as usual, and adds nothing; anything else gets
// 503 overloaded with Retry-After, and nothing is stored.
func (a *Agent) refuseOverloaded(w http.ResponseWriter, r *http.Request, cl *client, req queue.Request, limit string) {
	if req.IdempotencyKey != "" {
		ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
		acc, err := a.intake.Existing(ctx, req)
		cancel()
		switch {
		case err == nil:
			a.answerAccepted(w, acc)
			return
		case errors.Is(err, queue.ErrIdempotencyConflict):
			writeIdempotencyConflict(w)
			return
		case !errors.Is(err, queue.ErrNotFound):
			if r.Context().Err() == nil {
				a.log.Error("idempotency lookup failed", slog.String(logClient, cl.name), slog.String(logError, err.Error()))
			}
			// Overloaded all the same: the client retries later with
			// the same key.
		}
	}
	a.gate.countRefused()
	w.Header().Set("Retry-After", a.retryAfterSeconds())
	writeError(w, http.StatusServiceUnavailable, ReasonOverloaded, overloadWhat[limit]+"; retry after the time in Retry-After", "")
}
