package dmz

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ferrybridge/ferry/internal/audit"
)

// refusalQueue bounds the refused requests waiting to be recorded; past
// it, refusals are counted and recorded as one entry (a flood of bad
// requests must not turn into a flood of fsyncs).
const refusalQueue = 4096

// refusalBatch is the most refusals recorded in one transaction.
const refusalBatch = 256

// refusals records API refusals in the audit log off the request path:
// record never blocks, and run stages what queued up in batches.
type refusals struct {
	ch      chan audit.Entry
	dropped atomic.Int64
}

func newRefusals() *refusals { return &refusals{ch: make(chan audit.Entry, refusalQueue)} }

// record queues the refusal of a request by client (operation op, reason
// code reason); if the queue is full it only counts it.
func (r *refusals) record(now time.Time, client, op, reason string) {
	e := audit.Entry{Time: now, Event: audit.EventRequestRefused, Actor: client, Operation: op, Reason: reason}
	select {
	case r.ch <- e:
	default:
		r.dropped.Add(1)
	}
}

// run stages queued refusals through stage until ctx ends, then stages
// what is left.
func (r *refusals) run(ctx context.Context, stage func(context.Context, ...audit.Entry) error, log *slog.Logger) error {
	flush := func(ctx context.Context, batch []audit.Entry) {
		if n := r.dropped.Swap(0); n > 0 {
			batch = append(batch, audit.Entry{Time: time.Now(), Event: audit.EventRequestRefused, Count: n,
				Detail: "refusals beyond the audit queue, recorded as a count"})
		}
		if len(batch) == 0 {
			return
		}
		if err := stage(ctx, batch...); err != nil {
			log.Error("audit of refused requests failed", slog.Int("count", len(batch)), slog.String(logError, err.Error()))
		}
	}
	batch := make([]audit.Entry, 0, refusalBatch)
	add := func(ctx context.Context, e audit.Entry) {
		if batch = append(batch, e); len(batch) == refusalBatch {
			flush(ctx, batch)
			batch = batch[:0]
		}
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			// What queued up before the stop is recorded too.
			final := context.WithoutCancel(ctx)
			for {
				select {
				case e := <-r.ch:
					add(final, e)
				default:
					flush(final, batch)
					return nil
				}
			}
		case e := <-r.ch:
			add(ctx, e)
		case <-tick.C:
			flush(ctx, batch)
			batch = batch[:0]
		}
	}
}
