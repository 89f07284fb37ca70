// Package intranet is the intranet agent: it claims request envelopes from
// the request medium, verifies and opens them, checks every request against
// the whitelist policy, applies the allowed ones to the replica exactly
// once, and answers with sealed result envelopes on the result medium.
//
// # Pipeline
//
// [Agent.Run] runs five stages connected by small bounded channels, so that
// opening one envelope, applying another, and sealing and publishing the
// answers to earlier ones overlap:
//
//	receive  the medium's Receiver claims files into the inbox
//	open     read the inbox file, envelope.Opener.Open (signature, recipient,
//	         freshness, payload), batch.DecodeRequests
//	apply    replica.DB.Apply: one transaction per envelope (single writer)
//	seal     gather applied envelopes' results (batch.max_results,
//	         batch.max_delay) into one result envelope; store it in the
//	         ledger's outbox with the next sequence number of the results
//	         channel, and mark the envelopes it answers sealed; when the
//	         channel has been quiet for heartbeat, seal an envelope with
//	         only the operation catalogue
//	publish  publish the result envelope, mark it published, remove the
//	         request envelope files it answers from the inbox
//
// # The policy
//
// The policy takes effect only with the signatures of policy_signatures
// distinct admins (the file FILE.sig next to it, see internal/admin and
// docs/policy.md). The agent refuses to start without such a policy, and
// [Agent.Reload] (SIGHUP) replaces the policy in force only with one that
// passes the same checks; a refused reload is logged and changes nothing.
//
// # Held writes
//
// A write whose operation requires approval is answered "held" and kept in
// the ledger (see package replica). A sixth goroutine reads the approvals
// directory every approval_poll: it verifies each signed approval against
// the admins' keys, refuses one by an admin who signed the policy in
// force (separation of duties), and has the replica run or deny the
// request ([replica.DB.Decide]); it also expires held requests nobody
// decided in time. The seal stage then sends their final results in a
// result envelope that acknowledges no request envelope. A refused
// approval file is moved to approvals/refused/ with a .reason file; an
// accepted one is removed, the ledger keeping its signed bytes.
//
// # Bad files
//
// A file that cannot be read, opened or decoded, that is not a requests
// envelope, or that reuses another envelope's sequence number is moved to
// the quarantine directory with a .reason file (the reason codes of
// [envelope.Reason], medium.FileError reasons, "bad_body", "wrong_kind",
// "replay", "bad_header") and a log line, and the agent goes on.
//
// # Exactly once and restarts
//
// The ledger in the replica file records every applied envelope and request
// in the transaction that applies them; see package replica. A duplicate
// envelope (same id, any file name) never takes effect again and gets no
// second answer: the copy is removed (the DMZ re-sends requests in a new
// envelope, whose requests the ledger answers with their stored results,
// so a copy is the medium's or a replay). A re-send names the envelope it
// replaces; if that one never arrived, its place in the channel is
// withdrawn (package replica). On start, Run first
// re-publishes sealed result envelopes (same bytes) and re-seals applied
// envelopes whose results were not sealed, so a crash anywhere loses no
// answer.
//
// # Stopping
//
// When the context given to Run ends, the receiver stops claiming files,
// the other stages finish what they hold, and Run returns nil. Work still
// unfinished after the drain timeout is abandoned safely: the ledger and
// the inbox resume it at the next start.
//
// # Keys
//
// New loads the key directory as a keys.Ring (refusing loose private key
// permissions); Reload (SIGHUP) loads it again and swaps it in whole, or
// keeps the keys in force if it does not load. Every envelope is opened
// with the ring (any valid DMZ key; revoked_key, key_not_valid) and sealed
// with the own key in force and the peer's newest accepted key; see
// docs/keys.md.
package intranet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/age"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/sync/errgroup"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/config"
	"github.com/ferrybridge/ferry/internal/envelope"
	"github.com/ferrybridge/ferry/internal/keys"
	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/media"
	"github.com/ferrybridge/ferry/internal/metrics"
	"github.com/ferrybridge/ferry/internal/ops"
	"github.com/ferrybridge/ferry/internal/replica"
	"github.com/ferrybridge/ferry/internal/silence"
	"github.com/ferrybridge/ferry/internal/status"
)

// Capacities of the channels between stages: enough to keep every stage
// busy, small enough that a slow stage holds files on the medium rather
// than envelopes in memory.
const (
	openQueue    = 4
	applyQueue   = 4
	sealQueue    = 16
	publishQueue = 4
)

