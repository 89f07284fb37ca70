// Package dmz is the DMZ agent: the HTTP API citizens' requests arrive on,
// the durable intake, the batcher that seals accepted requests into request
// envelopes for the intranet, and the ingester that stores the results the
// intranet sends back. The HTTP API is specified in docs/api.md.
//
// # Loops
//
// [Agent.Run] runs, each in its own goroutine:
//
//	http       the API server (net/http) on the listener New opened
//	intake     queue.Intake: group commit of accepted requests
//	batcher    the one sealer of the requests channel: reads unsealed
//	           requests after each commit, seals up to batch.max_requests
//	           of them (or fewer once the oldest waited batch.max_delay)
//	           into one envelope with the channel's next sequence number,
//	           and stores it with queue.Spool.StoreSealed; once a second it
//	           also seals an envelope asking about held and orphaned
//	           requests that are due (see Held requests, Expiry); it
//	           expires envelopes past their TTL, makes dead letters, and
//	           re-sends (see Re-sending); and
//	           it seals a heartbeat when the channel was quiet for
//	           heartbeat
//	publisher  publishes stored envelopes to the request medium in sequence
//	           order and marks them published
//	receiver   the result medium's Receiver, claiming files into the inbox
//	ingester   opens each claimed result envelope and applies it
//	backlog    counts the spool's backlog and unacknowledged envelopes for
//	           the limits, every 200ms (see Backpressure)
//
// # Subject
//
// A POST may carry a subject, the citizen identity the calling platform
// authenticated. The API checks only its shape (batch.ValidSubject,
// bad_subject otherwise), the spool stores it with the request and covers
// it by the idempotency check, and the batcher puts it into the request
// envelope, where the intranet's policy decides what it allows. It is
// personal data: no log line, error answer or status answer contains it.
//
// # Catalogue
//
// The intranet is the policy authority. It sends its operation catalogue
// (policy.Catalogue: operations, parameter rules, subject bindings, no
// SQL) inside results envelopes. The ingester parses each one
// (policy.ParseCatalogue) and, if the envelope's sequence number is higher
// than the stored catalogue's, stores it in the spool in the envelope's
// transaction and puts it in force at once (an atomic pointer swap); a
// catalogue that does not parse is logged and the current one stays. At
// start the agent uses the stored catalogue, else the config's policy file
// (a bootstrap), else nothing: then POST /v1/requests and GET
// /v1/operations answer 503 catalogue_unavailable and /readyz 503 until a
// catalogue arrives. Every check of a request is policy.Evaluate on the
// current catalogue; the DMZ applies no rate limits (the intranet does).
//
// # Held requests
//
// The intranet may hold a write for an admin's approval: it answers with a
// result of status held (reason approval_required) in the envelope that
// acknowledges the request's envelope, and sends the final result (done;
// rejected with approval_denied or approval_expired; failed) later, in an
// envelope that may acknowledge nothing. The spool keeps the request held
// (queue.Spool.ApplyResults): not final, never expired by the DMZ, and a
// held result arriving after the final one is ignored. GET shows held with
// its reason and message; a long poll ends when its request becomes held
// or final, and a poll on a request already held waits for the final
// result. The "results applied" log line counts final and held requests.
//
// The envelope carrying a final result acknowledges nothing, so if it is
// lost on the medium nobody sends it again. The batcher therefore asks
// again: about held requests held, or last asked about, longer than
// resend_after ago (queue.Spool.AskDue), unless the envelope that last
// asked about them is still open, it seals a requests envelope with no
// requests and their ids in batch.Requests.Query (at most batch.MaxQuery),
// stores it with queue.Spool.StoreQuery (which records the asking) and
// hands it to the publisher, with an INFO line "asking the intranet about
// requests". It is sealed in the channel's sequence like any other
// envelope, and published, re-sent, acknowledged and expired like one;
// its expiry changes no request. The intranet answers each request it has
// decided with its stored final result in the envelope acknowledging the
// query, which the ingester applies like any final result. The batcher is
// the one sealer of the request channel, so it seals the queries too.
//
// # Expiry
//
// A request envelope expires envelope_ttl after it was sealed (a re-send
// keeps the expiry of the envelope it replaces). The DMZ never calls a
// request expired itself: the intranet may have applied the envelope just
// before it expired and only the answer was lost. When an envelope expires
// (queue.Spool.Expire), or an admin drops it, its requests without a
// result are orphaned: they stay queued or sent, lose their parameters,
// and are asked about at once, the same way as held requests. The
// intranet answers the result it stored, or settles a request it never
// received as expired (reason not_received) and never applies it after
// that, so the first final status a client sees is the only one.
//
// # Backpressure
//
// The config's limits bound what the DMZ holds for the intranet: the
// requests accepted and not yet final or held (limits.max_backlog) and the
// request envelopes not yet acknowledged (limits.max_unacked). The agent
// counts both when it starts and then every 200ms (queue.Spool.Backlog,
// indexed counts), and between counts adds the requests the API stored
// since the count and those it admitted and is storing, so that the API
// never takes the backlog past max_backlog; max_unacked is compared with
// the last count. A new request that would exceed a limit gets 503
// overloaded with Retry-After (limits.retry_after) and nothing is stored,
// except that a retry with an idempotency key the spool holds gets its
// stored answer; status reads are served as always. Reaching a limit puts
// the agent in the overloaded state, logged once with a WARN line, during
// which /readyz answers 503; it ends, with an INFO line giving the number
// refused, once both figures are back at or below a tenth under their
// limits. Agent.Backpressure reports the state. backpressure.go has the
// details and the bounds.
//
// # Re-sending
//
// The agent never publishes an envelope twice (except, after a crash, one
// stored but not known to be published). When the intranet has not
// acknowledged a published envelope after resend_after (doubling up to
// resend_max), or at once when the intranet's received report lists it
// missing (queue.Spool.ResendMissing, once per envelope), the batcher
// seals what it carried that still needs an answer into a new envelope
// whose body names it in replaces (queue.Spool.StoreResend): its requests
// still queued or sent, the held requests a query asked about, or nothing
// for a heartbeat. The intranet then treats the replaced sequence number
// as filled and refuses the old envelope if it arrives late, and answers
// requests it applied before from its ledger, so a lost result envelope
// is made good by the answer to the re-send: one timer, in the DMZ,
// drives retransmission both ways. After max_resends the envelope is a
// dead letter (ferryctl queue retry, drop).
//
// # Bad files
//
// A result file that cannot be read, opened (envelope.Reason: bad
// signature, expired, misaddressed, truncated, oversized…) or decoded, that
// is not a results envelope, or that is out of its channel's order
// (reuses another envelope's sequence number, jumps past max_seq_jump,
// breaks the hash chain) is moved to the quarantine directory with a .reason file and a log
// line, and the agent goes on with the next file. A copy of an envelope
// already applied is removed with a log line.
//
// # Stopping
//
// When the context given to Run ends, /readyz turns 503 and long polls
// return at once; the server stops accepting and waits (up to
// drain_timeout) for requests in flight; the intake commits what is
// waiting; the batcher seals every unsealed request and the publisher
// publishes them; then the receiver and ingester stop and Run returns nil.
// Whatever the drain timeout cuts off is safe in the spool and resumes at
// the next start: stored envelopes not known to be published are
// published, byte for byte.
//
// # Keys
//
// New loads the key directory as a keys.Ring (refusing loose private key
// permissions); Reload (SIGHUP) loads it again and swaps it in whole, or
// keeps the keys in force if it does not load. Every envelope is opened
// with the ring (any valid intranet key; revoked_key, key_not_valid) and sealed
// with the own key in force and the peer's newest accepted key; see
// docs/keys.md.
package dmz

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/age"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/callback"
	"github.com/ferrybridge/ferry/internal/config"
	"github.com/ferrybridge/ferry/internal/envelope"
	"github.com/ferrybridge/ferry/internal/keys"
	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/media"
	"github.com/ferrybridge/ferry/internal/metrics"
	"github.com/ferrybridge/ferry/internal/ops"
	"github.com/ferrybridge/ferry/internal/queue"
	"github.com/ferrybridge/ferry/internal/silence"
	"github.com/ferrybridge/ferry/internal/status"
	"golang.org/x/net/netutil"
	"golang.org/x/time/rate"
)

