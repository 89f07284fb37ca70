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

	b.Run("bridge", func(b *testing.B) {
		d := newDeployment(b)
		d.client.Transport = &http.Transport{MaxIdleConnsPerHost: benchConcurrency}
		in := d.start(b, "intranet-agent")
		dz := d.start(b, "dmz-agent")
		d.waitReady(b, dz)
		b.ResetTimer()
		ids := make([]string, b.N)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var failed error
		work := make(chan int)
		for w := 0; w < benchConcurrency; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range work {
					st := d.submitNoFatal("violations.query", params)
					if st.err != nil || st.code != http.StatusAccepted {
						mu.Lock()
						failed = fmt.Errorf("submit: %v (HTTP %d)", st.err, st.code)
						mu.Unlock()
						continue
					}
					ids[i] = st.ID
				}
			}()
		}
		for i := 0; i < b.N; i++ {
			work <- i
		}
		close(work)
		wg.Wait()
		if failed != nil {
			b.Fatal(failed)
		}
		for _, id := range ids {
			if st := d.wait(b, id, 2*time.Minute); st.Status != "done" {
				b.Fatalf("request %s ended %s (%s)", id, st.Status, st.Reason)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		dz.stop(b)
		in.stop(b)
	})

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