// openTimeout bounds opening the replica in New.
const openTimeout = 30 * time.Second

// Constant log attribute keys.
const (
	logFile       = "file"
	logEnvelope   = "envelope"
	logSeq        = "seq"
	logChannel    = "channel"
	logReason     = "reason"
	logError      = "error"
	logRequests   = "requests"
	logDone       = "done"
	logRejected   = "rejected"
	logFailed     = "failed"
	logResults    = "results"
	logAcks       = "acks"
	logUnsealed   = "unsealed"
	logUnpub      = "unpublished"
	logNextSeq    = "next_seq"
	logState      = "state"
	logRetryWait  = "retry_in"
	logPolicy     = "policy_sha256"
	logPrevious   = "previous_sha256"
	logSigners    = "signers"
	logOperations = "operations"
	logOperation  = "operation"
	logClient     = "client"
	logScope      = "scope"
	logCatalogue  = "catalogue"
	logRequest    = "request"
	logDecision   = "decision"
	logAdmin      = "admin"
	logStatus     = "status"
	logHeld       = "held"
	logDecided    = "decided"
	logExpired    = "expired"
	logAnswered   = "answered"
	logNotRecvd   = "not_received"
)

// Agent is the intranet agent.
type Agent struct {
	cfg *Config
	log *slog.Logger
	// zone and peer carry the zones' names only; the keys in force are
	// in ring.
	zone *keys.Zone
	peer *keys.Peer
	// ring holds the keys in force: New loads it, Reload replaces it
	// whole, openEnvelope and sealKeys read it.
	ring atomic.Pointer[keys.Ring]
	db   *replica.DB
	// auditLog is the zone's audit log; the ledger stages the entries it
	// drains.
	auditLog *audit.Log
	// auditX witnesses the DMZ's audit log and has this one witnessed.
	auditX *audit.Exchange
	inbox  *medium.Inbox
	recv   medium.Receiver
	pub    medium.Publisher
	media  []io.Closer // what releases recv and pub; closed by Close
	now    func() time.Time

	// policy is the policy in force; Reload replaces it only with one
	// that passed every check.
	policy atomic.Pointer[activePolicy]

	// catalogueChanged fires when a new policy is in force, so that the
	// seal stage sends its catalogue to the DMZ.
	catalogueChanged chan struct{}

	// decisionsReady fires when held requests were decided or expired,
	// so that the seal stage sends their final results.
	decisionsReady chan struct{}

	// ops is what operators watch the agent through: metrics, status,
	// alarms (ops.go).
	ops *ops.Ops

	// rateLimited counts the requests rate limits refused; see Stats.
	rateLimited atomic.Uint64

	// peerWatch notices when no authentic envelope has come from the DMZ
	// for peer_silence.
	peerWatch *silence.Watch

	running   atomic.Bool
	stopping  atomic.Bool // set when Run's ctx ends
	ready     chan struct{}
	readyOnce sync.Once

	// recovered holds the inbox files of the envelopes whose answers Run
	// resumed at start; only the apply stage uses it. The receiver sends
	// these files again, and such a copy is not a re-delivery: its answer
	// is already on its way, even if it has been published meanwhile.
	recovered map[string]string // file → envelope id
}

