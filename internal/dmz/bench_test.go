package dmz

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchClients is the number of concurrent HTTP clients in
// BenchmarkIntake: 64, or FERRY_BENCH_CLIENTS (make bench also runs 256).
var benchClients = benchClientsFromEnv()

func benchClientsFromEnv() int {
	if n, err := strconv.Atoi(os.Getenv("FERRY_BENCH_CLIENTS")); err == nil && n > 0 && n <= 4096 {
		return n
	}
	return 64
}

// BenchmarkIntake measures durable intake: POST /v1/requests through the
// agent's real handler over a loopback HTTP server, each 202 sent only
// after the group commit holding the request (WAL, synchronous=FULL). The
// baseline in the same run is a no-op handler (read the body, decode the
// JSON, answer) on the same kind of server with the same clients; the
// ratio durable/no-op is reported as "ratio".
func BenchmarkIntake(b *testing.B) {
	e := startEnvQuiet(b)
	body := goodBody(b)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchClients, MaxConnsPerHost: benchClients}}

	noop := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		var v submitBody
		if err := json.Unmarshal(data, &v); err != nil {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		writeJSON(w, http.StatusAccepted, submitReply{ID: "0123456789abcdef0123456789abcdef", Status: "queued"})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: noop, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })

	var durLat, noopLat []time.Duration
	b.ResetTimer()
	durable := postLoad(b, client, e.base+"/v1/requests", body, b.N, &durLat)
	b.StopTimer()
	baseline := postLoad(b, client, "http://"+ln.Addr().String()+"/v1/requests", body, b.N, &noopLat)
	durableRate := float64(b.N) / durable.Seconds()
	noopRate := float64(b.N) / baseline.Seconds()
	st := e.agent.intake.Stats()
	b.ReportMetric(durableRate, "req/s")
	b.ReportMetric(noopRate, "noop-req/s")
	b.ReportMetric(durableRate/noopRate, "ratio")
	b.ReportMetric(quantileMs(durLat, 0.50), "p50-ms")
	b.ReportMetric(quantileMs(durLat, 0.99), "p99-ms")
	b.ReportMetric(quantileMs(noopLat, 0.50), "noop-p50-ms")
	b.ReportMetric(quantileMs(noopLat, 0.99), "noop-p99-ms")
	if st.Commits > 0 {
		b.ReportMetric(float64(st.Inserted)/float64(st.Commits), "req/commit")
	}
}

// startEnvQuiet is startEnv without the agent's log in the output.
func startEnvQuiet(b *testing.B) *env {
	b.Helper()
	old := testLoggerHook
	testLoggerHook = func(testing.TB) *slog.Logger { return slog.New(slog.DiscardHandler) }
	defer func() { testLoggerHook = old }()
	return startEnv(b)
}

// quantileMs returns the q quantile of d in milliseconds, sorting d.
func quantileMs(d []time.Duration, q float64) float64 {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return float64(d[int(q*float64(len(d)-1))]) / 1e6
}

// postLoad posts body to url n times from benchClients concurrent
// clients, each expecting 202, and returns how long it took; each
// request's latency is appended to lat.
func postLoad(b *testing.B, client *http.Client, url, body string, n int, lat *[]time.Duration) time.Duration {
	b.Helper()
	var mu sync.Mutex
	*lat = make([]time.Duration, 0, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	start := time.Now()
	for range benchClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				t0 := time.Now()
				req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+tokenPortal)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					failed.Store(err.Error())
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					failed.Store(resp.Status)
					return
				}
				d := time.Since(t0)
				mu.Lock()
				*lat = append(*lat, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f != nil {
		b.Fatalf("request failed: %v", f)
	}
	return time.Since(start)
}
