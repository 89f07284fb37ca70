package dmz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/envelope"
	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/metrics"
	"github.com/ferrybridge/ferry/internal/queue"
)

// Timing of the batcher and publisher.
const (
	// batcherPoll makes the batcher look for unsealed requests even when
	// no commit woke it (requests left from before a restart).
	batcherPoll = time.Second
	// Bounds of the publish and ingest retry delays.
	retryMin = 100 * time.Millisecond
	retryMax = 5 * time.Second
	// markEvery bounds how long a published envelope's requests stay
	// "queued" before they are marked "sent".
	markEvery = 20 * time.Millisecond
	// resendGrace: an envelope the intranet reports missing is re-sent at
	// once if it was published at least resend_after/resendGrace ago.
	resendGrace = 8
	// dueBatch bounds how many envelopes due for re-sending maintain
	// reads at once.
	dueBatch = 64
)

// Log attribute keys of the re-send: an envelope's publication count and
// kind, and the new envelope that sends again what an unacknowledged one
// carried.
const (
	logAttempts  = "attempts"
	logKind      = "kind"
	logResend    = "resend"
	logResendSeq = "resend_seq"
)

// Quarantine reasons the agent gives itself; the others come from
// envelope.Reason and medium.FileError.
const (
	ReasonUnreadable = "unreadable"   // the inbox file could not be read
	ReasonOpenFailed = "open_failed"  // envelope.Reason gave no code
	ReasonBadBody    = "bad_body"     // the decrypted body is not a valid results batch
	ReasonWrongKind  = "wrong_kind"   // a valid envelope that does not carry results
	ReasonBadHeader  = "bad_header"   // a results envelope on another channel
	ReasonReplay     = "replay"       // another envelope holds its sequence number
	ReasonSeqJump    = "seq_jump"     // too far above the highest sequence number received
	ReasonChain      = "chain_broken" // does not fit the hash chain of its neighbours
)

// sleep waits d unless ctx ends first; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func nextDelay(d time.Duration) time.Duration { return min(2*d, retryMax) }

// chain is the requests channel as its one sealer, the batcher, sees it:
// the next sequence number and the header hash of the last envelope.
type chain struct {
	next uint64
	prev [32]byte
}

// sealSpec says what a request envelope carries: requests, or else the
// held and orphaned requests asked about (query), or nothing (a
// heartbeat); and
// whether it re-sends the open requests of an unacknowledged envelope.
type sealSpec struct {
	reqs     []batch.Request
	query    []string
	replaces *queue.Envelope
}

