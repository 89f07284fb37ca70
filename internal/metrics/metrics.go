// Package metrics is the Prometheus instrumentation of the ferry agents:
// the name of every metric they export, and Agent, the set one agent
// registers on its own registry and updates as it works.
//
// # Names
//
// The constants below are the complete list. Every metric carries the
// label zone (the agent's zone name), added when the agent registers it,
// so one Prometheus can scrape both zones' agents (the intranet's through
// its admin socket, see package status). deploy/prometheus/ferry-rules.yml
// and deploy/grafana/ferry.json use these names and no others; a test in
// package deploy checks that.
//
// Label values are bounded: operation is one of the catalogue's operations
// or "unknown", outcome and reason are reason codes of the API or the
// policy, direction is "sent" or "received". No label ever holds a
// request id, a client's token, a subject or a parameter.
//
// # Where the figures come from
//
// Counters and the intake histogram are updated on the request and
// envelope paths (Agent's methods, a few atomic adds each). Gauges of
// state (the spool's backlog, envelopes by state, the peer's last
// envelope, the audit log's size, key and policy expiry, free disk) are
// set from the status snapshot the agent takes every few seconds
// (SetSnapshot), never by a query at scrape time.
package metrics

import (
	"math"
	"runtime"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ferrybridge/ferry/internal/alarm"
	"github.com/ferrybridge/ferry/internal/callback"
	"github.com/ferrybridge/ferry/internal/status"
)

// Metric names.
const (
	// BuildInfo is 1, labelled with version and goversion.
	BuildInfo = "ferry_build_info"
	// Requests counts the DMZ API's answers to POST /v1/requests by
	// operation and outcome (accepted, duplicate, or the refusal's
	// reason code).
	Requests = "ferry_requests_total"
	// IntakeSeconds is the time from a request's arrival to its durable
	// answer (202 after the commit).
	IntakeSeconds = "ferry_intake_duration_seconds"
	// SpoolRequests is the DMZ's backlog: requests accepted and not yet
	// final or held. SpoolRequestsLimit is limits.max_backlog.
	SpoolRequests      = "ferry_spool_requests"
	SpoolRequestsLimit = "ferry_spool_requests_limit"
	// Unacked counts request envelopes published and not acknowledged;
	// UnackedLimit is limits.max_unacked.
	Unacked      = "ferry_unacked_envelopes"
	UnackedLimit = "ferry_unacked_envelopes_limit"
	// OldestUnackedSeconds is the age of the oldest envelope sent and not
	// yet acknowledged (0 when there is none).
	OldestUnackedSeconds = "ferry_oldest_unacked_envelope_age_seconds"
	// Envelopes counts the envelopes a zone holds by state: on the DMZ
	// sealed, published, dead (request envelopes); on the intranet
	// applied (results not sealed yet) and sealed (not published yet).
	Envelopes = "ferry_envelopes"
	// Held counts write requests waiting for an admin's approval.
	Held = "ferry_held_requests"
	// EnvelopesTotal counts envelopes by direction (sent, received).
	EnvelopesTotal = "ferry_envelopes_total"
	// LastEnvelope is when the last envelope was sent or received, by
	// direction, in Unix seconds (0 for none since start).
	LastEnvelope = "ferry_last_envelope_timestamp_seconds"
	// Quarantined counts files moved to quarantine, by reason.
	Quarantined = "ferry_quarantined_total"
	// GapsOpened counts sequence gaps seen on the channel the zone
	// receives; GapsOpen is the missing ranges now.
	GapsOpened = "ferry_sequence_gaps_total"
	GapsOpen   = "ferry_sequence_gaps_open"
	// Retransmissions counts envelopes sent again in place of an
	// unacknowledged one.
	Retransmissions = "ferry_retransmissions_total"
	// PolicyDecisions counts the intranet's decisions by decision (allow,
	// refuse, hold) and reason.
	PolicyDecisions = "ferry_policy_decisions_total"
	// RateLimited counts requests a rate limit refused.
	RateLimited = "ferry_rate_limited_total"
	// MediumErrors counts failed medium operations by direction (send,
	// receive).
	MediumErrors = "ferry_medium_errors_total"
	// PeerLastHeard is when the last authentic envelope came from the
	// peer zone, in Unix seconds.
	PeerLastHeard = "ferry_peer_last_heard_timestamp_seconds"
	// AuditEntries is the size of the zone's audit log.
	AuditEntries = "ferry_audit_log_entries"
	// AuditWitnessed is when this zone last countersigned a checkpoint of
	// the peer's audit log, in Unix seconds (0 for never).
	AuditWitnessed = "ferry_audit_witnessed_timestamp_seconds"
	// KeyExpiry is when the zone's signing key in force reaches
	// alarms.key_max_age, in Unix seconds.
	KeyExpiry = "ferry_key_expiry_timestamp_seconds"
	// PolicyExpiry is when the policy in force reaches
	// alarms.policy_max_age, in Unix seconds (intranet).
	PolicyExpiry = "ferry_policy_expiry_timestamp_seconds"
	// DiskFreeRatio is the free fraction of the file system holding the
	// zone's state.
	DiskFreeRatio = "ferry_disk_free_ratio"
	// SnapshotTime is when the agent last took its status snapshot, in
	// Unix seconds: the state gauges are as of then. A value that stops
	// moving means the agent's monitor hangs.
	SnapshotTime = "ferry_snapshot_timestamp_seconds"
	// APIRefused counts the DMZ API's requests refused before they reach
	// a handler's own checks (any path), by reason: ip_forbidden,
	// rate_limited (per address or per client), too_many_waits,
	// certificate_required.
	APIRefused = "ferry_api_refused_total"
	// AlarmActive, AlarmsRaised and WebhookDeliveries are exported by
	// package alarm.
	AlarmActive       = alarm.MetricActive
	AlarmsRaised      = alarm.MetricRaised
	WebhookDeliveries = alarm.MetricDeliveries
	// CallbackDeliveries is exported by package callback (the DMZ's
	// result callbacks).
	CallbackDeliveries = callback.MetricDeliveries
)

