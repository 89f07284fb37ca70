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
	// dueBatch bounds how many envelopes due for re-sending maintain
	// holds in memory at once.
	dueBatch = 64
)

// logAttempts is the log attribute key of an envelope's publication
// count.
const logAttempts = "attempts"

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

// batcher seals unsealed requests into envelopes and hands them to the
// publisher on out, which it closes when it returns. When ctx ends it seals
// what is left (within drain) and returns.
func (a *Agent) batcher(ctx context.Context, out chan<- *queue.Envelope, drain time.Duration) error {
	defer close(out)
	max := a.cfg.Batch.MaxRequests
	maxDelay := time.Duration(a.cfg.Batch.MaxDelay)
	next, prev, err := a.spool.Channel(ctx, RequestsChannel)
	if err != nil {
		return err
	}
	poll := time.NewTicker(batcherPoll)
	defer poll.Stop()
	// ask seals and hands on an envelope asking again about the held
	// requests due (see Agent.askHeld), looking at most twice per batcherPoll
	// (so at every poll tick, which comes a little less than batcherPoll
	// after the last look). The batcher is the one sealer of the request
	// channel, so the query envelopes are sealed here, between request
	// envelopes.
	var asked time.Time
	ask := func(ctx context.Context) error {
		if now := a.now(); now.Sub(asked) >= batcherPoll/2 {
			asked = now
			env, err := a.askHeld(ctx, &next, &prev)
			if err != nil || env == nil {
				return err
			}
			select {
			case out <- env:
			case <-ctx.Done(): // stored: published at the next start
			}
		}
		return nil
	}
	// sealAll seals unsealed requests; unless force, it leaves a partial
	// batch until deadline.
	sealAll := func(ctx context.Context, deadline time.Time, force bool) (bool, error) {
		for {
			n, err := a.spool.CountUnsealed(ctx, max)
			if err != nil {
				return false, err
			}
			if n == 0 {
				return true, nil
			}
			if !force && n < max && a.now().Before(deadline) {
				return false, nil
			}
			reqs, err := a.spool.Unsealed(ctx, max)
			if err != nil {
				return false, err
			}
			if len(reqs) == 0 {
				return true, nil
			}
			env, err := a.seal(ctx, reqs, nil, next, prev)
			if errors.Is(err, queue.ErrSeqConflict) {
				// Only this loop advances the channel; reload and retry.
				if next, prev, err = a.spool.Channel(ctx, RequestsChannel); err != nil {
					return false, err
				}
				continue
			}
			if err != nil {
				return false, err
			}
			next, prev = env.Seq+1, env.HeaderHash
			select {
			case out <- env:
			case <-ctx.Done():
				return false, nil // stored: published at the next start
			}
		}
	}
	for {
		select {
		case <-a.intake.Committed():
		case <-poll.C:
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
			defer cancel()
			_, err := sealAll(dctx, time.Time{}, true)
			if dctx.Err() != nil {
				a.log.Warn("drain timeout: unsealed requests stay in the spool")
				return nil
			}
			return err
		}
		deadline := a.now().Add(maxDelay)
		for {
			empty, err := sealAll(ctx, deadline, false)
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

// askHeld seals an envelope that carries no requests and asks the
// intranet again about the held requests due: held, or last asked about,
// longer than resend_after ago (queue.Spool.HeldDue), at most
// batch.MaxQuery of them. It stores the envelope with
// queue.Spool.StoreQuery, which records the asking, advances *next and
// *prev past it, and returns it; it returns nil if no request is due. The
// caller must be the one sealer of the request channel.
func (a *Agent) askHeld(ctx context.Context, next *uint64, prev *[32]byte) (*queue.Envelope, error) {
	due, err := a.spool.HeldDue(ctx, a.now().Add(-time.Duration(a.cfg.ResendAfter)), batch.MaxQuery)
	if err != nil || len(due) == 0 {
		return nil, err
	}
	for range 2 {
		env, err := a.seal(ctx, nil, due, *next, *prev)
		if errors.Is(err, queue.ErrSeqConflict) {
			// Only the batcher advances the channel; reload and retry.
			if *next, *prev, err = a.spool.Channel(ctx, RequestsChannel); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		*next, *prev = env.Seq+1, env.HeaderHash
		return env, nil
	}
	return nil, fmt.Errorf("ask about held requests: %w", queue.ErrSeqConflict)
}

// seal seals reqs, or else query (the held requests asked about again), as
// envelope seq on the requests channel and stores it.
func (a *Agent) seal(ctx context.Context, reqs []batch.Request, query []string, seq uint64, prev [32]byte) (*queue.Envelope, error) {
	if reqs == nil {
		reqs = []batch.Request{} // "requests": [], never null
	}
	body, err := batch.Encode(batch.Requests{Requests: reqs, Query: query})
	if err != nil {
		return nil, fmt.Errorf("seal requests: %w", err)
	}
	now := a.now()
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
		Expires: now.Add(time.Duration(a.cfg.EnvelopeTTL)),
	}, body, signer, recipient)
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
		Requests:   len(reqs),
		Created:    s.Header.Created,
		Expires:    s.Header.Expires,
		State:      queue.EnvSealed,
	}
	if len(query) > 0 {
		if err := a.spool.StoreQuery(ctx, env, query, now); err != nil {
			return nil, err
		}
		a.log.Info("asking again about held requests", slog.String(logEnvelope, env.ID), slog.Uint64(logSeq, seq),
			slog.Int(logCount, len(query)))
		return env, nil
	}
	ids := make([]string, len(reqs))
	for i, r := range reqs {
		ids[i] = r.ID
	}
	if err := a.spool.StoreSealed(ctx, env, ids); err != nil {
		return nil, err
	}
	a.log.Info("requests sealed", slog.String(logEnvelope, env.ID), slog.Uint64(logSeq, seq), slog.Int(logCount, len(reqs)))
	return env, nil
}

// publisher publishes envelopes: first the ones stored but not published
// before a restart, then those from in, in order. It also runs maintain
// (expiry, dead letters, re-sends) at every tick. When in is closed (the
// batcher stopped) it returns; drain bounds the publishing still to do
// once ctx has ended. It never seals: the batcher is the one sealer of
// the channel, and a re-send publishes the stored bytes again.
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
	if err := a.maintain(pctx); err != nil {
		return err
	}
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
	resend := time.Duration(a.cfg.ResendAfter)
	tick := time.NewTicker(min(max(resend/4, time.Second), 30*time.Second))
	defer tick.Stop()
	// The "published" marks of the envelopes published within markEvery
	// share one transaction, so that under load the publisher does not
	// take the writer from the intake once per envelope. A mark lost in a
	// crash only means the envelope is published again, byte for byte.
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
		case <-tick.C:
			if err := a.maintain(pctx); err != nil {
				return err
			}
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
			a.log.Debug("envelope published", slog.String(logEnvelope, env.ID), slog.Uint64(logSeq, env.Seq), slog.String(logFile, env.Name))
			return true
		}
		if ctx.Err() != nil {
			return false
		}
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
// envelopes due again after max_resends publications, and publishes again
// the other envelopes due (queue.Spool.Due): resend_after after the first
// publication, twice as long after each further one, at most resend_max.
// A crash between publishing and marking only means an envelope is due,
// and published byte for byte, again.
func (a *Agent) maintain(ctx context.Context) error {
	now := a.now()
	expired, err := a.spool.Expire(ctx, now)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if len(expired) > 0 {
		a.log.Warn("requests expired without a result", slog.Int(logCount, len(expired)))
		a.waiters.notify(expired)
	}
	dead, err := a.spool.MarkDead(ctx, now, a.cfg.MaxResends)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	for _, env := range dead {
		// Logged once: MarkDead returns an envelope only when it moves it.
		a.log.Error("request envelope is a dead letter", slog.String(logEnvelope, env.ID), slog.Uint64(logSeq, env.Seq),
			slog.Int(logCount, env.Requests), slog.Int(logAttempts, env.Attempts))
	}
	for {
		due, err := a.spool.Due(ctx, now, dueBatch)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		var done []string
		for _, env := range due {
			a.log.Info("envelope not acknowledged; publishing again", slog.String(logEnvelope, env.ID),
				slog.Uint64(logSeq, env.Seq), slog.Int(logAttempts, env.Attempts))
			if !a.publish(ctx, env) {
				break
			}
			done = append(done, env.ID)
		}
		// Marked envelopes fall due later than now, so the next round
		// reads the ones after them.
		if err := a.markPublished(ctx, done); err != nil || len(done) < dueBatch || ctx.Err() != nil {
			return err
		}
	}
}
