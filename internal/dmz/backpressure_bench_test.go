package dmz

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"
)

// startBenchAgent runs a quiet agent on a new deployment with the config
// extra; without gate it runs with no backpressure at all (a nil gate).
func startBenchAgent(b *testing.B, extra string, gate bool) string {
	b.Helper()
	path, _, _ := writeDeployment(b, b.TempDir(), extra)
	cfg, err := LoadConfig(path)
	if err != nil {
		b.Fatal(err)
	}
	a, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	if !gate {
		a.gate = nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("Run: %v", err)
		}
		a.Close()
	})
	for !a.ready.Load() {
		time.Sleep(5 * time.Millisecond)
	}
	return "http://" + a.Addr().String() + "/v1/requests"
}

// BenchmarkIntakeBackpressure measures durable intake (POST /v1/requests,
// 64 concurrent clients over loopback HTTP, a 202 only after the group
// commit) with backpressure, against a baseline in the same run: the same
// agent without it (no gate: no admission, no reservations, no counting).
// The limits are set high enough that nothing is refused, so what is
// measured is what backpressure costs every request: the gate's mutex on
// admission and release, and the count of a backlog that grows with every
// request (nothing answers), five times a second. The two agents take
// turns, in four rounds each, so that drift in the machine hits both.
// Reported: req/s with the gate, req/s without, and their ratio.
func BenchmarkIntakeBackpressure(b *testing.B) {
	const extra = "limits: {max_backlog: 1000000000, max_unacked: 1000000000}\n"
	withGate := startBenchAgent(b, extra, true)
	without := startBenchAgent(b, extra, false)
	body := goodBody(b)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchClients, MaxConnsPerHost: benchClients}}
	run := func(url string, n int) time.Duration {
		var lat []time.Duration
		return postLoad(b, client, url, body, n, &lat)
	}
	const rounds = 4
	per := max(b.N/rounds, 1)
	var gated, plain time.Duration
	b.ResetTimer()
	for range rounds {
		gated += run(withGate, per)
		b.StopTimer()
		plain += run(without, per)
		b.StartTimer()
	}
	b.StopTimer()
	n := float64(per * rounds)
	b.ReportMetric(n/gated.Seconds(), "req/s")
	b.ReportMetric(n/plain.Seconds(), "nogate-req/s")
	b.ReportMetric(plain.Seconds()/gated.Seconds(), "ratio")
}