// batcher is the one sealer of the requests channel. It seals unsealed
// requests into envelopes, queries about held and orphaned requests that
// are due (askDue), re-sends the requests of envelopes due again (maintain) and a
// heartbeat when the channel has been quiet for the configured time, and
// hands each envelope to the publisher on out, which it closes when it
// returns. When ctx ends it seals what is left (within drain) and returns.
func (a *Agent) batcher(ctx context.Context, out chan<- *queue.Envelope, drain time.Duration) error {
	defer close(out)
	batchMax := a.cfg.Batch.MaxRequests
	maxDelay := time.Duration(a.cfg.Batch.MaxDelay)
	heartbeat := time.Duration(a.cfg.Heartbeat)
	next, prev, err := a.spool.Channel(ctx, RequestsChannel)
	if err != nil {
		return err
	}
	c := &chain{next: next, prev: prev}
	lastSeal := a.now() // when the channel last carried an envelope
	emit := func(ctx context.Context, env *queue.Envelope) {
		lastSeal = a.now()
		select {
		case out <- env:
		case <-ctx.Done(): // stored: published at the next start
		}
	}
	poll := time.NewTicker(min(batcherPoll, heartbeat))
	defer poll.Stop()
	// Expiry, dead letters and re-sends at start, then every
	// maintainEvery, and at once when results report envelopes missing.
	maintainEvery := min(max(time.Duration(a.cfg.ResendAfter)/4, time.Second), 30*time.Second)
	maintained := a.now()
	if err := a.maintain(ctx, c, emit); err != nil && ctx.Err() == nil {
		return err
	}
	// ask seals and hands on an envelope asking about the held and
	// orphaned requests due (see Agent.askDue), looking at most twice per
	// batcherPoll
	// (so at every poll tick, which comes a little less than batcherPoll
	// after the last look).
	var asked time.Time
	ask := func(ctx context.Context) error {
		if now := a.now(); now.Sub(asked) >= batcherPoll/2 {
			asked = now
			env, err := a.askDue(ctx, c)
			if err != nil || env == nil {
				return err
			}
			emit(ctx, env)
		}
		return nil
	}
	// sealAll seals unsealed requests; unless force, it leaves a partial
	// batch until *deadline, which each seal moves to maxDelay later.
	sealAll := func(ctx context.Context, deadline *time.Time, force bool) (bool, error) {
		for {
			n, err := a.spool.CountUnsealed(ctx, batchMax)
			if err != nil {
				return false, err
			}
			if n == 0 {
				return true, nil
			}
			if !force && n < batchMax && a.now().Before(*deadline) {
				return false, nil
			}
			reqs, err := a.spool.Unsealed(ctx, batchMax)
			if err != nil {
				return false, err
			}
			if len(reqs) == 0 {
				return true, nil
			}
			env, err := a.sealNext(ctx, c, sealSpec{reqs: reqs})
			if err != nil {
				return false, err
			}
			emit(ctx, env)
			if ctx.Err() != nil {
				return false, nil
			}
			// The requests committed while this envelope was sealed
			// wait for others again, at most maxDelay more. Without
			// this, a deadline once passed sealed a small envelope per
			// intake commit for as long as requests kept coming: under
			// load, five times the envelopes (and the spool's writer
			// time) that batch.max_delay asks for.
			*deadline = a.now().Add(maxDelay)
		}
	}
	for {
		due := false
		select {
		case <-a.intake.Committed():
		case <-poll.C:
		case <-a.spool.DueSignal():
			due = true
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
			defer cancel()
			_, err := sealAll(dctx, &time.Time{}, true)
			if dctx.Err() != nil {
				a.log.Warn("drain timeout: unsealed requests stay in the spool")
				return nil
			}
			return err
		}
		now := a.now()
		if due || now.Sub(maintained) >= maintainEvery {
			maintained = now
			if err := a.maintain(ctx, c, emit); err != nil {
				if ctx.Err() != nil {
					continue
				}
				return err
			}
		}
		if now.Sub(lastSeal) >= heartbeat {
			if err := a.heartbeat(ctx, c, emit); err != nil {
				if ctx.Err() != nil {
					continue
				}
				return err
			}
			lastSeal = now // also when one is still open
		}
		deadline := a.now().Add(maxDelay)
		for {
			empty, err := sealAll(ctx, &deadline, false)
			if err == nil {
				// Also between partial batches, so that steady
				// traffic does not put the asking off.
				err = ask(ctx)
			}
			if err != nil {
				if ctx.Err() != nil {
					break
				}
				return err
			}
			if empty {
				break
			}
			// A partial batch: wait for more requests or the deadline.
			wait := time.NewTimer(time.Until(deadline))
			select {
			case <-a.intake.Committed():
			case <-wait.C:
			case <-ctx.Done():
			}
			wait.Stop()
			if ctx.Err() != nil {
				break
			}
		}
	}
}

// heartbeat seals an envelope carrying nothing, unless one is still
// unacknowledged: that one is re-sent on its schedule instead, so that a
// silent intranet does not pile heartbeats up.
func (a *Agent) heartbeat(ctx context.Context, c *chain, emit func(context.Context, *queue.Envelope)) error {
	open, err := a.spool.HeartbeatOpen(ctx)
	if err != nil || open {
		return err
	}
	env, err := a.sealNext(ctx, c, sealSpec{})
	if err != nil {
		return err
	}
	a.log.Debug("heartbeat sealed", slog.String(logEnvelope, env.ID), slog.Uint64(logSeq, env.Seq))
	emit(ctx, env)
	return nil
}