// New validates cfg, loads the zone's keys (refusing private key files with
// loose permissions), the admins' public keys and the policy (refusing one
// that fewer than policy_signatures distinct admins signed, and a bad one
// with its file and line), opens the inbox, the media and the replica, and returns an agent
// ready to Run.
func New(cfg *Config, logger *slog.Logger) (*Agent, error) {
	if cfg == nil {
		return nil, errors.New("intranet: no config")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ring, err := keys.LoadAgentRing(cfg.Keys, cfg.Zone, cfg.Peer)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{cfg.Approvals, filepath.Join(cfg.Approvals, RefusedDir)} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("approvals directory: %w", err)
		}
	}
	ak, err := keys.LoadAudit(cfg.Keys, cfg.Zone)
	if err != nil {
		return nil, err
	}
	peerAudit, err := keys.LoadPeerAudit(cfg.Keys, cfg.Peer)
	if err != nil {
		return nil, err
	}
	// a is made below; the snapshots are only taken once Run runs.
	var a *Agent
	o, err := ops.New(ops.Config{Agent: metrics.Intranet, Zone: cfg.Zone, Peer: cfg.Peer, Admin: cfg.Admin, Alarms: cfg.Alarms,
		StateDir: filepath.Dir(cfg.AuditLog), Quarantine: cfg.Quarantine, Audit: ak, PeerAudit: peerAudit, Logger: logger,
		Collect: func(ctx context.Context, s *status.Snapshot) error { return a.collect(ctx, s) }})
	if err != nil {
		return nil, err
	}
	made := false
	defer func() {
		if !made {
			o.Close()
		}
	}()
	inbox, err := medium.OpenInbox(o.Inbox(medium.InboxConfig{Dir: cfg.Inbox, QuarantineDir: cfg.Quarantine, Logger: logger}))
	if err != nil {
		return nil, fmt.Errorf("open inbox: %w", err)
	}
	recv, recvCloser, err := media.NewReceiver(cfg.Receive, inbox, logger)
	if err != nil {
		return nil, fmt.Errorf("open request medium: %w", err)
	}
	pub, pubCloser, err := media.NewPublisher(cfg.Send, logger)
	if err != nil {
		recvCloser.Close()
		return nil, fmt.Errorf("open result medium: %w", err)
	}
	defer func() {
		if !made {
			recvCloser.Close()
			pubCloser.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	db, err := replica.Open(ctx, cfg.Replica)
	if err != nil {
		return nil, err
	}
	db.SetMaxSeqJump(cfg.MaxSeqJump)
	auditLog, err := audit.OpenZone(ctx, cfg.AuditLog, cfg.Zone, ak.Signer, ak.HMACKey, db.EnableAudit)
	if err != nil {
		db.Close()
		return nil, err
	}
	auditX, err := audit.NewExchange(ctx, auditLog, ak.Verifier, peerAudit, logger)
	if err != nil {
		auditLog.Close()
		db.Close()
		return nil, err
	}
	active, err := loadPolicy(ctx, cfg.Policy, cfg.Admins, cfg.PolicySigs, db)
	if err != nil {
		auditLog.Close()
		db.Close()
		return nil, err
	}
	a = &Agent{
		ops:      o,
		cfg:      cfg,
		log:      logger,
		zone:     &keys.Zone{Name: ring.Zone},
		peer:     &keys.Peer{Name: ring.Peer},
		db:       db,
		auditLog: auditLog,
		auditX:   auditX,
		inbox:    inbox,
		recv:     recv,
		pub:      pub,
		now:      time.Now,
		ready:    make(chan struct{}),
		media:    []io.Closer{recvCloser, pubCloser},
	}
	a.peerWatch = silence.New(RequestsChannel, time.Duration(cfg.PeerSilence), time.Now(), logger)
	a.catalogueChanged = make(chan struct{}, 1)
	a.decisionsReady = make(chan struct{}, 1)
	a.setRing(ring)
	a.setPolicy(active)
	a.auditPolicy(ctx, "policy.loaded", active, "at start")
	logger.Info("policy in force", slog.String(logPolicy, active.sha256), slog.Int(logOperations, len(active.pol.Operations)),
		slog.Any(logSigners, active.signers))
	made = true
	return a, nil
}

// Reload reads the config file, the key directory, the admins' keys, the
// policy file and its signatures again and puts the new keys and policy,
// those admin keys and the config's alarm thresholds in force if, and
// only if, all of them pass every check the agent made at start (a change
// to any other setting of the config is logged as needing a restart). Removing an admin's NAME.pub and reloading therefore
// revokes the admin for policies and approvals alike; revoking a peer key
// (ferryctl keys revoke) or accepting a new one takes effect the same way.
// Otherwise it returns the reason and the keys and the policy in force
// stay. Requests already being applied finish under the policy they
// started with. SIGHUP calls it (see package daemon).
func (a *Agent) Reload() error {
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	old := a.policy.Load()
	cfg := a.cfg
	if a.cfg.file != "" {
		c, err := LoadConfig(a.cfg.file)
		if err != nil {
			a.log.Error("config reload refused; the previous configuration, keys and policy stay in force", slog.String(logError, err.Error()))
			return err
		}
		cfg = c
	}
	ring, err := keys.LoadAgentRing(a.cfg.Keys, a.cfg.Zone, a.cfg.Peer)
	if err != nil {
		a.log.Error("key reload refused; the previous keys and policy stay in force", slog.String(logError, err.Error()))
		return err
	}
	active, err := loadPolicy(ctx, a.cfg.Policy, a.cfg.Admins, a.cfg.PolicySigs, a.db)
	if err != nil {
		a.log.Error("policy reload refused; the previous policy stays in force", slog.String(logError, err.Error()),
			slog.String(logPolicy, old.sha256))
		a.auditPolicy(ctx, "policy.refused", old, "reload refused; the policy in force stays")
		return err
	}
	if restart := config.Changed(a.cfg, cfg, "alarms"); len(restart) > 0 {
		a.log.Warn("changed settings take effect at the next restart", slog.Any(logSettings, restart))
	}
	a.ops.SetAlarms(cfg.Alarms)
	a.setRing(ring)
	a.setPolicy(active)
	a.auditPolicy(ctx, "policy.loaded", active, "reloaded, replacing sha256 "+old.sha256)
	a.log.Info("policy reloaded", slog.String(logPolicy, active.sha256), slog.String(logPrevious, old.sha256),
		slog.Int(logOperations, len(active.pol.Operations)), slog.Any(logSigners, active.signers))
	return nil
}

// auditPolicy records a policy put in force (or a reload refused, with
// the policy that stays) in the audit log, with the admins who signed it.
func (a *Agent) auditPolicy(ctx context.Context, decision string, p *activePolicy, detail string) {
	e := audit.Entry{Event: audit.EventAdmin, Decision: decision, Actor: strings.Join(p.signers, ","),
		Count: int64(len(p.pol.Operations)), Detail: "policy sha256 " + p.sha256 + "; " + detail}
	if err := a.db.Audit(ctx, e); err != nil {
		a.log.Error("audit of the policy failed", slog.String(logError, err.Error()))
	}
}

// setPolicy puts a checked policy in force and queues its catalogue for
// the DMZ.
func (a *Agent) setPolicy(active *activePolicy) {
	a.policy.Store(active)
	select {
	case a.catalogueChanged <- struct{}{}:
	default:
	}
}

// Stats are counters of a running agent, for metrics.
type Stats struct {
	// RateLimited counts the requests a rate limit refused since start.
	RateLimited uint64
	// PeerHeard is when the last authentic envelope came from the DMZ
	// (or when the agent was made, before the first), and PeerSilent
	// whether that is longer ago than peer_silence.
	PeerHeard  time.Time
	PeerSilent bool
}

// Stats returns the agent's counters.
func (a *Agent) Stats() Stats {
	heard, silent := a.peerWatch.State()
	return Stats{RateLimited: a.rateLimited.Load(), PeerHeard: heard, PeerSilent: silent}
}

// Ready returns a channel that is closed once Run has recovered unfinished
// work and started its stages.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Alive reports whether the agent's state answers: the replica, within a
// second. The service watchdog is fed only while it does.
func (a *Agent) Alive(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return a.db.Ping(ctx)
}

// Close releases the replica database and the media. Call it once Run
// has returned.
func (a *Agent) Close() error {
	a.ops.Close()
	errs := []error{a.auditLog.Close(), a.db.Close()}
	for _, c := range a.media {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// Run serves until ctx ends, then drains in-flight work (within the drain
// timeout) and returns nil. It returns an error if the replica database or
// the ledger fails, or if sealing fails; the inbox and the ledger let a
// restarted agent resume.
func (a *Agent) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("intranet: agent is already running")
	}
	defer a.running.Store(false)
	defer context.AfterFunc(ctx, func() { a.stopping.Store(true) })()

	unpublished, err := a.db.Unpublished(ctx)
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	pending, err := a.db.Pending(ctx)
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	next, prev, err := a.db.Channel(ctx, ResultsChannel)
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	a.recovered = make(map[string]string)
	for _, p := range pending {
		a.recovered[p.File] = p.ID
	}
	for _, o := range unpublished {
		for i, f := range o.Files {
			a.recovered[f] = o.Covers[i]
		}
	}
	a.log.Info("intranet agent starting",
		slog.Int(logUnpub, len(unpublished)), slog.Int(logUnsealed, len(pending)), slog.Uint64(logNextSeq, next))

	// Stages run on work, which outlives ctx by the drain timeout so that
	// in-flight envelopes finish; a stage error cancels it at once.
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	g, work := errgroup.WithContext(base)
	var drainExpired atomic.Bool
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-finished:
			return
		case <-ctx.Done():
		}
		t := time.NewTimer(time.Duration(a.cfg.DrainTimeout))
		defer t.Stop()
		select {
		case <-finished:
		case <-t.C:
			drainExpired.Store(true)
			cancelBase()
		}
	}()
	// The receiver alone stops as soon as ctx ends.
	recvCtx, cancelRecv := context.WithCancel(work)
	defer cancelRecv()
	stopRecv := context.AfterFunc(ctx, cancelRecv)
	defer stopRecv()

	names := make(chan string, openQueue)
	opened := make(chan *openedEnvelope, applyQueue)
	toSeal := make(chan sealItem, sealQueue)
	toPublish := make(chan *replica.Outgoing, publishQueue)

	g.Go(func() error {
		defer close(names)
		err := a.recv.Run(recvCtx, names)
		if recvCtx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errors.New("receiver stopped")
		}
		return fmt.Errorf("receive: %w", err)
	})
	g.Go(func() error { return a.openStage(work, names, opened) })
	g.Go(func() error { return a.applyStage(work, opened, toSeal) })
	g.Go(func() error {
		return a.sealStage(work, toSeal, toPublish, pendingItems(pending), next, prev)
	})
	g.Go(func() error { return a.publishStage(work, toPublish, unpublished) })
	g.Go(func() error { return a.approvalStage(recvCtx) })
	g.Go(func() error { return a.peerWatch.Run(recvCtx, a.now) })
	// The audit log drains and signs until the stages are done, then
	// once more: everything they decided is in the log.
	auditCtx, stopAudit := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAudit()
	auditDone := make(chan error, 1)
	go func() {
		auditDone <- a.auditLog.Run(auditCtx, audit.RunConfig{Sources: []audit.Source{a.db.AuditSource()},
			Checkpoint: time.Duration(a.cfg.AuditCheckpoint), Retention: time.Duration(a.cfg.AuditRetention),
			Journal: filepath.Join(a.cfg.Keys, audit.JournalFile), Logger: a.log})
	}()
	// The admin socket and the alarms, until the very end.
	opsCtx, stopOps := context.WithCancel(context.WithoutCancel(ctx))
	defer stopOps()
	opsDone := make(chan error, 1)
	go func() { opsDone <- a.ops.Run(opsCtx) }()
	a.readyOnce.Do(func() { close(a.ready) })
	// A snapshot now, so that the status says serving from the start.
	a.ops.Monitor.Refresh(opsCtx)

	err = g.Wait()
	stopAudit()
	<-auditDone
	stopOps()
	if oerr := <-opsDone; oerr != nil {
		a.log.Error("admin socket failed", slog.String(logError, oerr.Error()))
		err = errors.Join(err, oerr)
	}
	if drainExpired.Load() {
		a.log.Warn("drain timeout passed: unfinished work resumes at the next start")
		return nil
	}
	if err != nil && !(ctx.Err() != nil && errors.Is(err, context.Canceled)) {
		a.log.Error("intranet agent failed", slog.String(logError, err.Error()))
		return err
	}
	return nil
}

func pendingItems(p []replica.Pending) []sealItem {
	items := make([]sealItem, len(p))
	for i, e := range p {
		items[i] = sealItem{id: e.ID, file: e.File, results: e.Results}
	}
	return items
}

// Log attribute keys of the key ring and of Reload.
const (
	logSettings = "settings"
	logKeyID    = "key_id"
	logPeerKeys = "peer_keys"
)

// setRing puts a loaded key ring in force and logs the keys it holds.
func (a *Agent) setRing(r *keys.Ring) {
	a.ring.Store(r)
	a.log.Info("keys in force", slog.String(logKeyID, r.SignerAt(time.Now()).ID()), slog.Any(logPeerKeys, r.PeerIDs()))
}

// openEnvelope opens a request envelope with the keys in force: any valid
// key of the peer's, and any own age identity that still decrypts.
func (a *Agent) openEnvelope(data []byte) (*envelope.Opened, error) {
	o := envelope.Opener{Ring: a.ring.Load()}
	return o.Open(data)
}

// sealKeys returns what an envelope created at now is sealed with (see
// keys.Ring.SealKeys).
func (a *Agent) sealKeys(now time.Time) (note.Signer, *age.X25519Recipient) {
	return a.ring.Load().SealKeys(now)
}
