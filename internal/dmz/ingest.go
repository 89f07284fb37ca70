package dmz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/envelope"
	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/queue"
)

// ingester applies each result envelope file named on names until ctx
// ends.
func (a *Agent) ingester(ctx context.Context, names <-chan string) error {
	for {
		select {
		case name := <-names:
			a.ingest(ctx, name)
		case <-ctx.Done():
			return nil
		}
	}
}

// ingest handles one claimed file: it applies it and removes it, drops it
// as a duplicate, or quarantines it. A spool failure is retried until ctx
// ends; the file then stays in the inbox for the next start.
func (a *Agent) ingest(ctx context.Context, name string) {
	data, err := a.inbox.Read(name)
	if err != nil {
		var fe *medium.FileError
		if errors.As(err, &fe) {
			a.quarantine(name, fe.Reason, err)
		} else {
			a.quarantine(name, ReasonUnreadable, err)
		}
		return
	}
	opened, err := a.openEnvelope(data)
	if err != nil {
		reason := envelope.Reason(err)
		if reason == "" {
			reason = ReasonOpenFailed
		}
		a.quarantine(name, reason, err)
		return
	}
	h := opened.Header
	// Signed by the intranet and addressed here: the intranet is alive
	// and the medium moves, whatever the envelope turns out to hold.
	a.peerWatch.Heard(a.now())
	switch {
	case h.Kind != envelope.KindResults:
		a.quarantine(name, ReasonWrongKind, fmt.Errorf("envelope %s carries %q, want %q", h.ID, h.Kind, envelope.KindResults))
		return
	case h.Channel != ResultsChannel:
		a.quarantine(name, ReasonBadHeader, fmt.Errorf("envelope %s is on channel %q, want %q", h.ID, h.Channel, ResultsChannel))
		return
	}
	res, err := batch.DecodeResults(opened.Body)
	if err != nil {
		a.quarantine(name, ReasonBadBody, err)
		return
	}
	a.auditX.Incoming(ctx, res.Audit)
	env := queue.ReceivedEnvelope{ID: h.ID, Channel: h.Channel, Seq: h.Seq, Prev: h.Prev, HeaderHash: opened.HeaderHash}
	ck := a.parseCatalogue(&h, res)
	if ck != nil {
		env.Catalogue = res.Catalogue
	}
	delay := retryMin
	var (
		applied *queue.Applied
		now     time.Time
	)
	for {
		now = a.now()
		applied, err = a.spool.ApplyResults(ctx, env, res, now)
		switch {
		case errors.Is(err, queue.ErrDuplicate):
			a.log.Info("duplicate result envelope dropped", slog.String(logEnvelope, h.ID), slog.Uint64(logSeq, h.Seq), slog.String(logFile, name))
			a.remove(name)
			return
		case errors.Is(err, queue.ErrReplay):
			a.quarantine(name, ReasonReplay, err)
			return
		case errors.Is(err, queue.ErrSeqJump):
			a.quarantine(name, ReasonSeqJump, err)
			return
		case errors.Is(err, queue.ErrChainBroken):
			a.quarantine(name, ReasonChain, err)
			return
		case errors.Is(err, queue.ErrBadSeq):
			a.quarantine(name, ReasonBadHeader, err)
			return
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			a.log.Error("storing results failed; retrying", slog.String(logEnvelope, h.ID), slog.String(logError, err.Error()))
			if !sleep(ctx, delay) {
				return
			}
			delay = nextDelay(delay)
			continue
		}
		break
	}
	switch {
	case applied.CatalogueStored:
		// As the spool keeps it, so that a restart shows the same time.
		ck.received = time.UnixMilli(now.UnixMilli()).UTC()
		a.install(ck)
	case ck != nil:
		a.log.Info("operation catalogue older than the stored one ignored", slog.String(logEnvelope, h.ID), slog.Uint64(logSeq, h.Seq))
	}
	a.ops.Received(now, applied.GapsOpened)
	if res.Received != nil && len(res.Received.Missing) > 0 {
		a.resendMissing(ctx, res.Received.Missing, now)
	}
	// A request that became held wakes its long polls as well: held is
	// progress the client should see, though not final.
	a.waiters.notify(applied.Final)
	a.waiters.notify(applied.Held)
	if len(applied.Final)+len(applied.Held) > 0 {
		a.wakeCallbacks()
	}
	for _, id := range applied.Unknown {
		a.log.Warn("result for an unknown request ignored", slog.String(logEnvelope, h.ID), slog.String(logRequest, id))
	}
	if len(applied.NoResult) > 0 {
		a.log.Warn("acknowledged requests without a result marked failed", slog.String(logEnvelope, h.ID),
			slog.Int(logNoResult, len(applied.NoResult)))
	}
	a.log.Info("results applied", slog.String(logEnvelope, h.ID), slog.Uint64(logSeq, h.Seq),
		slog.Int(logCount, len(res.Results)), slog.Int(logFinal, len(applied.Final)), slog.Int(logHeld, len(applied.Held)),
		slog.Int(logAcked, applied.Acked), slog.Int(logUnknown, len(applied.Unknown)), slog.Int(logStale, applied.Stale))
	a.remove(name)
}

