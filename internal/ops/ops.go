// Package ops is what operators watch an agent through, put together for
// both agents: its metrics (package metrics), its status snapshots and
// alarms (package status, package alarm), the admin socket and metrics
// listener, and the alarm webhook. An agent makes one Ops in New, calls
// its event methods on its paths (envelopes sent and received, files
// quarantined, requests), supplies the zone-specific part of each
// snapshot, and runs it alongside its loops until the very end of its
// drain.
package ops

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"

	"github.com/ferrybridge/ferry/internal/alarm"
	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/keys"
	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/metrics"
	"github.com/ferrybridge/ferry/internal/status"
)

// Config is what Ops needs from its agent.
type Config struct {
	// Agent is the program's name; Zone and Peer the zones'.
	Agent, Zone, Peer string
	Admin             status.Config
	Alarms            alarm.Config
	// StateDir is a directory on the file system of the zone's state;
	// Quarantine the quarantine directory.
	StateDir, Quarantine string
	// Audit is the zone's audit keys; PeerAudit the peer's audit key.
	Audit     *keys.Audit
	PeerAudit note.Verifier
	// Collect fills in the agent's part of each snapshot (see
	// status.MonitorConfig.Collect). Ops fills in the last envelopes and
	// the audit keys' ids.
	Collect func(context.Context, *status.Snapshot) error
	Logger  *slog.Logger
	// Collectors are the agent's own metrics besides package metrics'
	// (the DMZ's callback deliveries), registered with them.
	Collectors []prometheus.Collector
}

// Ops is one agent's metrics, alarms, monitor and webhook.
type Ops struct {
	cfg     Config
	Metrics *metrics.Agent
	Alarms  *alarm.Set
	Monitor *status.Monitor
	server  *status.Server
	webhook *alarm.Webhook // nil: none configured
	hasher  *audit.Hasher
	// lastSent and lastReceived are Unix milliseconds of the last
	// envelope published and applied, 0 for none.
	lastSent, lastReceived atomic.Int64
}

// New makes the Ops of an agent and opens its admin socket and metrics
// listener. It fails if one cannot be opened or the webhook's secret
// cannot be read.
func New(cfg Config) (*Ops, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h, err := audit.NewHasher(cfg.Audit.HMACKey)
	if err != nil {
		return nil, err
	}
	o := &Ops{cfg: cfg, hasher: h}
	var notify func(alarm.Event)
	extra := append([]prometheus.Collector(nil), cfg.Collectors...)
	if cfg.Alarms.Webhook.URL != "" {
		wh, err := alarm.NewWebhook(cfg.Alarms.Webhook, cfg.Logger)
		if err != nil {
			return nil, err
		}
		o.webhook = wh
		notify = wh.Notify
		extra = append(extra, wh)
	}
	o.Alarms = alarm.NewSet(cfg.Zone, cfg.Logger, notify)
	o.Metrics = metrics.New(cfg.Agent, cfg.Zone, status.Version(), append(extra, o.Alarms)...)
	o.Monitor = status.NewMonitor(status.MonitorConfig{
		Agent: cfg.Agent, Zone: cfg.Zone, Peer: cfg.Peer,
		Admin: cfg.Admin, Alarms: cfg.Alarms,
		StateDir: cfg.StateDir, Quarantine: cfg.Quarantine,
		Collect: o.collect, OnSnapshot: o.Metrics.SetSnapshot,
		Set: o.Alarms, Logger: cfg.Logger,
	})
	o.server, err = status.Listen(cfg.Admin, o.Monitor, o.Metrics.Gatherer(), cfg.Logger)
	if err != nil {
		return nil, err
	}
	return o, nil
}

// Close closes the admin socket and the metrics listener, if Run did
// not. Agents call it from their Close.
func (o *Ops) Close() { o.server.Close() }

// MetricsAddr returns the address of the metrics listener, nil if none.
func (o *Ops) MetricsAddr() net.Addr { return o.server.Addr() }

