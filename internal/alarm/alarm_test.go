package alarm

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// logLines decodes the JSON log lines written to buf.
func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(buf.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	buf.Reset()
	return out
}

// newTestSet returns a Set logging JSON to the returned buffer, recording
// its events, on a clock the test moves.
func newTestSet(t *testing.T) (*Set, *bytes.Buffer, *[]Event, *time.Time) {
	t.Helper()
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var events []Event
	s := NewSet("dmz", logger, func(ev Event) { events = append(events, ev) })
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	return s, &buf, &events, &now
}

func TestNames(t *testing.T) {
	n := Names()
	if len(n) != 13 || !slices.IsSorted(n) {
		t.Fatalf("Names() = %v, want 13 sorted names", n)
	}
	n[0] = "changed"
	if Names()[0] == "changed" {
		t.Fatal("Names returns the package's slice, not a copy")
	}
}

func TestSet_Raise(t *testing.T) {
	s, buf, events, now := newTestSet(t)

	s.Raise(DiskFull, Critical, "/var/lib/ferry: 5.0% free")
	lines := logLines(t, buf)
	if len(lines) != 1 {
		t.Fatalf("first raise logged %d lines, want 1", len(lines))
	}
	l := lines[0]
	if l["level"] != "ERROR" || l["msg"] != "alarm raised" || l["alarm"] != DiskFull ||
		l["severity"] != "critical" || l["message"] != "/var/lib/ferry: 5.0% free" {
		t.Fatalf("raise log line = %v", l)
	}
	if len(*events) != 1 {
		t.Fatalf("first raise notified %d events, want 1", len(*events))
	}
	ev := (*events)[0]
	if ev.State != StateRaised || ev.Alarm != DiskFull || ev.Zone != "dmz" || ev.Severity != Critical ||
		len(ev.ID) != 32 || !ev.Time.Equal(*now) {
		t.Fatalf("event = %+v", ev)
	}
	since := *now

	// Raised again: only the message changes.
	*now = now.Add(time.Minute)
	s.Raise(DiskFull, Critical, "/var/lib/ferry: 4.0% free")
	if lines := logLines(t, buf); len(lines) != 0 {
		t.Fatalf("raising a raised alarm logged %v", lines)
	}
	if len(*events) != 1 {
		t.Fatalf("raising a raised alarm notified again: %v", *events)
	}
	a := s.Active()
	if len(a) != 1 || a[0].Message != "/var/lib/ferry: 4.0% free" || !a[0].Since.Equal(since) {
		t.Fatalf("Active() = %+v", a)
	}

	// A change of severity logs and notifies, and keeps Since.
	s.Raise(DiskFull, Warning, "/var/lib/ferry: 9.0% free")
	lines = logLines(t, buf)
	if len(lines) != 1 || lines[0]["level"] != "WARN" || lines[0]["severity"] != "warning" {
		t.Fatalf("severity change logged %v", lines)
	}
	if len(*events) != 2 || (*events)[1].Severity != Warning || (*events)[1].State != StateRaised {
		t.Fatalf("severity change events = %+v", *events)
	}
	if a := s.Active(); !a[0].Since.Equal(since) {
		t.Fatalf("severity change moved Since to %v", a[0].Since)
	}
	if (*events)[0].ID == (*events)[1].ID {
		t.Fatal("two events share an id")
	}
}

func TestSet_Clear(t *testing.T) {
	s, buf, events, _ := newTestSet(t)

	s.Clear(PeerSilent) // clear already: nothing
	if lines := logLines(t, buf); len(lines) != 0 || len(*events) != 0 {
		t.Fatalf("clearing a clear alarm: lines %v, events %v", lines, *events)
	}
	s.Raise(PeerSilent, Critical, "no envelope from intranet for 20m")
	logLines(t, buf)
	s.Clear(PeerSilent)
	lines := logLines(t, buf)
	if len(lines) != 1 || lines[0]["level"] != "INFO" || lines[0]["msg"] != "alarm cleared" || lines[0]["alarm"] != PeerSilent {
		t.Fatalf("clear logged %v", lines)
	}
	if len(*events) != 2 || (*events)[1].State != StateCleared || (*events)[1].Alarm != PeerSilent {
		t.Fatalf("events = %+v", *events)
	}
	s.Clear(PeerSilent)
	if lines := logLines(t, buf); len(lines) != 0 || len(*events) != 2 {
		t.Fatalf("second clear: lines %v, events %d", lines, len(*events))
	}
	if a := s.Active(); len(a) != 0 {
		t.Fatalf("Active() after clear = %v", a)
	}
}