// resendMissing makes due at once the request envelopes the intranet
// reports missing that were published once, at least a resendGrace of
// resend_after ago (a younger one may still be on its way), so that a lost
// envelope is re-sent without waiting for resend_after. A failure is only
// logged: the envelope falls due on its schedule anyway.
func (a *Agent) resendMissing(ctx context.Context, missing [][2]uint64, now time.Time) {
	grace := time.Duration(a.cfg.ResendAfter) / resendGrace
	n, err := a.spool.ResendMissing(ctx, RequestsChannel, missing, now, now.Add(-grace))
	switch {
	case err != nil:
		if ctx.Err() == nil {
			a.log.Warn("cannot make missing envelopes due", slog.String(logError, err.Error()))
		}
	case n > 0:
		a.log.Info("intranet reports request envelopes missing; re-sending them now", slog.Int(logCount, n))
	}
}

// parseCatalogue returns a checker of the catalogue a results envelope
// carries, or nil if it carries none or one that cannot be used; the
// envelope's results are applied either way.
func (a *Agent) parseCatalogue(h *envelope.Header, res *batch.Results) *checker {
	if res.Catalogue == nil {
		return nil
	}
	if h.Seq == 0 {
		// Catalogues are ordered by sequence number, from 1.
		a.log.Error("operation catalogue on an envelope with sequence number 0 ignored; keeping the current one",
			slog.String(logEnvelope, h.ID))
		return nil
	}
	// A catalogue holds no personal data; the error names fields and
	// rules, and is bounded.
	ck, err := catalogueChecker(res.Catalogue, h.Seq, time.Time{})
	if err != nil {
		a.log.Error("operation catalogue from the intranet does not parse; keeping the current one",
			slog.String(logEnvelope, h.ID), slog.Uint64(logSeq, h.Seq), slog.String(logError, truncate(err.Error())))
		return nil
	}
	return ck
}

func (a *Agent) remove(name string) {
	if err := a.inbox.Remove(name); err != nil {
		a.log.Error("removing inbox file failed", slog.String(logFile, name), slog.String(logError, err.Error()))
	}
}

func (a *Agent) quarantine(name, reason string, cause error) {
	a.log.Warn("result envelope quarantined", slog.String(logFile, name), slog.String(logReason, reason),
		slog.String(logError, cause.Error()))
	if err := a.spool.Audit(context.Background(), audit.Entry{Event: audit.EventQuarantined, Reason: reason, Detail: name}); err != nil {
		a.log.Error("audit of a quarantine failed", slog.String(logFile, name), slog.String(logError, err.Error()))
	}
	if err := a.inbox.Quarantine(name, reason, cause.Error()); err != nil {
		a.log.Error("quarantine failed", slog.String(logFile, name), slog.String(logError, err.Error()))
	}
}

// waiters wakes long polls when their request reaches a final status or
// becomes held.
type waiters struct {
	mu sync.Mutex
	m  map[string][]chan struct{}
}

func newWaiters() *waiters { return &waiters{m: map[string][]chan struct{}{}} }

// add registers a waiter for id; the channel is closed by notify. The
// returned function unregisters it.
func (w *waiters) add(id string) (<-chan struct{}, func()) {
	c := make(chan struct{})
	w.mu.Lock()
	w.m[id] = append(w.m[id], c)
	w.mu.Unlock()
	return c, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		list := w.m[id]
		for i, x := range list {
			if x == c {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(w.m, id)
		} else {
			w.m[id] = list
		}
	}
}

// notify wakes every waiter of the ids.
func (w *waiters) notify(ids []string) {
	if len(ids) == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range ids {
		for _, c := range w.m[id] {
			close(c)
		}
		delete(w.m, id)
	}
}
