// Package alarm holds the alarms of a ferry agent: the conditions the
// operating rules want an operator warned about, raised and cleared by
// the agent, and sent to the log, to the metrics and optionally to a
// signed webhook.
//
// # Alarms
//
// Every alarm has a fixed name (see [Names]) and a [Severity]. A [Set]
// holds which alarms are raised. Raising an alarm that is clear, or
// changing its severity, logs one line (WARN for a warning, ERROR for a
// critical alarm) and notifies the webhook; raising it again with a new
// message only updates the message. Clearing a raised alarm logs one INFO
// line and notifies the webhook. The agent decides the conditions from the
// thresholds in [Config]; docs/alarms.md says what each alarm means and
// what to do about it.
//
// # Messages
//
// An alarm's message goes to the log, to the status output and to the
// webhook. Callers must never put personal data in it: no subject, no
// request parameter, no ID number. Counts, durations, key ids, client
// names and keyed hashes are fine.
//
// # Metrics
//
// A [Set] is a prometheus.Collector: [MetricActive] is a gauge per alarm
// name (every name, raised or not, so the series are stable) and
// [MetricRaised] counts the transitions from clear to raised. A [Webhook]
// is a collector too: [MetricDeliveries] counts deliveries by outcome.
//
// # Bursts and frequency
//
// [Window] counts events in a sliding window and [Frequency] counts events
// per key within a minute, both in bounded memory.
//
// # Webhook
//
// A [Webhook] posts each [Event] as JSON, signed as Standard Webhooks
// (https://www.standardwebhooks.com) specifies: HMAC-SHA256 over
// "id.timestamp.body" with a secret kept in a 0600 file ([GenerateSecret],
// [ReadSecret]). Receivers check a delivery with [Verify].
package alarm

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The alarm names.
const (
	MediumStalled     = "medium_stalled"
	PeerSilent        = "peer_silent"
	Unacknowledged    = "unacknowledged"
	SequenceGap       = "sequence_gap"
	QuarantineBurst   = "quarantine_burst"
	RefusalBurst      = "refusal_burst"
	HighFrequency     = "high_frequency"
	SpoolFull         = "spool_full"
	DiskFull          = "disk_full"
	KeyExpiry         = "key_expiry"
	PolicyExpiry      = "policy_expiry"
	AuditInconsistent = "audit_inconsistent"
	WitnessStopped    = "witness_stopped"
)

// names is every alarm name, sorted.
var names = func() []string {
	n := []string{
		MediumStalled, PeerSilent, Unacknowledged, SequenceGap, QuarantineBurst,
		RefusalBurst, HighFrequency, SpoolFull, DiskFull, KeyExpiry, PolicyExpiry,
		AuditInconsistent, WitnessStopped,
	}
	slices.Sort(n)
	return n
}()

// Names returns every alarm name, sorted.
func Names() []string { return slices.Clone(names) }

// known reports whether name is an alarm name.
func known(name string) bool {
	_, ok := slices.BinarySearch(names, name)
	return ok
}

// Severity is how urgent an alarm is.
type Severity string

// The severities.
const (
	// Warning means an operator should look today.
	Warning Severity = "warning"
	// Critical means the exchange is failing or at risk now.
	Critical Severity = "critical"
)

// The names of the metrics of package alarm.
const (
	// MetricActive is a gauge per alarm name: 1 raised, 0 clear.
	MetricActive = "ferry_alarm_active"
	// MetricRaised counts, per alarm name, the transitions from clear to
	// raised.
	MetricRaised = "ferry_alarms_raised_total"
	// MetricDeliveries counts webhook deliveries by outcome: delivered,
	// failed (given up after the retries) or dropped (the queue was full,
	// or the agent stopped before it could try).
	MetricDeliveries = "ferry_webhook_deliveries_total"
)

// The states of an [Event].
const (
	StateRaised  = "raised"
	StateCleared = "cleared"
)

// The constant attribute keys of the package's log lines.
const (
	keyAlarm    = "alarm"
	keySeverity = "severity"
	keyMessage  = "message"
	keyError    = "error"
	keyStatus   = "status"
	keyDropped  = "dropped"
	keyQueue    = "queue"
	keyEvent    = "event"
)

// Alarm is one raised alarm.
type Alarm struct {
	Name     string   `json:"name"`
	Severity Severity `json:"severity"`
	// Message says what is wrong, with figures. It never holds personal
	// data.
	Message string `json:"message"`
	// Since is when the alarm was raised (a change of severity keeps it).
	Since time.Time `json:"since"`
}

