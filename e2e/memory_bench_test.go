package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/sample"
)

// rssKiB returns a process's resident memory now (VmRSS) and its peak
// (VmHWM), in KiB, from /proc.
func rssKiB(pid int) (now, peak int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			now = n
		case "VmHWM":
			peak = n
		}
	}
	return now, peak, sc.Err()
}

// reportRSS adds the peak resident memory of a (MiB) to b's metrics.
func reportRSS(b *testing.B, a *agent, unit string) {
	b.Helper()
	_, peak, err := rssKiB(a.cmd.Process.Pid)
	if err != nil {
		b.Logf("rss of %s: %v", a.name, err)
		return
	}
	b.ReportMetric(float64(peak)/1024, unit)
}

// BenchmarkBacklogMemory fills the DMZ spool with b.N requests while
// the intranet is away (nothing is answered, nothing acknowledged), and
// reports the DMZ agent's resident memory at 1/10 of the backlog and at
// the end: the spool is on disk, so memory must not grow with the
// backlog. FERRY_BACKLOG_CLIENTS posts from that many clients (64).
//
//	go test -run '^$' -bench BacklogMemory -benchtime 1000000x -timeout 30m ./e2e
func BenchmarkBacklogMemory(b *testing.B) {
	d := newDeployment(b)
	// Room for the whole backlog; nothing else changes.
	cfg := filepath.Join(d.dir, "dmz", "dmz.yaml")
	data, err := os.ReadFile(cfg)
	if err != nil {
		b.Fatal(err)
	}
	extra := fmt.Sprintf("limits: {max_backlog: %d, max_unacked: %d}\n", b.N+1000, b.N+1000)
	if err := os.WriteFile(cfg, append(data, extra...), 0o640); err != nil {
		b.Fatal(err)
	}
	dz := d.start(b, "dmz-agent")
	d.waitReady(b, dz)
	clients := 64
	if n, err := strconv.Atoi(os.Getenv("FERRY_BACKLOG_CLIENTS")); err == nil && n > 0 {
		clients = n
	}
	c := sample.Citizens()[0]
	params := map[string]any{"id_number": c.IDNumber, "plate": c.Plate}
	d.client.Transport = &http.Transport{MaxIdleConnsPerHost: clients}
	var next atomic.Int64
	var tenth sync.Once
	var rssTenth int64
	var failed atomic.Value
	var wg sync.WaitGroup
	b.ResetTimer()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				st := d.submitNoFatal("violations.query", params)
				if st.err != nil || st.code != http.StatusAccepted {
					failed.Store(fmt.Sprintf("request %d: %v (HTTP %d)", n, st.err, st.code))
					return
				}
				if n == int64(b.N/10) {
					tenth.Do(func() { rssTenth, _, _ = rssKiB(dz.cmd.Process.Pid) })
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if f := failed.Load(); f != nil {
		b.Fatal(f)
	}
	// Let the batcher seal what it holds, then measure.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for ctx.Err() == nil {
		st := d.doNoFatal(http.MethodGet, "/readyz", nil)
		if st.err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	now, peak, err := rssKiB(dz.cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	b.ReportMetric(float64(rssTenth)/1024, "rss-tenth-MiB")
	b.ReportMetric(float64(now)/1024, "rss-end-MiB")
	b.ReportMetric(float64(peak)/1024, "rss-peak-MiB")
	if fi, err := os.Stat(filepath.Join(d.dir, "dmz", "state", "spool.db")); err == nil {
		b.ReportMetric(float64(fi.Size())/(1<<20), "spool-MiB")
	}
	dz.stop(b)
}