// openTimeout bounds opening the spool in New.
const openTimeout = 30 * time.Second

// publishQueue is the capacity between batcher and publisher: enough to
// overlap sealing with publishing, small enough to keep envelopes in the
// spool rather than in memory when the medium is slow.
const publishQueue = 4

// Constant log attribute keys.
const (
	logRequest  = "request_id"
	logEnvelope = "envelope"
	logClient   = "client"
	logReason   = "reason"
	logError    = "error"
	logFile     = "file"
	logSeq      = "seq"
	logCount    = "requests"
	logOp       = "operation"
	logStatus   = "status"
	logAddr     = "addr"
	logAcked    = "acked"
	logUnknown  = "unknown"
	logStale    = "stale"
	// logFinal and logHeld count the requests a results envelope made
	// final and held.
	logFinal    = "final"
	logHeld     = "held"
	logNoResult = "no_result"
	// logOperations counts a catalogue's operations; logSource says where
	// it came from.
	logOperations = "operations"
	logSource     = "source"
)

// Agent is the DMZ agent.
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
	// clients and limits are the API clients and the limits in force;
	// Reload replaces them.
	clients atomic.Pointer[[]client]
	limits  atomic.Pointer[LimitsConfig]
	// edgeRules, ipBuckets, edgeLog and waits are the edge's (edge.go).
	edgeRules atomic.Pointer[edgeRules]
	ipBuckets *buckets
	edgeLog   *logEvery
	waits     waitCap
	// tls is the listener's TLS material, nil for plain HTTP.
	tls *serverTLS
	// callbacks are the result callbacks' senders by client; callbackWake
	// wakes their loop (callbacks.go).
	callbacks    atomic.Pointer[callbackSenders]
	callbackWake chan struct{}
	// callbackMetrics counts callback deliveries by outcome.
	callbackMetrics *callback.Metrics
	// callbackRetry is the first wait before a failed callback is tried
	// again (callbackRetryMin; tests shorten it).
	callbackRetry time.Duration
	spool         *queue.Spool
	intake        *queue.Intake
	// auditLog is the zone's audit log; the spool stages entries that
	// it drains, refused records API refusals off the request path.
	auditLog *audit.Log
	// auditX witnesses the intranet's audit log and has this one
	// witnessed.
	auditX  *audit.Exchange
	refused *refusals
	inbox   *medium.Inbox
	recv    medium.Receiver
	pub     medium.Publisher
	media   []io.Closer // what releases recv and pub; closed by Close
	ln      net.Listener
	srv     *http.Server
	handler http.Handler
	waiters *waiters
	now     func() time.Time
	// gate refuses new requests while the spool is over its limits.
	gate *gate
	// peerWatch notices when no authentic envelope has come from the
	// intranet for peer_silence.
	peerWatch *silence.Watch

	// ops is what operators watch the agent through: metrics, status,
	// alarms (ops.go).
	ops *ops.Ops

	// checker is the catalogue requests are checked against; nil until
	// one is known.
	checker atomic.Pointer[checker]

	started atomic.Bool
	ready   atomic.Bool
	// serving is closed once Run serves the API (Ready).
	serving     chan struct{}
	servingOnce sync.Once
	stopping    chan struct{} // closed when draining starts
	stopOnce    sync.Once
	closeOnce   sync.Once
	closeErr    error
}

