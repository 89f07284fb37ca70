package intranet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"time"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/envelope"
	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/metrics"
	"github.com/ferrybridge/ferry/internal/replica"
)

// Quarantine reasons the agent gives itself; the others come from
// envelope.Reason and medium.FileError.
const (
	ReasonUnreadable = "unreadable"   // the inbox file could not be read
	ReasonBadBody    = "bad_body"     // the decrypted body is not a valid requests batch
	ReasonWrongKind  = "wrong_kind"   // a valid envelope that does not carry requests
	ReasonReplay     = "replay"       // another envelope holds its sequence number
	ReasonSeqJump    = "seq_jump"     // its sequence number is beyond max_seq_jump
	ReasonChain      = "chain_broken" // its prev does not fit the envelopes beside it
	ReasonBadHeader  = "bad_header"   // another channel, or header values the ledger cannot record
	ReasonOpenFailed = "open_failed"  // envelope.Reason gave no code
)

// Bounds of the publish retry delay.
const (
	publishRetryMin = 100 * time.Millisecond
	publishRetryMax = 5 * time.Second
)

// openedEnvelope is a verified, decrypted, decoded request envelope.
type openedEnvelope struct {
	env  replica.Envelope
	reqs []batch.Request
	// query lists held requests the DMZ asks about again; their final
	// results, if decided, go with this envelope's answer.
	query []string
}

// sealItem is an applied envelope whose results await sealing, or (id
// empty, decided set) the final result of a held request, which
// acknowledges no envelope.
type sealItem struct {
	id      string
	file    string
	results []batch.Result
	decided bool
}