// Names returns every metric name ferry's agents export.
func Names() []string {
	return []string{BuildInfo, Requests, IntakeSeconds, SpoolRequests, SpoolRequestsLimit, Unacked,
		UnackedLimit, OldestUnackedSeconds, Envelopes, Held, EnvelopesTotal, LastEnvelope, Quarantined,
		GapsOpened, GapsOpen, Retransmissions, PolicyDecisions, RateLimited, MediumErrors, PeerLastHeard,
		AuditEntries, AuditWitnessed, KeyExpiry, PolicyExpiry, DiskFreeRatio, SnapshotTime, AlarmActive, AlarmsRaised,
		WebhookDeliveries, APIRefused, CallbackDeliveries}
}

// EdgeReasons are the reason label values of APIRefused.
var EdgeReasons = []string{"ip_forbidden", "rate_limited", "too_many_waits", "certificate_required"}

// Directions of envelopes and medium errors.
const (
	Sent     = "sent"
	Received = "received"
	Send     = "send"
	Receive  = "receive"
)

// Agent is one agent's metrics.
type Agent struct {
	reg *prometheus.Registry

	requests        *prometheus.CounterVec
	apiRefused      *prometheus.CounterVec
	intake          prometheus.Histogram
	envelopesTotal  *prometheus.CounterVec
	quarantined     *prometheus.CounterVec
	gapsOpened      prometheus.Counter
	retransmissions prometheus.Counter
	decisions       *prometheus.CounterVec
	rateLimited     prometheus.Counter
	mediumErrors    *prometheus.CounterVec

	spool, spoolLimit, unacked, unackedLimit, oldest prometheus.Gauge
	envelopes                                        *prometheus.GaugeVec
	held, gapsOpen, peerHeard, auditEntries, taken   prometheus.Gauge
	witnessed, keyExpiry, policyExpiry, diskFree     prometheus.Gauge
	lastEnvelope                                     *prometheus.GaugeVec
}

// Agents, for New: which agent's metrics to register.
const (
	DMZ      = "dmz-agent"
	Intranet = "intranet-agent"
)

// dmzOnly and intranetOnly are the metrics only one agent has; every
// other is both agents'.
var (
	dmzOnly      = []string{Requests, IntakeSeconds, SpoolRequests, SpoolRequestsLimit, Unacked, UnackedLimit, OldestUnackedSeconds, Retransmissions, APIRefused, CallbackDeliveries}
	intranetOnly = []string{PolicyDecisions, RateLimited, PolicyExpiry}
)