func TestSet_Unknown(t *testing.T) {
	s, buf, events, _ := newTestSet(t)
	s.Raise("no_such_alarm", Warning, "x")
	s.Clear("no_such_alarm")
	lines := logLines(t, buf)
	if len(lines) != 2 || lines[0]["level"] != "ERROR" || lines[1]["level"] != "ERROR" {
		t.Fatalf("unknown name logged %v", lines)
	}
	if len(*events) != 0 || len(s.Active()) != 0 {
		t.Fatalf("unknown name raised something: %v %v", *events, s.Active())
	}

	s.Raise(SpoolFull, "loud", "backlog 900 of 1000")
	if a := s.Active(); len(a) != 1 || a[0].Severity != Critical {
		t.Fatalf("unknown severity: Active() = %v, want critical", a)
	}
}

func TestSet_Active(t *testing.T) {
	s, _, _, _ := newTestSet(t)
	for _, name := range []string{WitnessStopped, AuditInconsistent, KeyExpiry, DiskFull} {
		s.Raise(name, Warning, name)
	}
	var got []string
	for _, a := range s.Active() {
		got = append(got, a.Name)
	}
	want := []string{AuditInconsistent, DiskFull, KeyExpiry, WitnessStopped}
	if !slices.Equal(got, want) {
		t.Fatalf("Active() names = %v, want %v", got, want)
	}
}

func TestSet_Collect(t *testing.T) {
	s := NewSet("intranet", nil, nil)
	s.Raise(SequenceGap, Warning, "1 missing sequence range")
	s.Clear(SequenceGap)
	s.Raise(SequenceGap, Warning, "2 missing sequence ranges")
	s.Raise(SequenceGap, Critical, "severity change is no new transition")
	s.Raise(DiskFull, Critical, "1% free")

	if n := testutil.CollectAndCount(s, MetricActive); n != len(Names()) {
		t.Fatalf("%s has %d series, want one per alarm name (%d)", MetricActive, n, len(Names()))
	}
	if n := testutil.CollectAndCount(s, MetricRaised); n != len(Names()) {
		t.Fatalf("%s has %d series, want %d", MetricRaised, n, len(Names()))
	}
	want := `
# HELP ferry_alarm_active Whether the alarm is raised (1) or clear (0).
# TYPE ferry_alarm_active gauge
ferry_alarm_active{alarm="audit_inconsistent"} 0
ferry_alarm_active{alarm="disk_full"} 1
ferry_alarm_active{alarm="high_frequency"} 0
ferry_alarm_active{alarm="key_expiry"} 0
ferry_alarm_active{alarm="medium_stalled"} 0
ferry_alarm_active{alarm="peer_silent"} 0
ferry_alarm_active{alarm="policy_expiry"} 0
ferry_alarm_active{alarm="quarantine_burst"} 0
ferry_alarm_active{alarm="refusal_burst"} 0
ferry_alarm_active{alarm="sequence_gap"} 1
ferry_alarm_active{alarm="spool_full"} 0
ferry_alarm_active{alarm="unacknowledged"} 0
ferry_alarm_active{alarm="witness_stopped"} 0
# HELP ferry_alarms_raised_total Transitions of the alarm from clear to raised.
# TYPE ferry_alarms_raised_total counter
ferry_alarms_raised_total{alarm="audit_inconsistent"} 0
ferry_alarms_raised_total{alarm="disk_full"} 1
ferry_alarms_raised_total{alarm="high_frequency"} 0
ferry_alarms_raised_total{alarm="key_expiry"} 0
ferry_alarms_raised_total{alarm="medium_stalled"} 0
ferry_alarms_raised_total{alarm="peer_silent"} 0
ferry_alarms_raised_total{alarm="policy_expiry"} 0
ferry_alarms_raised_total{alarm="quarantine_burst"} 0
ferry_alarms_raised_total{alarm="refusal_burst"} 0
ferry_alarms_raised_total{alarm="sequence_gap"} 2
ferry_alarms_raised_total{alarm="spool_full"} 0
ferry_alarms_raised_total{alarm="unacknowledged"} 0
ferry_alarms_raised_total{alarm="witness_stopped"} 0
`
	if err := testutil.CollectAndCompare(s, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.CollectAndLint(s); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
}

func TestSet_Concurrent(t *testing.T) {
	var mu sync.Mutex
	var events []Event
	s := NewSet("dmz", nil, func(ev Event) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				s.Raise(RefusalBurst, Warning, "burst")
				s.Active()
				s.Clear(RefusalBurst)
			}
		})
	}
	wg.Wait()
	// Transitions alternate raised, cleared, raised, …, in notify order.
	for i, ev := range events {
		want := StateRaised
		if i%2 == 1 {
			want = StateCleared
		}
		if ev.State != want {
			t.Fatalf("event %d is %s, want %s", i, ev.State, want)
		}
	}
}
