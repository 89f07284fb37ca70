package dmz

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBatcher_steadyStream: under a steady stream of requests, envelopes
// are sealed batch.max_delay apart (or full), not one per intake commit
// once the first deadline has passed.
func TestBatcher_steadyStream(t *testing.T) {
	e := startEnv(t)
	e.stop()
	e.rewriteFile(t, "max_delay: 5ms", "max_delay: 300ms")
	e.start(t, e.cfgPath)
	// Eight clients posting without pause for 1.5 s: requests are
	// committed while envelopes are sealed.
	start := time.Now()
	var wg sync.WaitGroup
	var sent atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < 1500*time.Millisecond {
				if r := e.do(t, http.MethodPost, "/v1/requests", tokenPortal, goodBody(t), nil); r.code != http.StatusAccepted {
					t.Errorf("HTTP %d %s", r.code, r.raw)
					return
				}
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	n := sent.Load()
	took := time.Since(start)
	deadline := time.Now().Add(5 * time.Second)
	for e.unsealed(t) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	envs, err := e.agent.spool.ListEnvelopes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// One envelope per 256 requests (batch.max_requests) or 300 ms of
	// traffic, one more for the rest, and the first heartbeat or two;
	// not one per intake commit.
	if max := int(n)/256 + int(took/(300*time.Millisecond)) + 4; len(envs) > max {
		t.Fatalf("%d requests over %v sealed into %d envelopes, want at most %d", n, took.Round(time.Millisecond), len(envs), max)
	}
}

// unsealed returns how many requests wait to be sealed.
func (e *env) unsealed(t testing.TB) int {
	t.Helper()
	n, err := e.agent.spool.CountUnsealed(context.Background(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