// NamesOf returns the metric names agent (DMZ or Intranet) exports.
func NamesOf(agent string) []string {
	skip := intranetOnly
	if agent == Intranet {
		skip = dmzOnly
	}
	var out []string
	for _, n := range Names() {
		if !slices.Contains(skip, n) {
			out = append(out, n)
		}
	}
	return out
}

// New makes the metrics of agent (DMZ or Intranet) on a new registry,
// every one labelled zone=zone, with the Go runtime's and the process's
// collectors (go_*, process_*) besides. extra are registered too (the
// alarm set, the webhook). The methods of a metric the agent does not
// export count into nothing.
func New(agent, zone, version string, extra ...prometheus.Collector) *Agent {
	reg := prometheus.NewRegistry()
	r := prometheus.WrapRegistererWith(prometheus.Labels{"zone": zone}, reg)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	own := NamesOf(agent)
	f := func(name string, c prometheus.Collector) {
		if slices.Contains(own, name) {
			r.MustRegister(c)
		}
	}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		f(name, c)
		return c
	}
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		f(name, c)
		return c
	}
	gauge := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		f(name, g)
		return g
	}
	m := &Agent{reg: reg}
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: BuildInfo, Help: "Always 1; the labels say which build runs."}, []string{"version", "goversion"})
	f(BuildInfo, info)
	info.WithLabelValues(version, runtime.Version()).Set(1)
	m.requests = counterVec(Requests, "Answers to POST /v1/requests by operation and outcome.", "operation", "outcome")
	m.apiRefused = counterVec(APIRefused, "DMZ API requests refused at the edge (address lists, rate limits, long-poll cap, certificate binding), by reason.", "reason")
	for _, r := range EdgeReasons {
		m.apiRefused.WithLabelValues(r)
	}
	m.intake = prometheus.NewHistogram(prometheus.HistogramOpts{Name: IntakeSeconds,
		Help:    "Time from a request's arrival to its durable answer.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}})
	f(IntakeSeconds, m.intake)
	m.envelopesTotal = counterVec(EnvelopesTotal, "Envelopes sent and received.", "direction")
	m.quarantined = counterVec(Quarantined, "Files moved to quarantine, by reason.", "reason")
	m.gapsOpened = counter(GapsOpened, "Sequence gaps seen on the received channel.")
	m.retransmissions = counter(Retransmissions, "Envelopes sent again in place of an unacknowledged one.")
	m.decisions = counterVec(PolicyDecisions, "Policy decisions by decision and reason.", "decision", "reason")
	m.rateLimited = counter(RateLimited, "Requests refused by a rate limit.")
	m.mediumErrors = counterVec(MediumErrors, "Failed medium operations by direction.", "direction")
	m.spool = gauge(SpoolRequests, "Requests accepted and not yet final or held.")
	m.spoolLimit = gauge(SpoolRequestsLimit, "limits.max_backlog.")
	m.unacked = gauge(Unacked, "Request envelopes published and not yet acknowledged.")
	m.unackedLimit = gauge(UnackedLimit, "limits.max_unacked.")
	m.oldest = gauge(OldestUnackedSeconds, "Age of the oldest unacknowledged envelope, 0 for none.")
	m.envelopes = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: Envelopes, Help: "Envelopes held by state."}, []string{"state"})
	f(Envelopes, m.envelopes)
	m.held = gauge(Held, "Write requests waiting for an admin's approval.")
	m.gapsOpen = gauge(GapsOpen, "Missing sequence ranges on the received channel now.")
	m.peerHeard = gauge(PeerLastHeard, "When the last authentic envelope came from the peer, Unix seconds.")
	m.auditEntries = gauge(AuditEntries, "Entries in the zone's audit log.")
	m.witnessed = gauge(AuditWitnessed, "When a checkpoint of the peer's audit log was last countersigned, Unix seconds.")
	m.keyExpiry = gauge(KeyExpiry, "When the signing key in force reaches alarms.key_max_age, Unix seconds.")
	m.policyExpiry = gauge(PolicyExpiry, "When the policy in force reaches alarms.policy_max_age, Unix seconds.")
	m.taken = gauge(SnapshotTime, "When the agent last took its status snapshot, Unix seconds.")
	m.diskFree = gauge(DiskFreeRatio, "Free fraction of the file system holding the zone's state.")
	// Unknown until a snapshot reads the file system: NaN, which no
	// threshold matches, rather than 0, which every one would.
	m.diskFree.Set(math.NaN())
	m.lastEnvelope = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: LastEnvelope, Help: "When the last envelope was sent or received, Unix seconds."}, []string{"direction"})
	f(LastEnvelope, m.lastEnvelope)
	for _, d := range []string{Sent, Received} {
		m.envelopesTotal.WithLabelValues(d)
		m.lastEnvelope.WithLabelValues(d)
	}
	for _, d := range []string{Send, Receive} {
		m.mediumErrors.WithLabelValues(d)
	}
	for _, c := range extra {
		r.MustRegister(c)
	}
	return m
}

