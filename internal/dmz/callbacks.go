package dmz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/ferrybridge/ferry/internal/callback"
	"github.com/ferrybridge/ferry/internal/queue"
)

// Result callbacks. A client with a callback block in the config is POSTed
// the status of each of its requests when it becomes held and when it
// becomes final: the same JSON as GET /v1/requests/{id}, signed the
// Standard Webhooks way with the client's secret, with webhook-id and
// Idempotency-Key "<request id>-<status>" (package callback). The spool is
// the outbox (queue.Spool.CallbacksDue): a callback survives a restart,
// and one the receiver does not take is tried again with a growing wait,
// up to callbackGiveUp after the state it reports; then, or at once when
// the receiver refuses it for good (a 4xx, a redirect, an address the
// config does not allow), it is abandoned and logged. The client can
// always read the result with GET.
const (
	// callbackBatch is how many due callbacks one round takes.
	callbackBatch = 256
	// callbackWorkers is how many deliveries are under way at once.
	callbackWorkers = 16
	// callbackPoll is how often the outbox is read when nothing wakes
	// the loop.
	callbackPoll = time.Second
	// callbackRetryMin and callbackRetryMax bound the wait before a
	// failed callback is tried again; it doubles with each failure.
	callbackRetryMin = 10 * time.Second
	callbackRetryMax = 10 * time.Minute
	// callbackGiveUp is how long after the state it reports a callback
	// is tried.
	callbackGiveUp = 24 * time.Hour
)

// callbackSenders are the senders of the clients with a callback, by
// client name.
type callbackSenders map[string]*callback.Sender

// newCallbackSenders makes the senders of the clients cfgs configure.
func newCallbackSenders(cfgs []ClientConfig, logger *slog.Logger) (callbackSenders, error) {
	out := callbackSenders{}
	for _, c := range cfgs {
		if c.Callback == nil {
			continue
		}
		s, err := callback.New(*c.Callback, logger)
		if err != nil {
			return nil, fmt.Errorf("client %s: callback: %w", c.Name, err)
		}
		out[c.Name] = s
	}
	return out, nil
}

// close lets the senders' idle connections go: a reload replaced them.
func (s *callbackSenders) close() {
	if s == nil {
		return
	}
	for _, x := range *s {
		x.CloseIdleConnections()
	}
}

// names returns the clients that have a callback.
func (s callbackSenders) names() []string {
	out := make([]string, 0, len(s))
	for n := range s {
		out = append(out, n)
	}
	return out
}

// wakeCallbacks tells the callback loop that callbacks may be due.
func (a *Agent) wakeCallbacks() {
	select {
	case a.callbackWake <- struct{}{}:
	default:
	}
}

// callbackLoop delivers due callbacks until ctx ends.
func (a *Agent) callbackLoop(ctx context.Context) error {
	tick := time.NewTicker(callbackPoll)
	defer tick.Stop()
	for {
		n, err := a.deliverCallbacks(ctx)
		if err != nil && ctx.Err() == nil {
			a.log.Error("delivering callbacks failed; retrying", slog.String(logError, err.Error()))
		}
		if n == callbackBatch && err == nil {
			continue // more are due
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-a.callbackWake:
		}
	}
}

// deliverCallbacks delivers one batch of due callbacks and records the
// outcomes; it returns how many were due.
func (a *Agent) deliverCallbacks(ctx context.Context) (int, error) {
	now := a.now()
	due, err := a.spool.CallbacksDue(ctx, now, callbackBatch)
	if err != nil || len(due) == 0 {
		return 0, err
	}
	senders := *a.callbacks.Load()
	outcomes := make([]queue.CallbackOutcome, len(due))
	sem := make(chan struct{}, callbackWorkers)
	var wg sync.WaitGroup
	for i, d := range due {
		outcomes[i] = queue.CallbackOutcome{ID: d.ID, Status: d.Status}
		s := senders[d.Client]
		if s == nil {
			// The client's callback was removed: nothing to deliver.
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			outcomes[i].Retry = a.deliverCallback(ctx, s, d, now)
		}()
	}
	wg.Wait()
	// Recorded even if ctx ended meanwhile: what was delivered stays
	// delivered.
	if err := a.spool.SettleCallbacks(context.WithoutCancel(ctx), outcomes); err != nil {
		return len(due), err
	}
	return len(due), nil
}

// deliverCallback delivers d with s and returns when to try again, or
// the zero time when the callback is settled (delivered or abandoned).
func (a *Agent) deliverCallback(ctx context.Context, s *callback.Sender, d queue.DueCallback, now time.Time) time.Time {
	st, err := a.spool.Get(ctx, d.ID)
	if err != nil {
		if errors.Is(err, queue.ErrNotFound) {
			return time.Time{}
		}
		return now.Add(a.callbackRetry)
	}
	if st.Status != d.Status {
		// Moved on since it was listed: its newer state is due too, and
		// SettleCallbacks leaves it so.
		return time.Time{}
	}
	body, err := json.Marshal(a.statusOf(st))
	if err != nil {
		return time.Time{}
	}
	err = s.Deliver(ctx, callback.Delivery{ID: d.ID + "-" + d.Status, Body: body})
	if ctx.Err() == nil {
		a.callbackMetrics.Count(err)
	}
	switch {
	case err == nil:
		return time.Time{}
	case ctx.Err() != nil:
		// Stopping: tried again at the next start.
		return now
	case errors.Is(err, callback.ErrPermanent):
		a.log.Warn("callback refused by its receiver; abandoned (the client can read the result)",
			slog.String(logRequest, d.ID), slog.String(logClient, d.Client), slog.String(logStatus, d.Status), slog.String(logError, err.Error()))
		return time.Time{}
	case now.Sub(d.Since) >= callbackGiveUp:
		a.log.Warn("callback not delivered within 24h; abandoned (the client can read the result)",
			slog.String(logRequest, d.ID), slog.String(logClient, d.Client), slog.String(logStatus, d.Status),
			slog.Int("attempts", d.Attempts+1), slog.String(logError, err.Error()))
		return time.Time{}
	}
	if d.Attempts == 0 {
		a.log.Warn("callback not delivered; will retry", slog.String(logRequest, d.ID), slog.String(logClient, d.Client),
			slog.String(logError, err.Error()))
	}
	return now.Add(callbackBackoff(a.callbackRetry, d.Attempts))
}

// callbackBackoff is the wait after the attempts+1-th failure: doubling
// from first (callbackRetryMin) up to callbackRetryMax, less up to a
// fifth at random, so that the callbacks of one outage do not all come
// back at once.
func callbackBackoff(first time.Duration, attempts int) time.Duration {
	d := first << min(attempts, 16)
	if d > callbackRetryMax || d <= 0 {
		d = callbackRetryMax
	}
	return d - time.Duration(rand.Int64N(int64(d/5)+1))
}
