package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/sample"
)

// benchConcurrency is the number of concurrent API clients in
// BenchmarkRoundTrip/bridge.
const benchConcurrency = 64

// BenchmarkRoundTrip measures end-to-end requests per second: each request
// is accepted over HTTP by a dmz-agent process, crosses to an
// intranet-agent process in a signed, encrypted envelope through a real
// directory, is answered from the replica, and its result comes back and is
// read by the client. The baseline in the same run, cli-age-minisign, seals
// the same request one file at a time with the age and minisign command-line
// tools, the way a shell-script bridge would, and does nothing else.
func BenchmarkRoundTrip(b *testing.B) {
	c := sample.Citizens()[0]
	params := map[string]any{"id_number": c.IDNumber, "plate": c.Plate}

	// The whole policy engine (subject binding, rate limits kept and
	// updated, masks, the authorizer), with the sample's limits raised:
	// every request here is one citizen's.
	b.Run("bridge", func(b *testing.B) { benchBridge(b, sample.LoadPolicy(), params) })
	// The same statements and authorizer without subject binding, limits
	// or masks: the engine's cost is the difference.
	b.Run("bridge-bare-policy", func(b *testing.B) { benchBridge(b, sample.BarePolicy(), params) })
	// The design ferry replaces: an HTTP handler on the DMZ side that
	// queries the replica itself, as if the firewall had a hole to it
	// (direct_bench_test.go).
	b.Run("direct", func(b *testing.B) { benchDirect(b, sample.LoadPolicy(), params) })

	b.Run("cli-age-minisign", func(b *testing.B) {
		for _, tool := range []string{"age", "age-keygen", "minisign"} {
			if _, err := exec.LookPath(tool); err != nil {
				b.Skipf("%s not installed (apt-get install age minisign): baseline not measured", tool)
			}
		}
		dir := b.TempDir()
		run := func(name string, args ...string) {
			if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
				b.Fatalf("%s %v: %v\n%s", name, args, err, out)
			}
		}
		key := filepath.Join(dir, "age.key")
		run("age-keygen", "-o", key)
		pub, err := exec.Command("age-keygen", "-y", key).Output()
		if err != nil {
			b.Fatal(err)
		}
		run("minisign", "-G", "-W", "-p", filepath.Join(dir, "mini.pub"), "-s", filepath.Join(dir, "mini.key"))
		body, _ := json.Marshal(map[string]any{"id": "00000000000000000000000000000000", "operation": "violations.query", "params": params})
		req := filepath.Join(dir, "req.json")
		if err := os.WriteFile(req, body, 0o600); err != nil {
			b.Fatal(err)
		}
		recipient := string(pub[:len(pub)-1])
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			out := filepath.Join(dir, fmt.Sprintf("%d.age", i))
			run("age", "-r", recipient, "-o", out, req)
			run("minisign", "-S", "-s", filepath.Join(dir, "mini.key"), "-m", out, "-x", out+".minisig")
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	})
}

// benchBridge runs the round trip through both agents with the intranet
// policy pol.
func benchBridge(b *testing.B, pol []byte, params map[string]any) {
	benchBridgeVia(b, pol, params, nil)
}

// benchBridgeVia is benchBridge with setup, if not nil, called on the
// deployment before the agents start (to put ferries between them).
func benchBridgeVia(b *testing.B, pol []byte, params map[string]any, setup func(*deployment)) {
	d := newDeployment(b)
	if setup != nil {
		setup(d)
	}
	if err := os.WriteFile(filepath.Join(d.dir, "intranet", "policy.yaml"), pol, 0o640); err != nil {
		b.Fatal(err)
	}
	d.signIntranetPolicy(b, "admin1", "admin2")
	d.client.Transport = &http.Transport{MaxIdleConnsPerHost: 2 * benchConcurrency}
	in := d.start(b, "intranet-agent")
	dz := d.start(b, "dmz-agent")
	d.waitReady(b, dz)
	b.ResetTimer()
	// Open loop: submitters post as fast as the DMZ accepts, while as
	// many waiters long-poll for the results of accepted requests. The
	// clock stops when the last result has been read by a client.
	var (
		mu     sync.Mutex
		failed error
	)
	fail := func(err error) {
		mu.Lock()
		if failed == nil {
			failed = err
		}
		mu.Unlock()
	}
	work := make(chan struct{})
	type started struct {
		id    string
		start time.Time
	}
	accepted := make(chan started, b.N)
	lat := newLatencies(b.N)
	var submitters, waiters sync.WaitGroup
	for range benchConcurrency {
		submitters.Add(1)
		go func() {
			defer submitters.Done()
			for range work {
				start := time.Now()
				st := d.submitNoFatal("violations.query", params)
				if st.err != nil || st.code != http.StatusAccepted {
					fail(fmt.Errorf("submit: %v (HTTP %d)", st.err, st.code))
					continue
				}
				accepted <- started{st.ID, start}
			}
		}()
		waiters.Add(1)
		go func() {
			defer waiters.Done()
			for a := range accepted {
				id := a.id
				deadline := time.Now().Add(2 * time.Minute)
				for {
					st := d.doNoFatal(http.MethodGet, "/v1/requests/"+id+"?wait=10s", nil)
					if st.err != nil || st.code != http.StatusOK {
						fail(fmt.Errorf("GET %s: %v (HTTP %d)", id, st.err, st.code))
						break
					}
					if final(st.Status) {
						lat.add(time.Since(a.start))
						if st.Status != "done" {
							fail(fmt.Errorf("request %s ended %s (%s)", id, st.Status, st.Reason))
						}
						break
					}
					if time.Now().After(deadline) {
						fail(fmt.Errorf("request %s still %s after 2m", id, st.Status))
						break
					}
				}
			}
		}()
	}
	for i := 0; i < b.N; i++ {
		work <- struct{}{}
	}
	close(work)
	submitters.Wait()
	close(accepted)
	waiters.Wait()
	b.StopTimer()
	if failed != nil {
		b.Fatal(failed)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	lat.report(b)
	reportRSS(b, dz, "dmz-rss-MiB")
	reportRSS(b, in, "intranet-rss-MiB")
	dz.stop(b)
	in.stop(b)
}
