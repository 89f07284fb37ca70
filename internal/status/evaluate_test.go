package status

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/alarm"
)

// healthy returns a snapshot that raises no alarm at now.
func healthy(now time.Time) *Snapshot {
	return &Snapshot{
		Zone: "dmz", Peer: "intranet", Started: now.Add(-time.Hour), Taken: now,
		Keys:      Keys{Signing: "0badc0de", Since: now.AddDate(0, -1, 0), Expires: now.AddDate(0, 11, 0)},
		Policy:    &Policy{Since: now.AddDate(0, -1, 0), Expires: now.AddDate(0, 11, 0)},
		Queue:     Queue{Backlog: 10, MaxBacklog: 100, Unacked: 1, MaxUnacked: 100, OldestUnacked: now.Add(-time.Minute), Envelopes: map[string]int{"sealed": 1}},
		LastSent:  now.Add(-time.Second),
		PeerHeard: PeerHeard{At: now.Add(-time.Second)},
		Audit:     Audit{Witnessed: now.Add(-10 * time.Second)},
		Disk:      Disk{Path: "/var/lib/ferry", Free: 50, Total: 100},
	}
}

func names(as []alarm.Alarm) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.Name)
	}
	return out
}

func TestEvaluate(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	c := alarm.DefaultConfig()
	for _, tc := range []struct {
		name   string
		change func(s *Snapshot)
		want   string // the one alarm raised; "" for none
		sev    alarm.Severity
	}{
		{"healthy", func(s *Snapshot) {}, "", ""},
		{"peer silent", func(s *Snapshot) { s.PeerHeard.Silent = true }, alarm.PeerSilent, alarm.Critical},
		{"unacknowledged", func(s *Snapshot) { s.Queue.OldestUnacked = now.Add(-16 * time.Minute) }, alarm.Unacknowledged, alarm.Warning},
		{"medium stalled", func(s *Snapshot) { s.LastSent = now.Add(-11 * time.Minute) }, alarm.MediumStalled, alarm.Critical},
		{"nothing to send is no stall", func(s *Snapshot) { s.LastSent = now.Add(-11 * time.Minute); s.Queue.Envelopes["sealed"] = 0 }, "", ""},
		{"never sent since a start long ago", func(s *Snapshot) { s.LastSent = time.Time{} }, alarm.MediumStalled, alarm.Critical},
		{"gap", func(s *Snapshot) { s.Queue.Gaps = 2 }, alarm.SequenceGap, alarm.Warning},
		{"quarantine burst", func(s *Snapshot) { s.Recent.Quarantined = c.QuarantineBurst }, alarm.QuarantineBurst, alarm.Critical},
		{"below the burst", func(s *Snapshot) { s.Recent.Quarantined = c.QuarantineBurst - 1 }, "", ""},
		{"refusal burst", func(s *Snapshot) { s.Recent.Refused = c.RefusalBurst }, alarm.RefusalBurst, alarm.Warning},
		{"high frequency", func(s *Snapshot) { s.Recent.Frequent = []string{"client portal"} }, alarm.HighFrequency, alarm.Warning},
		{"backlog near full", func(s *Snapshot) { s.Queue.Backlog = 80 }, alarm.SpoolFull, alarm.Warning},
		{"window near full", func(s *Snapshot) { s.Queue.Unacked = 90 }, alarm.SpoolFull, alarm.Warning},
		{"disk full", func(s *Snapshot) { s.Disk.Free = 9 }, alarm.DiskFull, alarm.Critical},
		{"key near expiry", func(s *Snapshot) { s.Keys.Expires = now.AddDate(0, 0, 20) }, alarm.KeyExpiry, alarm.Warning},
		{"key expired", func(s *Snapshot) { s.Keys.Expires = now.Add(-time.Hour) }, alarm.KeyExpiry, alarm.Critical},
		{"policy near expiry", func(s *Snapshot) { s.Policy.Expires = now.AddDate(0, 0, 29) }, alarm.PolicyExpiry, alarm.Warning},
		{"no policy on the DMZ yet", func(s *Snapshot) { s.Policy = nil }, "", ""},
		{"audit inconsistent", func(s *Snapshot) { s.Audit.Inconsistent = "size 40 does not contain the 29 witnessed" }, alarm.AuditInconsistent, alarm.Critical},
		{"witnessing stopped", func(s *Snapshot) { s.Audit.Witnessed = now.Add(-20 * time.Minute) }, alarm.WitnessStopped, alarm.Warning},
		{"never witnessed, peer long silent", func(s *Snapshot) { s.Audit.Witnessed = time.Time{}; s.PeerHeard.At = s.Started.Add(time.Minute) }, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := healthy(now)
			tc.change(s)
			got := Evaluate(s, c, now)
			if tc.want == "" {
				if len(got) > 0 {
					t.Fatalf("raised %v, want none", got)
				}
				return
			}
			if len(got) != 1 || got[0].Name != tc.want || got[0].Severity != tc.sev || got[0].Message == "" {
				t.Fatalf("raised %+v, want only %s (%s)", got, tc.want, tc.sev)
			}
		})
	}
}

// TestMonitor_Refresh: a monitor raises what Evaluate says and clears it
// when the condition goes, counts quarantines in the burst window, and
// reports the alarms in the snapshot.
func TestMonitor_Refresh(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	clock := now
	gaps := 1
	set := alarm.NewSet("dmz", nil, nil)
	m := NewMonitor(MonitorConfig{
		Agent: "dmz-agent", Zone: "dmz", Peer: "intranet", Alarms: alarm.DefaultConfig(), Set: set,
		StateDir: t.TempDir(), Now: func() time.Time { return clock },
		Collect: func(ctx context.Context, s *Snapshot) error {
			h := healthy(clock)
			h.Started, h.Taken = s.Started, s.Taken
			*s = *h
			s.Queue.Gaps = gaps
			return nil
		},
	})
	s := m.Refresh(context.Background())
	if got := names(s.Alarms); !slices.Equal(got, []string{alarm.SequenceGap}) {
		t.Fatalf("alarms %v, want [sequence_gap]", got)
	}
	if !s.InAlarm() || m.Snapshot() != s {
		t.Fatal("snapshot not kept or not in alarm")
	}
	if s.Disk.Total == 0 {
		t.Fatal("disk figures missing")
	}
	gaps = 0
	for range alarm.DefaultQuarantineBurst {
		m.Quarantined()
	}
	s = m.Refresh(context.Background())
	if got := names(s.Alarms); !slices.Equal(got, []string{alarm.QuarantineBurst}) {
		t.Fatalf("alarms %v, want [quarantine_burst]", got)
	}
	if !strings.Contains(s.Alarms[0].Message, "5 files quarantined") {
		t.Fatalf("message %q", s.Alarms[0].Message)
	}
	// Past the burst window the quarantines no longer count.
	clock = clock.Add(alarm.DefaultBurstWindow + time.Minute)
	s = m.Refresh(context.Background())
	if s.InAlarm() {
		t.Fatalf("alarms %v after the window, want none", names(s.Alarms))
	}
}