// client is an API client with its token hash.
type client struct {
	name string
	hash [sha256.Size]byte
	ops  map[string]bool // nil: every operation of the catalogue
	// lim is the client's token bucket, nil for none.
	lim *rate.Limiter
	// tlsName, when set, is the name its certificate must have.
	tlsName string
}

// newClients makes the API clients of a config. A client of old (the
// clients in force, on reload) whose rate is unchanged keeps its bucket,
// so that a reload gives nobody a fresh burst.
func newClients(cfgs []ClientConfig, old []client) ([]client, error) {
	clients := make([]client, 0, len(cfgs))
	for i, c := range cfgs {
		cl := client{name: c.Name, tlsName: c.TLSName}
		if c.Rate.PerSecond > 0 {
			cl.lim = rate.NewLimiter(rate.Limit(c.Rate.PerSecond), c.Rate.Burst)
			for _, o := range old {
				if o.name == c.Name && o.lim != nil && o.lim.Limit() == cl.lim.Limit() && o.lim.Burst() == cl.lim.Burst() {
					cl.lim = o.lim
				}
			}
		}
		if _, err := hex.Decode(cl.hash[:], []byte(c.TokenSHA256)); err != nil {
			return nil, fmt.Errorf("clients[%d].token_sha256: %w", i, err)
		}
		if len(c.Operations) > 0 {
			// Checked against each catalogue as it comes into force
			// (warnClientOps): the catalogue is not known yet.
			cl.ops = map[string]bool{}
			for _, op := range c.Operations {
				cl.ops[op] = true
			}
		}
		clients = append(clients, cl)
	}
	return clients, nil
}