// askDue seals an envelope that carries no requests and asks the
// intranet about the requests due (queue.Spool.AskDue): orphaned ones
// never asked about, and held or orphaned ones that became held or were
// last asked about longer than resend_after ago, at most batch.MaxQuery
// of them. It stores the envelope with
// queue.Spool.StoreQuery, which records the asking, advances c past it,
// and returns it; it returns nil if no request is due.
func (a *Agent) askDue(ctx context.Context, c *chain) (*queue.Envelope, error) {
	due, err := a.spool.AskDue(ctx, a.now().Add(-time.Duration(a.cfg.ResendAfter)), batch.MaxQuery)
	if err != nil || len(due) == 0 {
		return nil, err
	}
	return a.sealNext(ctx, c, sealSpec{query: due})
}

// sealNext seals what sp says as the channel's next envelope, stores it
// and advances c past it. If the stored channel moved (it should not: the
// batcher is the one sealer), it reloads c and seals once more.
func (a *Agent) sealNext(ctx context.Context, c *chain, sp sealSpec) (*queue.Envelope, error) {
	for range 2 {
		env, err := a.seal(ctx, sp, c.next, c.prev)
		if errors.Is(err, queue.ErrSeqConflict) {
			if c.next, c.prev, err = a.spool.Channel(ctx, RequestsChannel); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		c.next, c.prev = env.Seq+1, env.HeaderHash
		return env, nil
	}
	return nil, fmt.Errorf("seal requests: %w", queue.ErrSeqConflict)
}

// seal seals what sp says as envelope seq on the requests channel and
// stores it. A re-send keeps the expiry of the envelope it replaces: the
// requests' deadline does not move.
func (a *Agent) seal(ctx context.Context, sp sealSpec, seq uint64, prev [32]byte) (*queue.Envelope, error) {
	body := batch.Requests{Requests: sp.reqs, Query: sp.query, Audit: a.auditX.Outgoing(ctx)}
	if body.Requests == nil {
		body.Requests = []batch.Request{} // "requests": [], never null
	}
	now := a.now()
	expires := now.Add(time.Duration(a.cfg.EnvelopeTTL))
	if sp.replaces != nil {
		body.Replaces = sp.replaces.Seq
		expires = sp.replaces.Expires
	}
	data, err := batch.Encode(body)
	if err != nil {
		return nil, fmt.Errorf("seal requests: %w", err)
	}
	signer, recipient := a.sealKeys(now)
	s, err := envelope.Seal(envelope.Header{
		ID:      envelope.NewID(),
		Kind:    envelope.KindRequests,
		From:    a.zone.Name,
		To:      a.peer.Name,
		Channel: RequestsChannel,
		Seq:     seq,
		Prev:    prev,
		Created: now,
		Expires: expires,
	}, data, signer, recipient)
	if err != nil {
		return nil, fmt.Errorf("seal requests: %w", err)
	}
	env := &queue.Envelope{
		ID:         s.Header.ID,
		Channel:    RequestsChannel,
		Seq:        seq,
		HeaderHash: s.HeaderHash,
		Name:       envelope.FileName(&s.Header),
		Data:       s.Data,
		Requests:   len(sp.reqs),
		Created:    s.Header.Created,
		Expires:    s.Header.Expires,
		State:      queue.EnvSealed,
	}
	switch {
	case sp.replaces != nil:
		if err := a.spool.StoreResend(ctx, env, sp.replaces.ID, sp.query, now); err != nil {
			return nil, err
		}
		a.ops.Metrics.Retransmission(1)
		a.log.Info("envelope not acknowledged; sent again as a new envelope",
			slog.String(logEnvelope, sp.replaces.ID), slog.Uint64(logSeq, sp.replaces.Seq), slog.String(logKind, env.Kind),
			slog.String(logResend, env.ID), slog.Uint64(logResendSeq, seq),
			slog.Int(logCount, env.Requests+len(sp.query)), slog.Int(logAttempts, sp.replaces.Attempts))
	case len(sp.query) > 0:
		if err := a.spool.StoreQuery(ctx, env, sp.query, now); err != nil {
			return nil, err
		}
		a.log.Info("asking the intranet about requests", slog.String(logEnvelope, env.ID), slog.Uint64(logSeq, seq),
			slog.Int(logCount, len(sp.query)))
	default:
		ids := make([]string, len(sp.reqs))
		for i, r := range sp.reqs {
			ids[i] = r.ID
		}
		if err := a.spool.StoreSealed(ctx, env, ids); err != nil {
			return nil, err
		}
		if len(ids) > 0 {
			a.log.Info("requests sealed", slog.String(logEnvelope, env.ID), slog.Uint64(logSeq, seq), slog.Int(logCount, len(ids)))
		}
	}
	return env, nil
}

// publisher publishes envelopes: first the ones stored but not published
// before a restart, then those from in, in order. When in is closed (the
// batcher stopped) it returns; drain bounds the publishing still to do
// once ctx has ended. It never seals: the batcher is the one sealer of
// the channel.
func (a *Agent) publisher(ctx context.Context, in <-chan *queue.Envelope, drain time.Duration) error {
	// Publishing continues past ctx until the batcher closes in, bounded
	// by the drain timeout from the moment ctx ends.
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	go func() {
		select {
		case <-ctx.Done():
			sleep(pctx, drain)
			cancel()
		case <-pctx.Done():
		}
	}()
	old, err := a.spool.Unpublished(pctx)
	if err != nil {
		return err
	}
	var done []string
	for _, env := range old {
		if !a.publish(pctx, env) {
			return nil
		}
		done = append(done, env.ID)
	}
	if err := a.markPublished(pctx, done); err != nil {
		return err
	}
	done = done[:0]
	// The "published" marks of the envelopes published within markEvery
	// share one transaction, so that under load the publisher does not
	// take the writer from the intake once per envelope. A mark lost in a
	// crash only means the envelope is published again, byte for byte,
	// at the next start.
	mark := time.NewTimer(markEvery)
	mark.Stop()
	defer mark.Stop()
	for {
		select {
		case env, ok := <-in:
			if !ok {
				return a.markPublished(pctx, done)
			}
			if !a.publish(pctx, env) {
				return nil // left sealed: published again at the next start
			}
			if len(done) == 0 {
				mark.Reset(markEvery)
			}
			done = append(done, env.ID)
		case <-mark.C:
			if err := a.markPublished(pctx, done); err != nil {
				return err
			}
			done = done[:0]
		}
	}
}

func (a *Agent) markPublished(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if err := a.spool.MarkPublished(ctx, ids, a.now(), a.backoff()); err != nil {
		if ctx.Err() != nil {
			return nil // published again at the next start: same bytes
		}
		return err
	}
	return nil
}

// publish publishes env, retrying until it succeeds or ctx ends; it
// reports whether it succeeded.
func (a *Agent) publish(ctx context.Context, env *queue.Envelope) bool {
	delay := retryMin
	for {
		err := a.pub.Publish(ctx, env.Name, env.Data)
		if err == nil {
			a.ops.Sent(a.now())
			a.log.Debug("envelope published", slog.String(logEnvelope, env.ID), slog.Uint64(logSeq, env.Seq), slog.String(logFile, env.Name))
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		a.ops.Metrics.MediumError(metrics.Send)
		level := slog.LevelWarn
		if errors.Is(err, medium.ErrExists) {
			// Another file holds this name: retrying will not help, but
			// the operator must see it and the envelope must not be lost.
			level = slog.LevelError
		}
		a.log.Log(ctx, level, "publish failed; retrying", slog.String(logEnvelope, env.ID), slog.String(logFile, env.Name),
			slog.String(logError, err.Error()))
		if !sleep(ctx, delay) {
			return false
		}
		delay = nextDelay(delay)
	}
}

// backoff is the re-send schedule of the config.
func (a *Agent) backoff() queue.Backoff {
	return queue.Backoff{After: time.Duration(a.cfg.ResendAfter), Max: time.Duration(a.cfg.ResendMax)}
}

// maintain expires envelopes past their TTL, makes dead letters of the
// envelopes due again after max_resends publications, and re-sends the
// other envelopes due (queue.Spool.Due: resend_after after the first
// publication, twice as long after each further one, at most resend_max;
// at once after results reported one missing): their requests still
// unanswered go into a new envelope that names the one it replaces
// (queue.Spool.StoreResend), handed on with emit. An envelope due with
// nothing to re-send (a heartbeat, a query, all its requests answered) is
// retired. The batcher runs it, as the one sealer of the channel.
func (a *Agent) maintain(ctx context.Context, c *chain, emit func(context.Context, *queue.Envelope)) error {
	now := a.now()
	expired, err := a.spool.Expire(ctx, now)
	if err != nil {
		return err
	}
	if len(expired) > 0 {
		// Not final: the intranet may have applied them. askDue asks.
		a.log.Warn("request envelopes expired before their results came; asking the intranet about their requests",
			slog.Int(logCount, len(expired)))
	}
	dead, err := a.spool.MarkDead(ctx, now, a.cfg.MaxResends)
	if err != nil {
		return err
	}
	for _, env := range dead {
		// Logged once: MarkDead returns an envelope only when it moves it.
		a.log.Error("request envelope is a dead letter", slog.String(logEnvelope, env.ID), slog.Uint64(logSeq, env.Seq),
			slog.Int(logCount, env.Requests), slog.Int(logAttempts, env.Attempts))
	}
	seen := map[string]bool{}
	for {
		due, err := a.spool.Due(ctx, now, dueBatch)
		if err != nil {
			return err
		}
		fresh := 0
		for _, old := range due {
			if seen[old.ID] {
				continue
			}
			seen[old.ID], fresh = true, fresh+1
			if err := a.resend(ctx, c, old, emit); err != nil {
				return err
			}
		}
		// Re-sent and retired envelopes are no longer due, so the next
		// round reads the ones after them.
		if len(due) < dueBatch || fresh == 0 || ctx.Err() != nil {
			return nil
		}
	}
}

// resend sends again what old, due again, carried that still needs an
// answer, in a new envelope of the same kind that names old as replaced:
// its unanswered requests, the requests a query asked about, or
// nothing for a heartbeat. It retires old if nothing is left to send.
func (a *Agent) resend(ctx context.Context, c *chain, old *queue.Envelope, emit func(context.Context, *queue.Envelope)) error {
	var sp sealSpec
	switch old.Kind {
	case queue.KindHeartbeat:
	case queue.KindQuery:
		ids, err := a.spool.Queried(ctx, old.ID)
		if err != nil {
			return err
		}
		sp.query = ids
	default:
		reqs, err := a.spool.OpenRequests(ctx, old.ID)
		if err != nil {
			return err
		}
		sp.reqs = reqs
	}
	if old.Kind != queue.KindHeartbeat && len(sp.reqs) == 0 && len(sp.query) == 0 {
		ok, err := a.spool.Retire(ctx, old.ID)
		switch {
		case errors.Is(err, queue.ErrEnvelopeState):
			return nil // a request came back meanwhile: due again next time
		case err != nil:
			return err
		case ok:
			a.log.Debug("envelope not acknowledged, with nothing left to send; retired",
				slog.String(logEnvelope, old.ID), slog.Uint64(logSeq, old.Seq))
		}
		return nil
	}
	sp.replaces = old
	env, err := a.sealNext(ctx, c, sp)
	switch {
	case errors.Is(err, queue.ErrEnvelopeState), errors.Is(err, queue.ErrNotFound):
		return nil // acknowledged, expired or dropped meanwhile
	case err != nil:
		return err
	}
	emit(ctx, env)
	return nil
}
