package status

import (
	"fmt"
	"strings"
	"time"

	"github.com/ferrybridge/ferry/internal/alarm"
)

// Evaluate returns the alarms a snapshot raises under the thresholds of
// c, at now. Every alarm it does not return is clear. Messages name
// counts, times, key ids and client names; never a subject or a
// parameter (Recent.Frequent holds subjects only as keyed hashes).
//
// See docs/alarms.md for what each alarm means and what to do.
func Evaluate(s *Snapshot, c alarm.Config, now time.Time) []alarm.Alarm {
	var out []alarm.Alarm
	raise := func(name string, sev alarm.Severity, format string, args ...any) {
		out = append(out, alarm.Alarm{Name: name, Severity: sev, Message: fmt.Sprintf(format, args...)})
	}
	ago := func(t time.Time) string { return now.Sub(t).Round(time.Second).String() }
	q := s.Queue

	if s.PeerHeard.Silent {
		raise(alarm.PeerSilent, alarm.Critical, "no envelope from %s for %s", s.Peer, ago(s.PeerHeard.At))
	}
	if !q.OldestUnacked.IsZero() && now.Sub(q.OldestUnacked) > time.Duration(c.Unacked) {
		raise(alarm.Unacknowledged, alarm.Warning, "the oldest unacknowledged envelope was sealed %s ago (alarms.unacked %s)", ago(q.OldestUnacked), time.Duration(c.Unacked))
	}
	if waiting := q.Envelopes[WaitingToSend]; waiting > 0 {
		last := s.LastSent
		if last.IsZero() {
			last = s.Started
		}
		if now.Sub(last) > time.Duration(c.Stalled) {
			raise(alarm.MediumStalled, alarm.Critical, "%d envelopes wait to be sent and none was sent for %s", waiting, ago(last))
		}
	}
	if q.Gaps > 0 {
		raise(alarm.SequenceGap, alarm.Warning, "%d missing sequence ranges from %s", q.Gaps, s.Peer)
	}
	if s.Recent.Quarantined >= c.QuarantineBurst {
		raise(alarm.QuarantineBurst, alarm.Critical, "%d files quarantined within %s", s.Recent.Quarantined, time.Duration(c.BurstWindow))
	}
	if s.Recent.Refused >= c.RefusalBurst {
		raise(alarm.RefusalBurst, alarm.Warning, "%d requests refused within %s", s.Recent.Refused, time.Duration(c.BurstWindow))
	}
	if len(s.Recent.Frequent) > 0 {
		raise(alarm.HighFrequency, alarm.Warning, "%d requests a minute or more from: %s", c.HighFrequency, strings.Join(s.Recent.Frequent, ", "))
	}
	if full(q.Backlog, q.MaxBacklog, c.SpoolFull) || full(q.Unacked, q.MaxUnacked, c.SpoolFull) {
		raise(alarm.SpoolFull, alarm.Warning, "backlog %d of %d, unacknowledged envelopes %d of %d", q.Backlog, q.MaxBacklog, q.Unacked, q.MaxUnacked)
	}
	if d := s.Disk; d.Total > 0 && float64(d.Free) < c.DiskFree*float64(d.Total) {
		raise(alarm.DiskFull, alarm.Critical, "%s: %.1f%% free (alarms.disk_free %.0f%%)", d.Path, 100*float64(d.Free)/float64(d.Total), 100*c.DiskFree)
	}
	warn := time.Duration(c.ExpiryWarning)
	if e := s.Keys.Expires; !e.IsZero() && now.Add(warn).After(e) {
		sev := alarm.Warning
		if !now.Before(e) {
			sev = alarm.Critical
		}
		raise(alarm.KeyExpiry, sev, "signing key %s reaches alarms.key_max_age on %s: rotate it (ferryctl keys rotate)", s.Keys.Signing, e.UTC().Format(time.DateOnly))
	}
	if p := s.Policy; p != nil && !p.Expires.IsZero() && now.Add(warn).After(p.Expires) {
		sev := alarm.Warning
		if !now.Before(p.Expires) {
			sev = alarm.Critical
		}
		raise(alarm.PolicyExpiry, sev, "the policy in force reaches alarms.policy_max_age on %s: review it and sign it again", p.Expires.UTC().Format(time.DateOnly))
	}
	if s.Audit.Inconsistent != "" {
		raise(alarm.AuditInconsistent, alarm.Critical, "%s", s.Audit.Inconsistent)
	}
	// Witnessing stopped: the peer is heard from, but none of its
	// checkpoints was countersigned for alarms.unacked before that.
	since := s.Audit.Witnessed
	if since.IsZero() || since.Before(s.Started) {
		since = s.Started
	}
	if s.PeerHeard.At.Sub(since) > time.Duration(c.Unacked) {
		raise(alarm.WitnessStopped, alarm.Warning, "%s is heard from but no checkpoint of its audit log was countersigned for %s", s.Peer, ago(since))
	}
	return out
}

// WaitingToSend is the Queue.Envelopes state of envelopes sealed and not
// yet sent, on either zone.
const WaitingToSend = "sealed"

// full reports whether n has reached frac of limit.
func full(n, limit int, frac float64) bool {
	return limit > 0 && float64(n) >= frac*float64(limit)
}