// New validates cfg, loads the zone's keys (refusing private key files with
// loose permissions), opens the spool, the inbox and the media, loads the
// stored catalogue or else the policy file cfg names (if any), and opens
// the API listener, so that Addr works before Run.
func New(cfg *Config, logger *slog.Logger) (*Agent, error) {
	if cfg == nil {
		return nil, errors.New("dmz: no config")
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
	clients, err := newClients(cfg.Clients, nil)
	if err != nil {
		return nil, err
	}
	rules, err := newEdgeRules(cfg.Limits)
	if err != nil {
		return nil, err
	}
	senders, err := newCallbackSenders(cfg.Clients, logger)
	if err != nil {
		return nil, err
	}
	var stls *serverTLS
	if cfg.TLS.Enabled() {
		m, err := loadTLS(cfg.TLS)
		if err != nil {
			return nil, err
		}
		stls = &serverTLS{}
		stls.cur.Store(m)
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
	cbMetrics := callback.NewMetrics()
	o, err := ops.New(ops.Config{Agent: metrics.DMZ, Zone: cfg.Zone, Peer: cfg.Peer, Admin: cfg.Admin, Alarms: cfg.Alarms,
		Collectors: []prometheus.Collector{cbMetrics},
		StateDir:   filepath.Dir(cfg.Spool), Quarantine: cfg.Quarantine, Audit: ak, PeerAudit: peerAudit, Logger: logger,
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
		return nil, fmt.Errorf("open result medium: %w", err)
	}
	pub, pubCloser, err := media.NewPublisher(cfg.Send, logger)
	if err != nil {
		recvCloser.Close()
		return nil, fmt.Errorf("open request medium: %w", err)
	}
	defer func() {
		if !made {
			recvCloser.Close()
			pubCloser.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	spool, err := queue.Open(ctx, cfg.Spool)
	if err != nil {
		return nil, err
	}
	spool.SetMaxSeqJump(cfg.MaxSeqJump)
	if err := spool.SetCallbackClients(ctx, senders.names()); err != nil {
		spool.Close()
		return nil, err
	}
	auditLog, err := audit.OpenZone(ctx, cfg.AuditLog, cfg.Zone, ak.Signer, ak.HMACKey, spool.EnableAudit)
	if err != nil {
		spool.Close()
		return nil, err
	}
	closeState := func() { auditLog.Close(); spool.Close() }
	auditX, err := audit.NewExchange(ctx, auditLog, ak.Verifier, peerAudit, logger)
	if err != nil {
		closeState()
		return nil, err
	}
	ck, err := initialChecker(ctx, cfg, spool, logger)
	if err != nil {
		closeState()
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		closeState()
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	ln = netutil.LimitListener(ln, cfg.Limits.MaxConnections)
	if stls != nil {
		ln = tls.NewListener(ln, stls.config())
	}
	a = &Agent{
		ops:             o,
		cfg:             cfg,
		log:             logger,
		zone:            &keys.Zone{Name: ring.Zone},
		peer:            &keys.Peer{Name: ring.Peer},
		spool:           spool,
		auditLog:        auditLog,
		auditX:          auditX,
		refused:         newRefusals(),
		intake:          queue.NewIntake(spool, queue.IntakeConfig{}),
		inbox:           inbox,
		recv:            recv,
		pub:             pub,
		ln:              ln,
		tls:             stls,
		ipBuckets:       newBuckets(maxBuckets),
		edgeLog:         newLogEvery(time.Minute),
		callbackWake:    make(chan struct{}, 1),
		callbackRetry:   callbackRetryMin,
		callbackMetrics: cbMetrics,
		waiters:         newWaiters(),
		serving:         make(chan struct{}),
		now:             time.Now,
		stopping:        make(chan struct{}),
		media:           []io.Closer{recvCloser, pubCloser},
	}
	a.gate = newGate(cfg.Limits, spool, logger, a.now)
	a.peerWatch = silence.New(ResultsChannel, time.Duration(cfg.PeerSilence), time.Now(), logger)
	// Counted once before the API serves, so that the limits hold from
	// the first request.
	if err := a.gate.refresh(ctx); err != nil {
		ln.Close()
		closeState()
		return nil, err
	}
	a.setRing(ring)
	a.clients.Store(&clients)
	a.limits.Store(&cfg.Limits)
	a.edgeRules.Store(rules)
	a.callbacks.Store(&senders)
	if ck != nil {
		a.checker.Store(ck)
		a.warnClientOps(ck)
	}
	a.handler = a.edge(a.routes())
	// Timeouts against slow clients (slowloris): the headers within
	// 10 s, the whole request within 30 s, the answer (a long poll
	// included) within MaxWait and 15 s more; an idle keep-alive
	// connection is closed after 2 min. The TLS handshake counts
	// against ReadHeaderTimeout.
	a.srv = &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       requestReadTimeout,
		WriteTimeout:      MaxWait + 15*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          log.New(&serverLog{a: a}, "", 0),
	}
	made = true
	return a, nil
}

// Reload reads the config file and the key directory again. It puts in
// force, all together, the keys (if they load with every check New made:
// private key permissions, zone names, rotation statements, the
// peer-keys file, an unrevoked peer key), the API clients and their
// tokens, the limits and the alarms' thresholds. If the config or the
// keys do not load, it logs and returns the reason and everything in
// force stays. A change to any other setting is logged as needing a
// restart, and the running value stays. Envelopes being opened or sealed
// finish with the keys they started with; a request being checked, with
// the client it was authenticated as. SIGHUP calls it (see package
// daemon).
func (a *Agent) Reload() error {
	cfg := a.cfg
	if a.cfg.file != "" {
		c, err := LoadConfig(a.cfg.file)
		if err != nil {
			a.log.Error("config reload refused; the previous configuration stays in force", slog.String(logError, err.Error()))
			return err
		}
		cfg = c
	}
	r, err := keys.LoadAgentRing(a.cfg.Keys, a.cfg.Zone, a.cfg.Peer)
	if err != nil {
		a.log.Error("key reload refused; the previous keys stay in force", slog.String(logError, err.Error()))
		return err
	}
	clients, err := newClients(cfg.Clients, *a.clients.Load())
	if err != nil {
		a.log.Error("config reload refused; the previous configuration stays in force", slog.String(logError, err.Error()))
		return err
	}
	rules, err := newEdgeRules(cfg.Limits)
	if err != nil {
		a.log.Error("config reload refused; the previous configuration stays in force", slog.String(logError, err.Error()))
		return err
	}
	senders, err := newCallbackSenders(cfg.Clients, a.log)
	if err != nil {
		a.log.Error("config reload refused; the previous configuration stays in force", slog.String(logError, err.Error()))
		return err
	}
	var tm *tlsMaterial
	if a.tls != nil && cfg.TLS.Enabled() {
		if tm, err = loadTLS(cfg.TLS); err != nil {
			a.log.Error("TLS reload refused; the previous configuration stays in force", slog.String(logError, err.Error()))
			return err
		}
	}
	restart := config.Changed(a.cfg, cfg, reloadable...)
	if cfg.Limits.MaxConnections != a.cfg.Limits.MaxConnections {
		restart = append(restart, "limits.max_connections")
	}
	if (a.tls != nil) != cfg.TLS.Enabled() {
		// Turning TLS on or off changes the listener.
		restart = append(restart, "tls")
	}
	if len(restart) > 0 {
		a.log.Warn("changed settings take effect at the next restart", slog.Any(logSettings, restart))
	}
	a.setRing(r)
	a.clients.Store(&clients)
	a.limits.Store(&cfg.Limits)
	a.edgeRules.Store(rules)
	// The callback clients are marked first: a request of a client whose
	// callback was just added becomes due from its next change on.
	if err := a.spool.SetCallbackClients(context.Background(), senders.names()); err != nil {
		a.log.Error("callback clients not updated; the previous ones stay", slog.String(logError, err.Error()))
		senders.close()
	} else {
		a.callbacks.Swap(&senders).close()
	}
	if tm != nil {
		a.tls.cur.Store(tm)
	}
	a.gate.setLimits(cfg.Limits)
	a.ops.SetAlarms(cfg.Alarms)
	a.warnClientOps(a.current())
	a.log.Info("configuration reloaded", slog.Int(logClients, len(clients)))
	return nil
}

// reloadable are the config's settings Reload puts in force.
// (limits.max_connections and turning tls on or off excepted: the
// listener is made once); the TLS files are read again.
var reloadable = []string{"clients", "limits", "tls", "alarms"}

// Log attribute keys of Reload.
const (
	logSettings = "settings"
	logClients  = "clients"
)

// Addr returns the address the API listens on.
func (a *Agent) Addr() net.Addr { return a.ln.Addr() }

// Handler returns the API's handler, for tests and benchmarks that drive it
// without the agent's own server. Submissions through it complete only
// while Run is running.
func (a *Agent) Handler() http.Handler { return a.handler }

// Run serves the API and runs the agent's loops until ctx ends, then
// drains as the package documentation describes and returns nil, or the
// error of a loop that failed.
func (a *Agent) Run(ctx context.Context) error {
	if !a.started.CompareAndSwap(false, true) {
		return errors.New("dmz: Run called twice")
	}
	base := context.WithoutCancel(ctx)
	drain := time.Duration(a.cfg.DrainTimeout)

	// Each stage gets its own context so that stopping can go in order:
	// the HTTP server first, then the intake, then the batcher and the
	// publisher, then the ingest side.
	intakeCtx, stopIntake := context.WithCancel(base)
	batchCtx, stopBatch := context.WithCancel(base)
	ingestCtx, stopIngest := context.WithCancel(base)
	defer stopIntake()
	defer stopBatch()
	defer stopIngest()

	errc := make(chan error, 8)
	var intakeWG, batchWG, ingestWG sync.WaitGroup
	start := func(wg *sync.WaitGroup, name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	envs := make(chan *queue.Envelope, publishQueue)
	names := make(chan string)
	start(&intakeWG, "intake", func() error { return a.intake.Run(intakeCtx) })
	start(&batchWG, "batcher", func() error { return a.batcher(batchCtx, envs, drain) })
	start(&batchWG, "publisher", func() error { return a.publisher(batchCtx, envs, drain) })
	start(&ingestWG, "receiver", func() error {
		err := a.recv.Run(ingestCtx, names)
		if errors.Is(err, context.Canceled) && ingestCtx.Err() != nil {
			return nil
		}
		return err
	})
	start(&ingestWG, "ingester", func() error { return a.ingester(ingestCtx, names) })
	// With the ingest side: it serves the API until the very end of the
	// drain.
	start(&ingestWG, "backlog", func() error { return a.gate.run(ingestCtx) })
	start(&ingestWG, "silence", func() error { return a.peerWatch.Run(ingestCtx, a.now) })
	start(&ingestWG, "callbacks", func() error { return a.callbackLoop(ingestCtx) })
	// The admin socket and the alarms, until the very end too.
	opsCtx, stopOps := context.WithCancel(base)
	defer stopOps()
	var opsWG sync.WaitGroup
	start(&opsWG, "admin", func() error { return a.ops.Run(opsCtx) })
	// The audit side stops last, and drains and signs once more as it
	// does: everything the others decided is in the log.
	refusalsCtx, stopRefusals := context.WithCancel(base)
	defer stopRefusals()
	auditCtx, stopAudit := context.WithCancel(base)
	defer stopAudit()
	var refusalsWG, auditWG sync.WaitGroup
	start(&refusalsWG, "audit refusals", func() error { return a.refused.run(refusalsCtx, a.spool.Audit, a.log) })
	start(&auditWG, "audit log", func() error {
		err := a.auditLog.Run(auditCtx, audit.RunConfig{Sources: []audit.Source{a.spool.AuditSource()},
			Checkpoint: time.Duration(a.cfg.AuditCheckpoint), Retention: time.Duration(a.cfg.AuditRetention),
			Journal: filepath.Join(a.cfg.Keys, audit.JournalFile), Logger: a.log})
		if errors.Is(err, context.Canceled) && auditCtx.Err() != nil {
			return nil
		}
		return err
	})
	srvErr := make(chan error, 1)
	go func() { srvErr <- a.srv.Serve(a.ln) }()
	a.ready.Store(true)
	a.servingOnce.Do(func() { close(a.serving) })
	// A snapshot now, so that the status says serving from the start.
	a.ops.Monitor.Refresh(base)
	a.log.Info("dmz agent running", slog.String(logAddr, a.ln.Addr().String()))

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		a.log.Error("agent loop failed; stopping", slog.String(logError, runErr.Error()))
	case err := <-srvErr:
		runErr = fmt.Errorf("http server: %w", err)
		a.log.Error("http server failed; stopping", slog.String(logError, err.Error()))
	}

	// Drain.
	a.ready.Store(false)
	a.stopOnce.Do(func() { close(a.stopping) })
	sctx, cancel := context.WithTimeout(base, drain)
	if err := a.srv.Shutdown(sctx); err != nil {
		a.log.Warn("drain timeout: closing open API connections", slog.String(logError, err.Error()))
		a.srv.Close()
	}
	cancel()
	stopIntake()
	intakeWG.Wait()
	stopBatch()
	batchWG.Wait()
	stopIngest()
	ingestWG.Wait()
	// The last refusals are staged before the log's last drain.
	stopRefusals()
	refusalsWG.Wait()
	stopAudit()
	auditWG.Wait()
	stopOps()
	opsWG.Wait()
	close(errc)
	for err := range errc {
		runErr = errors.Join(runErr, err)
	}
	return runErr
}

// Ready returns a channel that is closed once Run serves the API.
func (a *Agent) Ready() <-chan struct{} { return a.serving }

// Alive reports whether the agent's state answers: the spool, within a
// second. The service watchdog is fed only while it does.
func (a *Agent) Alive(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return a.spool.Ping(ctx)
}

// Close releases the listener, the spool and the media. Call it once Run has
// returned, or instead of Run.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() {
		lnErr := a.ln.Close()
		if errors.Is(lnErr, net.ErrClosed) {
			lnErr = nil
		}
		a.ops.Close()
		errs := []error{lnErr, a.auditLog.Close(), a.spool.Close()}
		for _, c := range a.media {
			errs = append(errs, c.Close())
		}
		a.closeErr = errors.Join(errs...)
	})
	return a.closeErr
}

// PeerHeard returns when the last authentic envelope came from the
// intranet (or when the agent was made, before the first), and whether
// that is longer ago than peer_silence.
func (a *Agent) PeerHeard() (time.Time, bool) { return a.peerWatch.State() }

// Log attribute keys of the key ring.
const (
	logKeyID    = "key_id"
	logPeerKeys = "peer_keys"
)

// setRing puts a loaded key ring in force and logs the keys it holds.
func (a *Agent) setRing(r *keys.Ring) {
	a.ring.Store(r)
	a.log.Info("keys in force", slog.String(logKeyID, r.SignerAt(time.Now()).ID()), slog.Any(logPeerKeys, r.PeerIDs()))
}

// openEnvelope opens a result envelope with the keys in force: any valid
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
