package metrics

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrybridge/ferry/internal/alarm"
	"github.com/ferrybridge/ferry/internal/callback"
	"github.com/ferrybridge/ferry/internal/status"
)

// exercise makes one event of every kind and sets a snapshot, so that
// every metric has a series.
func exercise(m *Agent) {
	now := time.Now()
	m.Request("licence.renew", "accepted", time.Millisecond)
	m.Envelope(Sent, now)
	m.Quarantine("bad_signature")
	m.Gap(1)
	m.Retransmission(1)
	m.Decision("refuse", "rate_limited")
	m.RateLimit(1)
	m.MediumError(Send)
	m.SetSnapshot(&status.Snapshot{Taken: now, Queue: status.Queue{Backlog: 3, MaxBacklog: 10,
		OldestUnacked: now.Add(-time.Minute), Envelopes: map[string]int{"sealed": 1}},
		Policy: &status.Policy{Expires: now}, Disk: status.Disk{Free: 1, Total: 4}})
}

// families returns the ferry_ metric names m's registry exports.
func families(t *testing.T, m *Agent) []string {
	t.Helper()
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "ferry_") {
			out = append(out, mf.GetName())
		}
	}
	return out
}

// TestNew_exportsItsNames: each agent exports exactly the names NamesOf
// gives it, every one labelled with the zone, and between them every
// name of Names.
func TestNew_exportsItsNames(t *testing.T) {
	seen := map[string]bool{}
	for _, agent := range []string{DMZ, Intranet} {
		secret := filepath.Join(t.TempDir(), "webhook.secret")
		if err := alarm.GenerateSecret(secret); err != nil {
			t.Fatal(err)
		}
		cfg := alarm.DefaultConfig().Webhook
		cfg.URL, cfg.SecretFile = "https://127.0.0.1:1/ferry", secret
		wh, err := alarm.NewWebhook(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		extra := []prometheus.Collector{alarm.NewSet("z", nil, nil), wh}
		if agent == DMZ {
			extra = append(extra, callback.NewMetrics())
		}
		m := New(agent, "z", "v1", extra...)
		exercise(m)
		got := families(t, m)
		want := NamesOf(agent)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s exports %v\nwant %v", agent, got, want)
		}
		for _, n := range got {
			seen[n] = true
		}
	}
	for _, n := range Names() {
		if !seen[n] {
			t.Errorf("%s is exported by neither agent", n)
		}
	}
}

// TestNew_zoneLabel: every ferry_ series carries the agent's zone.
func TestNew_zoneLabel(t *testing.T) {
	m := New(DMZ, "dmz-east", "v1", alarm.NewSet("dmz-east", nil, nil))
	exercise(m)
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "ferry_") {
			continue
		}
		for _, s := range mf.GetMetric() {
			ok := false
			for _, l := range s.GetLabel() {
				ok = ok || (l.GetName() == "zone" && l.GetValue() == "dmz-east")
			}
			if !ok {
				t.Errorf("%s %v has no zone=\"dmz-east\"", mf.GetName(), s.GetLabel())
			}
		}
	}
}
