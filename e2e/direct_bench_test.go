package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/policy"
	"github.com/ferrybridge/ferry/internal/sample"
)

// benchDirect is BenchmarkRoundTrip's baseline: the design ferry replaces,
// an HTTP handler that answers a citizen's request by querying the
// replica itself, as if the firewall had a hole to the intranet's
// database. It gets every advantage: the same policy check and the same
// SQL statement on the same replica file, and nothing else (no spool, no
// envelopes, no audit, no second process). The same 64 clients post the
// same request and read the rows in the answer.
func benchDirect(b *testing.B, pol []byte, params map[string]any) {
	d := newDeployment(b)
	p, err := policy.Parse("policy.yaml", pol)
	if err != nil {
		b.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(d.dir, "intranet", "replica.db")+"?mode=ro&_query_only=true")
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(4)
	b.Cleanup(func() { db.Close() })
	subject := sample.Citizens()[0].IDNumber
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Operation string          `json:"operation"`
			Params    json.RawMessage `json:"params"`
			Subject   string          `json:"subject"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		checked, err := p.Evaluate(policy.Request{Client: "portal", Subject: req.Subject, Operation: req.Operation, Params: req.Params, Now: time.Now()})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rows, err := queryRows(r.Context(), db, checked)
		if err != nil {
			http.Error(w, "query failed", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"status": "done", "result": rows})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	body, _ := json.Marshal(map[string]any{"operation": "violations.query", "params": params, "subject": subject})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchConcurrency}}
	url := "http://" + ln.Addr().String() + "/v1/requests"
	lat := newLatencies(b.N)
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	b.ResetTimer()
	for range benchConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				start := time.Now()
				resp, err := client.Post(url, "application/json", bytes.NewReader(body))
				if err != nil {
					failed.Store(err.Error())
					return
				}
				var ans struct {
					Status string           `json:"status"`
					Result []map[string]any `json:"result"`
				}
				err = json.NewDecoder(resp.Body).Decode(&ans)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || len(ans.Result) == 0 {
					failed.Store(fmt.Sprintf("HTTP %d, %d rows, %v", resp.StatusCode, len(ans.Result), err))
					return
				}
				lat.add(time.Since(start))
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if f := failed.Load(); f != nil {
		b.Fatal(f)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	lat.report(b)
}

// queryRows runs a checked read and returns its rows as JSON objects.
func queryRows(ctx context.Context, db *sql.DB, c *policy.Checked) ([]map[string]any, error) {
	rows, err := db.QueryContext(ctx, c.Op.Statement, c.Args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make(map[string]any, len(cols))
		for i, c := range cols {
			if b, ok := vals[i].([]byte); ok {
				vals[i] = string(b)
			}
			row[c] = vals[i]
		}
		out = append(out, row)
	}
	if len(out) == 0 && rows.Err() == nil {
		return nil, errors.New("no rows")
	}
	return out, rows.Err()
}

// latencies records request latencies for a benchmark's p50 and p99.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func newLatencies(n int) *latencies { return &latencies{d: make([]time.Duration, 0, n)} }

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// report adds p50-ms and p99-ms to b's metrics.
func (l *latencies) report(b *testing.B) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	q := func(f float64) float64 { return float64(l.d[int(f*float64(len(l.d)-1))]) / 1e6 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}