// collect fills in what Ops knows, then the agent's part.
func (o *Ops) collect(ctx context.Context, s *status.Snapshot) error {
	s.LastSent = fromMilli(o.lastSent.Load())
	s.LastReceived = fromMilli(o.lastReceived.Load())
	if o.cfg.Collect == nil {
		return nil
	}
	return o.cfg.Collect(ctx, s)
}

// Keys returns the Keys part of a snapshot for the key ring r in force
// (status.KeysOf with the zone's audit keys and alarms.key_max_age).
func (o *Ops) Keys(r *keys.Ring, now time.Time) status.Keys {
	return status.KeysOf(r, o.cfg.Audit.Verifier, o.cfg.PeerAudit, time.Duration(o.cfg.Alarms.KeyMaxAge), now)
}

// Run runs the monitor (snapshots, alarms, the admin socket and metrics
// listener) and the webhook until ctx ends.
func (o *Ops) Run(ctx context.Context) error {
	errc := make(chan error, 2)
	n := 1
	go func() { errc <- o.Monitor.Run(ctx, o.server) }()
	if o.webhook != nil {
		n++
		go func() { errc <- o.webhook.Run(ctx) }()
	}
	var err error
	for range n {
		err = errors.Join(err, <-errc)
	}
	return err
}

// Sent notes one envelope published at t.
func (o *Ops) Sent(t time.Time) {
	o.Metrics.Envelope(metrics.Sent, t)
	o.lastSent.Store(t.UnixMilli())
}

// Received notes one envelope applied at t, which showed gaps sequence
// gaps opened.
func (o *Ops) Received(t time.Time, gaps int) {
	o.Metrics.Envelope(metrics.Received, t)
	o.Metrics.Gap(gaps)
	o.lastReceived.Store(t.UnixMilli())
}

// Quarantined notes one file quarantined for reason (the inbox's
// OnQuarantine).
func (o *Ops) Quarantined(reason string) {
	o.Metrics.Quarantine(reason)
	o.Monitor.Quarantined()
}

// Inbox returns c with the inbox's hooks set to this Ops' Quarantined
// and ReceiveError, so that every hook is wired in one place.
func (o *Ops) Inbox(c medium.InboxConfig) medium.InboxConfig {
	c.OnQuarantine, c.OnReceiveError = o.Quarantined, o.ReceiveError
	return c
}

// ReceiveError notes one failed read of the medium the zone receives
// from (the inbox's OnReceiveError).
func (o *Ops) ReceiveError() { o.Metrics.MediumError(metrics.Receive) }

// Request notes one request by client (and subject, if not ""), for the
// high-frequency alarm; refused says whether it was refused, for the
// refusal burst. Subjects are counted by their keyed hash only.
func (o *Ops) Request(client, subject string, refused bool) {
	o.Monitor.Request("client " + client)
	if subject != "" {
		o.Monitor.Request("subject " + o.hasher.Subject(subject))
	}
	if refused {
		o.Monitor.Refused(1)
	}
}

// RequestFrom counts one API request from source address addr for the
// high-frequency alarm.
func (o *Ops) RequestFrom(addr string) { o.Monitor.Request("address " + addr) }

// Audit fills in the audit part of a snapshot from the zone's log and
// its exchange with the peer.
func Audit(s *status.Snapshot, l *audit.Log, x *audit.Exchange) {
	s.Audit.Entries = l.Size()
	h := x.Health()
	s.Audit.Witnessed, s.Audit.Cosigned, s.Audit.Inconsistent = h.Witnessed, h.Cosigned, h.Inconsistent
}

func fromMilli(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// SetAlarms puts reloaded alarm thresholds in force. The webhook is made
// at start: a changed alarms.webhook is logged as taking effect at the
// next restart.
func (o *Ops) SetAlarms(c alarm.Config) {
	if c.Webhook != o.cfg.Alarms.Webhook {
		o.cfg.Logger.Warn("changed settings take effect at the next restart", slog.Any("settings", []string{"alarms.webhook"}))
	}
	o.Monitor.SetAlarms(c)
}
