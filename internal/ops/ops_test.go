package ops

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrybridge/ferry/internal/alarm"
	"github.com/ferrybridge/ferry/internal/keys"
	"github.com/ferrybridge/ferry/internal/metrics"
	"github.com/ferrybridge/ferry/internal/status"
)

// newOps makes the Ops of a DMZ zone with real audit keys, an admin
// socket, and a log written to buf.
func newOps(t *testing.T, buf *bytes.Buffer) (*Ops, string) {
	t.Helper()
	dir := t.TempDir()
	own, peer := filepath.Join(dir, "dmz"), filepath.Join(dir, "intranet")
	for _, z := range []struct{ dir, zone string }{{own, "dmz"}, {peer, "intranet"}} {
		if err := keys.GenerateAudit(z.dir, z.zone); err != nil {
			t.Fatal(err)
		}
	}
	if err := keys.CopyAuditPub(peer, "intranet", own); err != nil {
		t.Fatal(err)
	}
	ak, err := keys.LoadAudit(own, "dmz")
	if err != nil {
		t.Fatal(err)
	}
	pa, err := keys.LoadPeerAudit(own, "intranet")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "admin.sock")
	o, err := New(Config{Agent: metrics.DMZ, Zone: "dmz", Peer: "intranet", Admin: status.Config{Socket: sock},
		Alarms: alarm.DefaultConfig(), StateDir: dir, Audit: ak, PeerAudit: pa,
		Logger: slog.New(slog.NewTextHandler(buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return o, sock
}

// TestOps: the events an agent reports reach the metrics and the
// snapshot, the snapshot is served on the admin socket while Run runs,
// and a reload that changes the webhook says it needs a restart.
func TestOps(t *testing.T) {
	var buf bytes.Buffer
	o, sock := newOps(t, &buf)
	now := time.Now()
	o.Sent(now)
	o.Received(now, 2)
	o.ReceiveError()
	for range alarm.DefaultQuarantineBurst {
		o.Quarantined("bad_signature")
	}
	o.Request("portal", "110101199003074514", true)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	var s *status.Snapshot
	for deadline := time.Now().Add(10 * time.Second); ; {
		var err error
		if s, err = status.Fetch(ctx, sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s.LastSent.IsZero() || s.LastReceived.IsZero() || s.Recent.Quarantined != alarm.DefaultQuarantineBurst || s.Recent.Refused != 1 {
		t.Fatalf("snapshot %+v", s)
	}
	if len(s.Alarms) == 0 || s.Alarms[0].Name != alarm.QuarantineBurst {
		t.Fatalf("alarms %+v", s.Alarms)
	}
	g := o.Metrics.Gatherer()
	want := `
# HELP ferry_medium_errors_total Failed medium operations by direction.
# TYPE ferry_medium_errors_total counter
ferry_medium_errors_total{direction="receive",zone="dmz"} 1
ferry_medium_errors_total{direction="send",zone="dmz"} 0
# HELP ferry_sequence_gaps_total Sequence gaps seen on the received channel.
# TYPE ferry_sequence_gaps_total counter
ferry_sequence_gaps_total{zone="dmz"} 2
`
	if err := testutil.GatherAndCompare(g, strings.NewReader(want), metrics.MediumErrors, metrics.GapsOpened); err != nil {
		t.Fatal(err)
	}
	// The subject is counted by its keyed hash only.
	if strings.Contains(buf.String(), "110101199003074514") {
		t.Fatal("the subject reached the log")
	}

	c := alarm.DefaultConfig()
	c.Webhook.URL = "https://alerts.example/ferry"
	o.SetAlarms(c)
	if !strings.Contains(buf.String(), "alarms.webhook") {
		t.Fatalf("a changed webhook was not logged as needing a restart:\n%s", buf.String())
	}
}