// Set is the alarms of one agent, raised and cleared as conditions come
// and go. It is safe for concurrent use.
type Set struct {
	zone   string
	logger *slog.Logger
	notify func(Event)
	now    func() time.Time

	activeDesc *prometheus.Desc
	raisedDesc *prometheus.Desc

	mu     sync.Mutex
	active map[string]Alarm
	raised map[string]uint64
}

// NewSet returns a Set with every alarm clear. zone names the agent's zone
// in the events; notify, if not nil, is called with every transition, in
// order, while the Set is locked: it must not block (a [Webhook]'s Notify
// does not) and must not call the Set.
func NewSet(zone string, logger *slog.Logger, notify func(Event)) *Set {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Set{
		zone:   zone,
		logger: logger,
		notify: notify,
		now:    time.Now,
		activeDesc: prometheus.NewDesc(MetricActive,
			"Whether the alarm is raised (1) or clear (0).", []string{keyAlarm}, nil),
		raisedDesc: prometheus.NewDesc(MetricRaised,
			"Transitions of the alarm from clear to raised.", []string{keyAlarm}, nil),
		active: map[string]Alarm{},
		raised: map[string]uint64{},
	}
}

// Raise raises the alarm name with severity sev and message msg. When the
// alarm was clear, or had another severity, it logs the alarm (WARN for a
// warning, ERROR for a critical alarm) and notifies; when it was already
// raised with sev it only takes the new message. An unknown name is a
// programming error: it is logged at ERROR and ignored; an unknown
// severity is logged at ERROR and taken as [Critical]. msg must not hold
// personal data (see the package doc).
func (s *Set) Raise(name string, sev Severity, msg string) {
	if !known(name) {
		s.logger.Error("alarm: unknown alarm name, ignored", slog.String(keyAlarm, name))
		return
	}
	if sev != Warning && sev != Critical {
		s.logger.Error("alarm: unknown severity, taken as critical",
			slog.String(keyAlarm, name), slog.String(keySeverity, string(sev)))
		sev = Critical
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	a, ok := s.active[name]
	if ok && a.Severity == sev {
		a.Message = msg
		s.active[name] = a
		return
	}
	if !ok {
		a = Alarm{Name: name, Since: now}
		s.raised[name]++
	}
	a.Severity, a.Message = sev, msg
	s.active[name] = a
	level := slog.LevelWarn
	if sev == Critical {
		level = slog.LevelError
	}
	s.logger.Log(context.Background(), level, "alarm raised",
		slog.String(keyAlarm, name), slog.String(keySeverity, string(sev)), slog.String(keyMessage, msg))
	s.send(a, StateRaised, now)
}

// Clear clears the alarm name. When it was raised, it logs "alarm
// cleared" at INFO and notifies. An unknown name is logged at ERROR and
// ignored.
func (s *Set) Clear(name string) {
	if !known(name) {
		s.logger.Error("alarm: unknown alarm name, ignored", slog.String(keyAlarm, name))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.active[name]
	if !ok {
		return
	}
	delete(s.active, name)
	s.logger.Info("alarm cleared", slog.String(keyAlarm, name), slog.String(keySeverity, string(a.Severity)))
	s.send(a, StateCleared, s.now())
}

// send notifies a transition of a to state; s.mu is held.
func (s *Set) send(a Alarm, state string, now time.Time) {
	if s.notify == nil {
		return
	}
	s.notify(Event{
		ID:       newID(),
		Zone:     s.zone,
		Alarm:    a.Name,
		Severity: a.Severity,
		State:    state,
		Message:  a.Message,
		Time:     now,
	})
}

// Active returns the raised alarms, sorted by name.
func (s *Set) Active() []Alarm {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Alarm, 0, len(s.active))
	for _, name := range names {
		if a, ok := s.active[name]; ok {
			out = append(out, a)
		}
	}
	return out
}

// Describe implements prometheus.Collector.
func (s *Set) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.activeDesc
	ch <- s.raisedDesc
}

// Collect implements prometheus.Collector: both metrics for every alarm
// name.
func (s *Set) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range names {
		v := 0.0
		if _, ok := s.active[name]; ok {
			v = 1
		}
		ch <- constMetric(s.activeDesc, prometheus.GaugeValue, v, name)
		ch <- constMetric(s.raisedDesc, prometheus.CounterValue, float64(s.raised[name]), name)
	}
}

// constMetric returns a constant metric, or an invalid metric (reported by
// the registry, never a panic) if the labels do not fit desc.
func constMetric(desc *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) prometheus.Metric {
	m, err := prometheus.NewConstMetric(desc, t, v, labels...)
	if err != nil {
		return prometheus.NewInvalidMetric(desc, err)
	}
	return m
}
