// Package e2e holds ferry's process-level end-to-end tests: the three real
// binaries, a deployment made by `ferryctl init`, both agents as separate
// processes exchanging envelopes through real directories, and SIGKILL.
package e2e

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

var binDir string

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "ferry-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		// Tests build the agents with the race detector, so that races in
		// the real processes fail them too; benchmarks build them plain.
		flag.Parse()
		args := []string{"build", "-o", dir + "/"}
		if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
			args = append(args, "-race")
		}
		args = append(args, "../cmd/ferryctl", "../cmd/dmz-agent", "../cmd/intranet-agent")
		cmd := exec.Command("go", args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build binaries:", err)
			return 1
		}
		binDir = dir
		return m.Run()
	}()
	os.Exit(code)
}

// deployment is a deployment made by ferryctl init for one test.
type deployment struct {
	dir    string
	addr   string
	token  string
	client *http.Client
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func ferryctl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(binDir, "ferryctl"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ferryctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newDeployment(t testing.TB) *deployment {
	t.Helper()
	d := &deployment{dir: filepath.Join(t.TempDir(), "ferry"), addr: freeAddr(t), client: &http.Client{Timeout: 40 * time.Second}}
	ferryctl(t, "init", "--listen", d.addr, d.dir)
	tok, err := os.ReadFile(filepath.Join(d.dir, "portal.token"))
	if err != nil {
		t.Fatal(err)
	}
	d.token = strings.TrimSpace(string(tok))
	return d
}

// agent is a running agent process.
type agent struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// start starts the agent name of the deployment, with env added to the
// test's environment.
func (d *deployment) start(t testing.TB, name string, env ...string) *agent {
	t.Helper()
	zone := map[string]string{"dmz-agent": "dmz", "intranet-agent": "intranet"}[name]
	logPath := filepath.Join(d.dir, zone, "agent.log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, name), "-config", filepath.Join(d.dir, zone, zone+".yaml"), "-log-format", "json")
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &agent{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { a.err = cmd.Wait(); logf.Close(); close(a.done) }()
	t.Cleanup(func() {
		select {
		case <-a.done:
		default:
			_ = cmd.Process.Kill()
			<-a.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s log:\n%s", name, tail(string(b), 4000))
		}
	})
	return a
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func (a *agent) kill(t testing.TB) {
	t.Helper()
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.done
}

func (a *agent) stop(t testing.TB) {
	t.Helper()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not stop within 30s after SIGTERM", a.name)
	}
	if a.err != nil {
		t.Fatalf("%s exited with %v after SIGTERM, want a clean exit", a.name, a.err)
	}
}

func (d *deployment) waitReady(t testing.TB, a *agent) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-a.done:
			t.Fatalf("%s exited during start: %v", a.name, a.err)
		default:
		}
		resp, err := d.client.Get("http://" + d.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not ready within 60s", a.name)
}

type status struct {
	ID           string           `json:"id"`
	Status       string           `json:"status"`
	Reason       string           `json:"reason"`
	Message      string           `json:"message"`
	Result       []map[string]any `json:"result"`
	RowsAffected *int64           `json:"rows_affected"`
	Error        *struct {
		Reason  string `json:"reason"`
		Message string `json:"message"`
		Param   string `json:"param"`
	} `json:"error"`
	code int
	err  error
}

func (d *deployment) do(t testing.TB, method, path string, body any) *status {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+d.addr+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var st status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("%s %s: HTTP %d: decode: %v", method, path, resp.StatusCode, err)
	}
	st.code = resp.StatusCode
	return &st
}

// submit posts a request of the portal; a citizen's id_number parameter is
// also its subject, as when a citizen asks about their own records.
func (d *deployment) submit(t testing.TB, op string, params map[string]any) *status {
	t.Helper()
	return d.do(t, http.MethodPost, "/v1/requests", submitBody(op, params))
}

// submitBody is the JSON body of POST /v1/requests for op and params, with
// the params' id_number as the subject when there is one.
func submitBody(op string, params map[string]any) map[string]any {
	body := map[string]any{"operation": op, "params": params}
	if id, ok := params["id_number"].(string); ok {
		body["subject"] = id
	}
	return body
}

func final(s string) bool {
	switch s {
	case "done", "rejected", "failed", "expired":
		return true
	}
	return false
}

// wait long-polls until the request is final.
func (d *deployment) wait(t testing.TB, id string, within time.Duration) *status {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := d.do(t, http.MethodGet, "/v1/requests/"+id+"?wait=10s", nil)
		if st.code != http.StatusOK {
			t.Fatalf("GET %s: HTTP %d", id, st.code)
		}
		if final(st.Status) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("request %s still %s after %s", id, st.Status, within)
		}
	}
}

// replica opens the deployment's replica read-only.
func (d *deployment) replica(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(d.dir, "intranet", "replica.db")+"?mode=ro&_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func count(t testing.TB, db *sql.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// writableReplica opens the replica for a test's own set-up, before the
// intranet agent starts.
func (d *deployment) writableReplica(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(d.dir, "intranet", "replica.db")+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// submitNoFatal is submit for use from worker goroutines.
func (d *deployment) submitNoFatal(op string, params map[string]any) *status {
	b, _ := json.Marshal(submitBody(op, params))
	return d.doNoFatal(http.MethodPost, "/v1/requests", b)
}

// doNoFatal is do for use from worker goroutines: it reports failures in
// status.err instead of failing the test.
func (d *deployment) doNoFatal(method, path string, body []byte, header ...string) *status {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+d.addr+path, rd)
	if err != nil {
		return &status{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return &status{err: err}
	}
	defer resp.Body.Close()
	var st status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return &status{err: err, code: resp.StatusCode}
	}
	st.code = resp.StatusCode
	return &st
}