// send delivers v on out unless ctx ends first.
func send[T any](ctx context.Context, out chan<- T, v T) error {
	select {
	case out <- v:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// openStage reads, verifies, opens and decodes each claimed file, and
// quarantines the ones that fail.
func (a *Agent) openStage(ctx context.Context, in <-chan string, out chan<- *openedEnvelope) error {
	defer close(out)
	for {
		var name string
		select {
		case n, ok := <-in:
			if !ok {
				return nil
			}
			name = n
		case <-ctx.Done():
			return ctx.Err()
		}
		o := a.open(ctx, name)
		if o == nil {
			continue
		}
		if err := send(ctx, out, o); err != nil {
			return err
		}
	}
}

// open returns the envelope in the inbox file name, or nil after
// quarantining (or skipping) a file that fails. Nothing past the
// signature check is parsed before the signature holds: Opener.Open
// verifies before it decrypts.
func (a *Agent) open(ctx context.Context, name string) *openedEnvelope {
	data, err := a.inbox.Read(name)
	if err != nil {
		var fe *medium.FileError
		switch {
		case errors.As(err, &fe):
			a.quarantine(name, fe.Reason, err)
		case errors.Is(err, fs.ErrNotExist):
			// Removed meanwhile: an answered copy of an envelope whose
			// answer was being published.
			a.log.Debug("inbox file gone", slog.String(logFile, name))
		default:
			a.quarantine(name, ReasonUnreadable, err)
		}
		return nil
	}
	o, err := a.openEnvelope(data)
	if err != nil {
		reason := envelope.Reason(err)
		if reason == "" {
			reason = ReasonOpenFailed
		}
		a.quarantine(name, reason, err)
		return nil
	}
	h := &o.Header
	// Signed by the DMZ and addressed here: the DMZ is alive and the
	// medium moves, whatever the envelope turns out to hold.
	a.peerWatch.Heard(a.now())
	if h.Kind != envelope.KindRequests {
		a.quarantine(name, ReasonWrongKind, fmt.Errorf("envelope %s carries %q, want %q", h.ID, h.Kind, envelope.KindRequests))
		return nil
	}
	if h.Channel != RequestsChannel {
		a.quarantine(name, ReasonBadHeader, fmt.Errorf("envelope %s is on channel %q, want %q", h.ID, h.Channel, RequestsChannel))
		return nil
	}
	reqs, err := batch.DecodeRequests(o.Body)
	if err != nil {
		a.quarantine(name, ReasonBadBody, fmt.Errorf("envelope %s: %w", h.ID, err))
		return nil
	}
	a.auditX.Incoming(ctx, reqs.Audit)
	return &openedEnvelope{
		env: replica.Envelope{
			ID: h.ID, From: h.From, Channel: h.Channel, Seq: h.Seq, Prev: h.Prev,
			HeaderHash: o.HeaderHash, File: name, Replaces: reqs.Replaces,
		},
		reqs:  reqs.Requests,
		query: reqs.Query,
	}
}

// quarantine moves a bad file aside with its reason and logs it. A file
// that cannot be moved stays in the inbox and is tried again at the next
// start.
func (a *Agent) quarantine(name, reason string, cause error) {
	a.log.Warn("envelope quarantined", slog.String(logFile, name), slog.String(logReason, reason), slog.String(logError, cause.Error()))
	if err := a.db.Audit(context.Background(), audit.Entry{Event: audit.EventQuarantined, Reason: reason, Detail: name}); err != nil {
		a.log.Error("audit of a quarantine failed", slog.String(logFile, name), slog.String(logError, err.Error()))
	}
	if err := a.inbox.Quarantine(name, reason, cause.Error()); err != nil {
		a.log.Error("cannot quarantine file", slog.String(logFile, name), slog.String(logError, err.Error()))
	}
}

// applyStage applies each opened envelope in its own transaction, one at a
// time (SQLite has one writer), and hands the results to the seal stage.
func (a *Agent) applyStage(ctx context.Context, in <-chan *openedEnvelope, out chan<- sealItem) error {
	defer close(out)
	for {
		var o *openedEnvelope
		select {
		case v, ok := <-in:
			if !ok {
				return nil
			}
			o = v
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := a.apply(ctx, o, out); err != nil {
			return err
		}
	}
}

// reportLimited counts the requests that rate limits refused and warns
// once per envelope for each operation, client and scope that hit a
// limit: high-frequency access by one subject or client. The subject is
// never logged.
func (a *Agent) reportLimited(limited []replica.Limited) {
	if len(limited) == 0 {
		return
	}
	a.rateLimited.Add(uint64(len(limited)))
	a.ops.Metrics.RateLimit(len(limited))
	counts := map[replica.Limited]int{}
	var order []replica.Limited
	for _, l := range limited {
		if counts[l] == 0 {
			order = append(order, l)
		}
		counts[l]++
	}
	for _, l := range order {
		a.log.Warn("rate limit reached: high-frequency access", slog.String(logOperation, l.Operation),
			slog.String(logClient, l.Client), slog.String(logScope, l.Scope), slog.Int(logRequests, counts[l]))
	}
}

func (a *Agent) apply(ctx context.Context, o *openedEnvelope, out chan<- sealItem) error {
	env := o.env
	res, err := a.db.Apply(ctx, env, o.reqs, a.policy.Load().pol)
	switch {
	case errors.Is(err, replica.ErrReplay):
		a.quarantine(env.File, ReasonReplay, err)
		return nil
	case errors.Is(err, replica.ErrSeqJump):
		a.quarantine(env.File, ReasonSeqJump, err)
		return nil
	case errors.Is(err, replica.ErrChainBroken):
		a.quarantine(env.File, ReasonChain, err)
		return nil
	case errors.Is(err, replica.ErrInvalid):
		a.quarantine(env.File, ReasonBadHeader, err)
		return nil
	case err != nil:
		return err
	}
	if !res.Duplicate {
		var done, rejected, failed, held, expired int
		for _, r := range res.Results {
			switch r.Status {
			case batch.StatusDone:
				done++
			case batch.StatusRejected:
				rejected++
			case batch.StatusHeld:
				held++
			case batch.StatusExpired: // settled before it arrived (replica.DB.Answer)
				expired++
			default:
				failed++
			}
		}
		a.log.Info("envelope applied", slog.String(logEnvelope, env.ID), slog.String(logChannel, env.Channel),
			slog.Uint64(logSeq, env.Seq), slog.Int(logRequests, len(o.reqs)),
			slog.Int(logDone, done), slog.Int(logRejected, rejected), slog.Int(logFailed, failed), slog.Int(logHeld, held),
			slog.Int(logExpired, expired))
		a.reportLimited(res.Limited)
		a.ops.Received(a.now(), res.GapsOpened)
		a.countDecisions(res.Results)
		for _, r := range o.reqs {
			a.ops.Request(r.Client, r.Subject, false)
		}
		a.ops.Monitor.Refused(rejected)
		results, err := a.withAnswers(ctx, env.ID, res.Results, o.query)
		if err != nil {
			return err
		}
		return send(ctx, out, sealItem{id: env.ID, file: env.File, results: results})
	}
	if id, ok := a.recovered[env.File]; ok && id == env.ID {
		// The inbox copy of an envelope whose answer this run resumed.
		delete(a.recovered, env.File)
		if res.State == replica.StatePublished {
			a.remove(env.File)
		}
		return nil
	}
	switch res.State {
	case replica.StateApplied, replica.StateSealed:
		// Its answer is on its way and will remove the recorded file.
		if res.File == env.File {
			return nil
		}
		a.log.Info("duplicate envelope dropped: answer already on its way",
			slog.String(logEnvelope, env.ID), slog.String(logFile, env.File), slog.String(logState, string(res.State)))
		a.remove(env.File)
		return nil
	default:
		// Answered before. The DMZ re-sends unanswered requests in a new
		// envelope, never this one again, so this is a copy the medium
		// made or a replay: it gets no second answer.
		a.log.Info("duplicate envelope dropped: answered before", slog.String(logEnvelope, env.ID),
			slog.String(logFile, env.File))
		a.remove(env.File)
		return nil
	}
}

// withAnswers appends to an envelope's results the answers to the
// requests its query asks about (batch.Requests.Query): requests held
// for approval, and requests of envelopes that expired at the DMZ or that
// an admin dropped there. [replica.DB.Answer] gives each its stored
// result, none to one still held, and settles one never received as
// "expired" (reason batch.ReasonNotReceived), so that it is never applied.
// It runs on the apply goroutine, after the asking envelope is recorded,
// so it is serialised with Apply.
//
// Answering applies nothing. The answers are not recorded as part of the
// envelope's results: a crash before they are sealed loses them, and the
// DMZ asks again. A settlement is durable before its answer is sealed,
// and every answer to a request is its one stored result, so answers
// lost, or cut below for lack of room, are answered the same when asked
// again.
func (a *Agent) withAnswers(ctx context.Context, envID string, results []batch.Result, query []string) ([]batch.Result, error) {
	if len(query) == 0 {
		return results, nil
	}
	answers, err := a.db.Answer(ctx, envID, query)
	if errors.Is(err, replica.ErrInvalid) {
		// batch.DecodeRequests refuses such a query; should one get
		// through, the envelope is answered without it.
		a.log.Warn("query not answered", slog.String(logEnvelope, envID), slog.String(logError, err.Error()))
		return results, nil
	}
	if err != nil {
		return nil, err
	}
	// One result envelope carries at most batch.MaxResults results; the
	// answers left out are asked for again.
	if room := batch.MaxResults - len(results); len(answers) > room {
		answers = answers[:max(room, 0)]
	}
	// answered counts the answers sent, not_received those that say the
	// request never arrived (settled now or by an earlier asking).
	notReceived := 0
	for _, r := range answers {
		if r.Status == batch.StatusExpired && r.Reason == batch.ReasonNotReceived {
			notReceived++
		}
	}
	a.log.Info("requests asked about", slog.String(logEnvelope, envID),
		slog.Int(logRequests, len(query)), slog.Int(logAnswered, len(answers)), slog.Int(logNotRecvd, notReceived))
	return append(slices.Clip(results), answers...), nil
}

// remove deletes an inbox file; one already gone is fine.
func (a *Agent) remove(name string) {
	if err := a.inbox.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		a.log.Warn("cannot remove inbox file", slog.String(logFile, name), slog.String(logError, err.Error()))
	}
}

// sealStage gathers applied envelopes into result envelopes of at most
// batch.max_results results, waiting at most batch.max_delay after the
// first, seals each, stores it in the outbox and hands it on. An envelope's
// results are never split. pending (recovered at start) is sealed first.
func (a *Agent) sealStage(ctx context.Context, in <-chan sealItem, out chan<- *replica.Outgoing, pending []sealItem, next uint64, prev [32]byte) error {
	defer close(out)
	maxResults := a.cfg.Batch.MaxResults
	delay := time.Duration(a.cfg.Batch.MaxDelay)
	var (
		group  []sealItem
		n      int
		timer  = time.NewTimer(time.Hour)
		timerC <-chan time.Time
	)
	timer.Stop()
	defer timer.Stop()
	// sealSplit seals g as one envelope or, if its results are too large
	// for one, as several; results too large for any envelope are
	// answered as failed with ReasonResultTooLarge. The ledger keeps the
	// full results, and a duplicate is shrunk the same way, so the
	// channel always moves on.
	var sealSplit func(g []sealItem) error
	sealSplit = func(g []sealItem) error {
		o, err := a.seal(ctx, g, next, prev)
		if errors.Is(err, errResultsTooLarge) {
			if len(g) > 1 {
				mid := len(g) / 2
				if err := sealSplit(g[:mid]); err != nil {
					return err
				}
				return sealSplit(g[mid:])
			}
			it := shrink(g[0], maxResultsBody)
			a.log.Warn("results too large for an envelope; answered as failed", slog.String(logEnvelope, it.id),
				slog.String(logReason, ReasonResultTooLarge))
			o, err = a.seal(ctx, []sealItem{it}, next, prev)
		}
		if err != nil {
			return err
		}
		next, prev = o.Seq+1, o.HeaderHash
		return send(ctx, out, o)
	}
	flush := func() error {
		if len(group) == 0 {
			return nil
		}
		g := group
		group, n, timerC = nil, 0, nil
		timer.Stop()
		return sealSplit(g)
	}
	add := func(it sealItem) error {
		if len(group) > 0 && (n+len(it.results) > maxResults || len(group) >= batch.MaxResults) {
			if err := flush(); err != nil {
				return err
			}
		}
		if len(group) == 0 {
			timer.Reset(delay)
			timerC = timer.C
		}
		group = append(group, it)
		n += len(it.results)
		if n >= maxResults {
			return flush()
		}
		return nil
	}
	// sendCatalogue seals the catalogue of the policy in force in an
	// envelope of its own: if it changed since the last one sent, or
	// always for a heartbeat. A heartbeat tells the DMZ that the intranet
	// and the results medium are alive, and brings back a catalogue that
	// the medium lost.
	var sentCatalogue []byte
	sendCatalogue := func(heartbeat bool) error {
		cat := a.policy.Load().catalogue
		if !heartbeat && bytes.Equal(cat, sentCatalogue) {
			return nil
		}
		o, err := a.sealBody(ctx, nil, cat, next, prev)
		if err != nil {
			return fmt.Errorf("seal catalogue: %w", err)
		}
		sentCatalogue = cat
		next, prev = o.Seq+1, o.HeaderHash
		return send(ctx, out, o)
	}
	// The channel's heartbeat: an envelope whenever it has been quiet for
	// cfg.Heartbeat. Checking at a fifth of it keeps the quiet time
	// within 1.2 heartbeats without a timer reset per envelope.
	heartbeat := time.Duration(a.cfg.Heartbeat)
	beat := time.NewTicker(heartbeat / 5)
	defer beat.Stop()
	lastSeq, quietSince := next, a.now()
	// sealDecided seals the final results of held requests that were
	// decided since (or before a restart), after the envelopes gathered
	// so far, in groups of at most maxResults.
	sealDecided := func() error {
		if err := flush(); err != nil {
			return err
		}
		results, err := a.db.Decided(ctx)
		if err != nil {
			return err
		}
		for len(results) > 0 {
			k := min(len(results), maxResults)
			g := make([]sealItem, k)
			for i, r := range results[:k] {
				g[i] = sealItem{results: []batch.Result{r}, decided: true}
			}
			if err := sealSplit(g); err != nil {
				return err
			}
			results = results[k:]
		}
		return nil
	}
	if err := sendCatalogue(false); err != nil {
		return err
	}
	for _, it := range pending {
		if err := add(it); err != nil {
			return err
		}
	}
	if err := sealDecided(); err != nil {
		return err
	}
	for {
		select {
		case <-a.decisionsReady:
			if err := sealDecided(); err != nil {
				return err
			}
		case <-a.catalogueChanged:
			if err := sendCatalogue(false); err != nil {
				return err
			}
		case <-beat.C:
			if next != lastSeq {
				lastSeq, quietSince = next, a.now()
				continue
			}
			if a.now().Sub(quietSince) < heartbeat || len(group) > 0 {
				continue
			}
			if err := sendCatalogue(true); err != nil {
				return err
			}
			lastSeq, quietSince = next, a.now()
		case it, ok := <-in:
			if !ok {
				return flush()
			}
			if err := add(it); err != nil {
				return err
			}
		case <-timerC:
			if err := flush(); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// ReasonResultTooLarge is the reason of a failed result whose rows do not
// fit in a result envelope.
const ReasonResultTooLarge = "result_too_large"

// maxResultsBody bounds the encoded results of one result envelope, below
// envelope.DefaultMaxSize to leave room for the manifest, the age
// overhead and the header. Tests lower it.
var maxResultsBody = envelope.DefaultMaxSize - 1<<20

// errResultsTooLarge is returned by seal for a group whose encoded results
// exceed maxResultsBody.
var errResultsTooLarge = errors.New("results too large for one envelope")

// shrink returns a copy of it in which the largest results are replaced by
// failed results with ReasonResultTooLarge until the batch encodes within
// limit. Only rows are dropped: every request still gets an answer.
func shrink(it sealItem, limit int) sealItem {
	res := slices.Clone(it.results)
	sizes := make([]int, len(res))
	total := 64 // the batch's own framing
	for i, r := range res {
		b, _ := json.Marshal(r)
		sizes[i] = len(b) + 1
		total += sizes[i]
	}
	for total > limit {
		big := 0
		for i := range sizes {
			if sizes[i] > sizes[big] {
				big = i
			}
		}
		if res[big].Reason == ReasonResultTooLarge {
			break // nothing left to drop
		}
		res[big] = batch.Result{
			RequestID: res[big].RequestID,
			Status:    batch.StatusFailed,
			Reason:    ReasonResultTooLarge,
			Message:   "the result is larger than a result envelope can carry; narrow the query",
		}
		b, _ := json.Marshal(res[big])
		total += len(b) + 1 - sizes[big]
		sizes[big] = len(b) + 1
	}
	it.results = res
	return it
}

// seal seals the results of group as result envelope number seq and
// stores it, with the envelopes it answers, in the ledger.
func (a *Agent) seal(ctx context.Context, group []sealItem, seq uint64, prev [32]byte) (*replica.Outgoing, error) {
	return a.sealBody(ctx, group, nil, seq, prev)
}

// sealBody seals the results of group, and the operation catalogue when
// catalogue is not nil, as the result envelope seq of the channel.
func (a *Agent) sealBody(ctx context.Context, group []sealItem, catalogue []byte, seq uint64, prev [32]byte) (*replica.Outgoing, error) {
	received, err := a.db.Received(ctx, a.peer.Name, RequestsChannel)
	if err != nil {
		return nil, fmt.Errorf("seal results: %w", err)
	}
	body := batch.Results{Acks: make([]string, 0, len(group)), Results: []batch.Result{}, Catalogue: catalogue, Received: received,
		Audit: a.auditX.Outgoing(ctx)}
	var decided []string
	for _, it := range group {
		if it.id != "" {
			body.Acks = append(body.Acks, it.id)
		}
		if it.decided {
			for _, r := range it.results {
				decided = append(decided, r.RequestID)
			}
		}
		body.Results = append(body.Results, it.results...)
	}
	data, err := batch.Encode(body)
	if err != nil {
		return nil, fmt.Errorf("seal results: %w", err)
	}
	// A catalogue alone (at most batch.MaxCatalogue bytes) always fits.
	if len(group) > 0 && len(data) > maxResultsBody {
		return nil, fmt.Errorf("seal results: %w: %d bytes", errResultsTooLarge, len(data))
	}
	now := a.now()
	signer, recipient := a.sealKeys(now)
	s, err := envelope.Seal(envelope.Header{
		ID:      envelope.NewID(),
		Kind:    envelope.KindResults,
		From:    a.zone.Name,
		To:      a.peer.Name,
		Channel: ResultsChannel,
		Seq:     seq,
		Prev:    prev,
		Created: now,
		Expires: now.Add(time.Duration(a.cfg.EnvelopeTTL)),
	}, data, signer, recipient)
	if err != nil {
		return nil, fmt.Errorf("seal results: %w", err)
	}
	o := &replica.Outgoing{
		ID:         s.Header.ID,
		Channel:    ResultsChannel,
		Seq:        seq,
		HeaderHash: s.HeaderHash,
		Name:       envelope.FileName(&s.Header),
		Data:       s.Data,
		Covers:     body.Acks,
		Decided:    decided,
	}
	if err := a.db.StoreSealed(ctx, o); err != nil {
		return nil, err
	}
	a.log.Info("results sealed", slog.String(logEnvelope, o.ID), slog.Uint64(logSeq, seq),
		slog.Int(logAcks, len(body.Acks)), slog.Int(logResults, len(body.Results)), slog.Int(logDecided, len(decided)),
		slog.Bool(logCatalogue, catalogue != nil))
	return o, nil
}

// publishStage publishes result envelopes (the unpublished ones recovered
// at start first), marks them published and removes the request envelope
// files they answer.
func (a *Agent) publishStage(ctx context.Context, in <-chan *replica.Outgoing, recovered []*replica.Outgoing) error {
	for _, o := range recovered {
		if err := a.publish(ctx, o); err != nil {
			return err
		}
	}
	for {
		select {
		case o, ok := <-in:
			if !ok {
				return nil
			}
			if err := a.publish(ctx, o); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (a *Agent) publish(ctx context.Context, o *replica.Outgoing) error {
	wait := publishRetryMin
	for {
		err := a.pub.Publish(ctx, o.Name, o.Data)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The medium may be unavailable for a while; the answer stays in
		// the outbox, so keep trying.
		a.ops.Metrics.MediumError(metrics.Send)
		a.log.Error("cannot publish result envelope", slog.String(logEnvelope, o.ID), slog.String(logFile, o.Name),
			slog.String(logError, err.Error()), slog.Duration(logRetryWait, wait))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
		wait = min(2*wait, publishRetryMax)
	}
	files, err := a.db.MarkPublished(ctx, o.ID)
	if err != nil {
		return err
	}
	a.ops.Sent(a.now())
	for _, f := range files {
		a.remove(f)
	}
	a.log.Info("results published", slog.String(logEnvelope, o.ID), slog.Uint64(logSeq, o.Seq),
		slog.String(logFile, o.Name), slog.Int(logAcks, len(o.Covers)))
	return nil
}