// Gatherer returns the registry, for the admin socket's /metrics.
func (m *Agent) Gatherer() prometheus.Gatherer { return m.reg }

// Request counts one answer to POST /v1/requests and, for an accepted
// request, the time it took.
func (m *Agent) Request(operation, outcome string, took time.Duration) {
	m.requests.WithLabelValues(operation, outcome).Inc()
	if outcome == "accepted" {
		m.intake.Observe(took.Seconds())
	}
}

// EdgeRefused counts one API request refused at the edge for reason
// (one of EdgeReasons).
func (m *Agent) EdgeRefused(reason string) { m.apiRefused.WithLabelValues(reason).Inc() }

// Envelope counts one envelope sent or received at t.
func (m *Agent) Envelope(direction string, t time.Time) {
	m.envelopesTotal.WithLabelValues(direction).Inc()
	m.lastEnvelope.WithLabelValues(direction).Set(unix(t))
}

// Quarantine counts one file quarantined for reason.
func (m *Agent) Quarantine(reason string) { m.quarantined.WithLabelValues(reason).Inc() }

// Gap counts n sequence gaps opened.
func (m *Agent) Gap(n int) { m.gapsOpened.Add(float64(n)) }

// Retransmission counts n envelopes sent again.
func (m *Agent) Retransmission(n int) { m.retransmissions.Add(float64(n)) }

// Decision counts one policy decision.
func (m *Agent) Decision(decision, reason string) {
	m.decisions.WithLabelValues(decision, reason).Inc()
}

// RateLimit counts n requests refused by a rate limit.
func (m *Agent) RateLimit(n int) { m.rateLimited.Add(float64(n)) }

// MediumError counts one failed medium operation.
func (m *Agent) MediumError(direction string) { m.mediumErrors.WithLabelValues(direction).Inc() }

// SetSnapshot sets the gauges of state from a status snapshot.
func (m *Agent) SetSnapshot(s *status.Snapshot) {
	m.taken.Set(unix(s.Taken))
	q := s.Queue
	m.spool.Set(float64(q.Backlog))
	m.spoolLimit.Set(float64(q.MaxBacklog))
	m.unacked.Set(float64(q.Unacked))
	m.unackedLimit.Set(float64(q.MaxUnacked))
	if q.OldestUnacked.IsZero() {
		m.oldest.Set(0)
	} else {
		m.oldest.Set(s.Taken.Sub(q.OldestUnacked).Seconds())
	}
	for state, n := range q.Envelopes {
		m.envelopes.WithLabelValues(state).Set(float64(n))
	}
	m.held.Set(float64(q.Held))
	m.gapsOpen.Set(float64(q.Gaps))
	m.peerHeard.Set(unix(s.PeerHeard.At))
	m.auditEntries.Set(float64(s.Audit.Entries))
	m.witnessed.Set(unix(s.Audit.Witnessed))
	m.keyExpiry.Set(unix(s.Keys.Expires))
	if s.Policy != nil {
		m.policyExpiry.Set(unix(s.Policy.Expires))
	}
	if s.Disk.Total > 0 {
		m.diskFree.Set(float64(s.Disk.Free) / float64(s.Disk.Total))
	}
}

func unix(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}
