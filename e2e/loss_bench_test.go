package e2e

import (
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/medium/chaos"
	"github.com/ferrybridge/ferry/internal/sample"
)

// BenchmarkRoundTrip_loss is BenchmarkRoundTrip/bridge with a ferry in
// each direction that loses a share of the files: 0% (the ferries' own
// cost, the baseline), 1% and 10%. Lost request envelopes come back by
// the DMZ's re-sends, lost result envelopes by the intranet answering
// those re-sends again; the figure is requests per second until the last
// client has its result. Run it with a fixed count, as make bench does:
// go test -run '^$' -bench RoundTrip_loss -benchtime 5000x ./e2e
func BenchmarkRoundTrip_loss(b *testing.B) {
	c := sample.Citizens()[0]
	params := map[string]any{"id_number": c.IDNumber, "plate": c.Plate}
	for _, loss := range []float64{0, 0.01, 0.10} {
		b.Run(fmt.Sprintf("loss-%g%%", loss*100), func(b *testing.B) {
			var ferries []*ferry
			benchBridgeVia(b, sample.LoadPolicy(), params, func(d *deployment) {
				d.viaFerries(b, "1s")
				faults := chaos.Faults{Loss: loss}
				ferries = append(ferries,
					d.startFerry(b, requestsOut, "requests", 1, faults),
					d.startFerry(b, resultsOut, "results", 2, faults))
			})
			for _, f := range ferries {
				st := f.Stats()
				b.ReportMetric(float64(st.Lost), f.name+"-lost")
			}
		})
	}
}

// outage is how long BenchmarkDrainAfterOutage stops the return path;
// FERRY_OUTAGE overrides it.
func outage(b *testing.B) time.Duration {
	if s := os.Getenv("FERRY_OUTAGE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			b.Fatalf("FERRY_OUTAGE: %v", err)
		}
		return d
	}
	return time.Minute
}

// BenchmarkDrainAfterOutage measures how long the bridge takes to drain
// back to no backlog after the return path stops for a minute
// (FERRY_OUTAGE) under a steady load of 200 requests per second: the
// results ferry stops, the intranet keeps answering into its outbox
// directory and the DMZ keeps accepting, then the ferry starts again. The
// figure, drain-s, is the time from the restart until every request
// accepted before it is final; backlog is how many were waiting at the
// restart. It runs once whatever b.N is.
func BenchmarkDrainAfterOutage(b *testing.B) {
	const rate = 200 // requests per second
	c := sample.Citizens()[0]
	params := map[string]any{"id_number": c.IDNumber, "plate": c.Plate}
	d := newDeployment(b)
	if err := os.WriteFile(filepath.Join(d.dir, "intranet", "policy.yaml"), sample.LoadPolicy(), 0o640); err != nil {
		b.Fatal(err)
	}
	d.signIntranetPolicy(b, "admin1", "admin2")
	d.viaFerries(b, "5s")
	d.startFerry(b, requestsOut, "requests", 1, chaos.Faults{})
	results := d.startFerry(b, resultsOut, "results", 2, chaos.Faults{})
	in := d.start(b, "intranet-agent")
	dz := d.start(b, "dmz-agent")
	d.waitReady(b, dz)
	spool, err := sql.Open("sqlite3", "file:"+filepath.Join(d.dir, "dmz", "state", "spool.db")+"?mode=ro&_busy_timeout=10000")
	if err != nil {
		b.Fatal(err)
	}
	defer spool.Close()
	backlog := func(before time.Time) int {
		var n int
		if err := spool.QueryRow(`SELECT count(*) FROM requests WHERE status NOT IN ('done', 'rejected', 'failed', 'expired')
			AND received <= ?`, before.UnixMilli()).Scan(&n); err != nil {
			b.Fatal(err)
		}
		return n
	}

	// Steady load until stop closes, from a few clients.
	stop := make(chan struct{})
	var refused atomic.Int64
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	work := make(chan struct{}, rate)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				if st := d.submitNoFatal("violations.query", params); st.err != nil || st.code != http.StatusAccepted {
					refused.Add(1)
				}
			}
		}()
	}
	go func() {
		defer close(work)
		for {
			select {
			case <-tick.C:
				select {
				case work <- struct{}{}:
				default: // the clients are behind: the offered load drops
				}
			case <-stop:
				return
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	b.ResetTimer()
	time.Sleep(5 * time.Second)
	results.stop()
	b.Logf("return path stopped for %s", outage(b))
	time.Sleep(outage(b))
	resumed := time.Now()
	waiting := backlog(resumed)
	d.startFerry(b, resultsOut, "results", 3, chaos.Faults{})
	for backlog(resumed) > 0 {
		if time.Since(resumed) > 10*time.Minute {
			b.Fatalf("%d requests still waiting 10 minutes after the return path came back", backlog(resumed))
		}
		time.Sleep(50 * time.Millisecond)
	}
	drain := time.Since(resumed)
	b.StopTimer()
	b.ReportMetric(drain.Seconds(), "drain-s")
	b.ReportMetric(float64(waiting), "backlog")
	b.ReportMetric(float64(refused.Load()), "refused")
	dz.stop(b)
	in.stop(b)
}
