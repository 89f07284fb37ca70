package dmz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/envelope"
	"github.com/ferrybridge/ferry/internal/keys"
	"github.com/ferrybridge/ferry/internal/sample"
)

// Bearer tokens of the test clients.
const (
	tokenPortal = "fy_portal-test-token"
	tokenOther  = "fy_other-test-token"
)

// env is a running DMZ agent on a real directory tree, with the intranet's
// keys to play the other side.
type env struct {
	dir     string
	cfg     *Config
	cfgPath string
	agent   *Agent
	log     *slog.Logger
	stop    func() // stops the agent and checks Run's result
	dmz     *keys.Zone
	intra   *keys.Zone
	base    string
	client  *http.Client
	seq     uint64 // results channel
	// hashes holds the header hash of the envelope sealResults sealed
	// last for each seq of the results channel: headerSeq names it as
	// the previous one, so that envelopes chain as the intranet's do.
	hashes map[uint64][32]byte
	// offset is how far the agent's clock (Agent.now) runs ahead of the
	// real one, in nanoseconds; see env.now.
	offset atomic.Int64
	// beforeRun is envOptions.beforeRun, for restarts too.
	beforeRun func(*Agent)
}

// now is the agent's clock: the real time plus e.offset. Request
// envelopes are sealed, and expire, by it; nextEnvelope opens them by it.
func (e *env) now() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) }

func hashHex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// writeDeployment writes keys, policy and a config file into dir and
// returns the config path.
func writeDeployment(t testing.TB, dir string, extra string) (string, *keys.Zone, *keys.Zone) {
	t.Helper()
	dz, err := keys.Generate("dmz")
	if err != nil {
		t.Fatal(err)
	}
	in, err := keys.Generate("intranet")
	if err != nil {
		t.Fatal(err)
	}
	kdir := filepath.Join(dir, "keys")
	if err := dz.WriteDir(kdir); err != nil {
		t.Fatal(err)
	}
	if err := keys.GenerateAudit(kdir, "dmz"); err != nil {
		t.Fatal(err)
	}
	// The intranet's audit key, which the agent witnesses the
	// intranet's log with.
	peerAudit := t.TempDir()
	if err := keys.GenerateAudit(peerAudit, "intranet"); err != nil {
		t.Fatal(err)
	}
	if err := keys.CopyAuditPub(peerAudit, "intranet", kdir); err != nil {
		t.Fatal(err)
	}
	if err := keys.WritePeer(kdir, in.Public()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), sample.Policy(), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"exchange/requests", "exchange/results"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	cfg := `zone: dmz
peer: intranet
listen: 127.0.0.1:0
keys: keys
policy: policy.yaml
spool: state/spool.db
send:
  type: dir
  dir: exchange/requests
receive:
  type: dir
  dir: exchange/results
  rescan: 100ms
inbox: state/inbox
quarantine: state/quarantine
batch:
  max_requests: 256
  max_delay: 5ms
envelope_ttl: 1h
drain_timeout: 5s
clients:
  - name: portal
    token_sha256: ` + hashHex(tokenPortal) + `
  - name: other
    token_sha256: ` + hashHex(tokenOther) + `
` + extra
	path := filepath.Join(dir, "dmz.yaml")
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, dz, in
}

// envOptions vary the deployment startEnvWith makes.
type envOptions struct {
	log *slog.Logger // nil: testLogger
	// noPolicy leaves the policy key out of the config, so that the agent
	// has nothing to check requests against until a catalogue arrives.
	noPolicy bool
	extra    string // appended to the config file
	// setup, if set, runs on the deployment's directory before the
	// agent starts (to write the files extra names).
	setup func(dir string)
	// beforeRun, if set, is called with the agent New made, before Run.
	beforeRun func(*Agent)
	// client, if set, is the HTTP client of the tests' requests (one
	// that trusts the agent's TLS certificate, say).
	client *http.Client
}

// startEnv builds and runs an agent; cleanup stops it and checks Run's
// result.
func startEnv(t testing.TB) *env {
	t.Helper()
	return startEnvWith(t, envOptions{})
}

// startEnvLogger is startEnv with the agent logging to log.
func startEnvLogger(t testing.TB, log *slog.Logger) *env {
	t.Helper()
	return startEnvWith(t, envOptions{log: log})
}

// startEnvWith writes a deployment as opts say and runs an agent on it.
func startEnvWith(t testing.TB, opts envOptions) *env {
	t.Helper()
	if opts.log == nil {
		opts.log = testLogger(t)
	}
	dir := t.TempDir()
	path, dz, in := writeDeployment(t, dir, opts.extra)
	if opts.noPolicy {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(strings.Replace(string(data), "policy: policy.yaml\n", "", 1)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if opts.setup != nil {
		opts.setup(dir)
	}
	if opts.client == nil {
		opts.client = &http.Client{Timeout: 60 * time.Second}
	}
	e := &env{dir: dir, dmz: dz, intra: in, client: opts.client, log: opts.log, beforeRun: opts.beforeRun}
	e.start(t, path)
	return e
}

// start builds and runs an agent from the config file at path, and waits
// until it serves; stop (and cleanup) stops it and checks Run's result.
func (e *env) start(t testing.TB, path string) {
	t.Helper()
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, e.log)
	if err != nil {
		t.Fatal(err)
	}
	a.now = e.now
	if e.beforeRun != nil {
		e.beforeRun(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			if err := a.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	t.Cleanup(e.stop)
	scheme := "http://"
	if cfg.TLS.Enabled() {
		scheme = "https://"
	}
	e.cfg, e.cfgPath, e.agent, e.base = cfg, path, a, scheme+a.Addr().String()
	// Ready once Run runs; without a catalogue /readyz stays 503, so the
	// wait is on the agent's own flag and then on /healthz.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if a.ready.Load() {
			resp, err := e.client.Get(e.base + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("agent not serving within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// restart stops the agent and starts a new one on the same deployment.
func (e *env) restart(t testing.TB) {
	t.Helper()
	e.stop()
	e.start(t, e.cfgPath)
}

// testLogger logs through t, so failures show the agent's log.
func testLogger(t testing.TB) *slog.Logger { return testLoggerHook(t) }

// testLoggerHook makes the agent's logger; benchmarks replace it.
var testLoggerHook = func(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// reply is a decoded API answer.
type reply struct {
	code int
	body map[string]any
	raw  string
}

func (r *reply) reason() string {
	e, _ := r.body["error"].(map[string]any)
	s, _ := e["reason"].(string)
	return s
}

func (r *reply) str(k string) string { s, _ := r.body[k].(string); return s }

func (e *env) do(t testing.TB, method, path, token string, body string, hdr map[string]string) *reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	r := &reply{code: resp.StatusCode, raw: string(data)}
	_ = json.Unmarshal(data, &r.body)
	return r
}

// goodBody returns a request the sample policy accepts from client
// portal: the first citizen's violations, with the citizen as subject.
func goodBody(t testing.TB) string {
	t.Helper()
	return citizenBody(t, sample.Citizens()[0], "violations.query")
}

// citizenBody returns a request of citizen c for op (violations.query or
// licence.status), with c as the subject and c's id_number left to the
// subject binding.
func citizenBody(t testing.TB, c sample.Citizen, op string) string {
	t.Helper()
	params := map[string]any{}
	if op == "violations.query" {
		params["plate"] = c.Plate
	}
	b, err := json.Marshal(map[string]any{"operation": op, "params": params, "subject": c.IDNumber})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// plainBody is a request without a subject that the sample policy
// accepts from any client.
const plainBody = `{"operation":"exam.slots","params":{"subject":1}}`

func (e *env) submit(t testing.TB) string {
	t.Helper()
	r := e.do(t, http.MethodPost, "/v1/requests", tokenPortal, goodBody(t), nil)
	if r.code != http.StatusAccepted {
		t.Fatalf("submit: HTTP %d %s", r.code, r.raw)
	}
	return r.str("id")
}

// takeRequests waits for request envelopes on the request medium, opens
// them as the intranet would, removes them and returns them.
func (e *env) takeRequests(t testing.TB, want int) []*envelope.Opened {
	t.Helper()
	var out []*envelope.Opened
	n := 0
	deadline := time.Now().Add(10 * time.Second)
	for n < want {
		te := e.nextEnvelope(t, time.Until(deadline))
		if te == nil {
			t.Fatalf("%d of %d requests on the medium after 10s", n, want)
		}
		n += len(te.body.Requests)
		out = append(out, te.opened)
	}
	return out
}

// takenEnvelope is a request envelope taken off the medium, opened and
// decoded as the intranet would.
type takenEnvelope struct {
	opened *envelope.Opened
	body   *batch.Requests
}

// nextEnvelope waits up to within for a request envelope on the medium,
// opens it, removes it and returns it; it returns nil if none came.
func (e *env) nextEnvelope(t testing.TB, within time.Duration) *takenEnvelope {
	t.Helper()
	op := &envelope.Opener{Self: "intranet", Identity: e.intra.Identity, Sender: e.dmz.Verifier, Now: e.now}
	dir := filepath.Join(e.dir, "exchange", "requests")
	deadline := time.Now().Add(within)
	for {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, de := range entries {
			if !strings.HasSuffix(de.Name(), envelope.FileExt) {
				continue
			}
			data, err := os.ReadFile(filepath.Join(dir, de.Name()))
			if err != nil {
				t.Fatal(err)
			}
			o, err := op.Open(data)
			if err != nil {
				t.Fatalf("open request envelope %s: %v", de.Name(), err)
			}
			if err := os.Remove(filepath.Join(dir, de.Name())); err != nil {
				t.Fatal(err)
			}
			body, err := batch.DecodeRequests(o.Body)
			if err != nil {
				t.Fatalf("request envelope %s: %v", de.Name(), err)
			}
			// The body says "requests": [], never null.
			var raw map[string]json.RawMessage
			if err := json.Unmarshal(o.Body, &raw); err != nil || string(raw["requests"]) == "null" {
				t.Fatalf("request envelope %s: body %s (%v)", de.Name(), o.Body, err)
			}
			return &takenEnvelope{opened: o, body: body}
		}
		if time.Now().After(deadline) {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sealResults seals a results body as the intranet, with the next
// sequence number, and returns the file name and bytes.
func (e *env) sealResults(t testing.TB, h envelope.Header, body any) (string, []byte) {
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	s, err := envelope.Seal(h, data, e.intra.Signer, e.dmz.Recipient)
	if err != nil {
		t.Fatal(err)
	}
	if e.hashes == nil {
		e.hashes = map[uint64][32]byte{}
	}
	e.hashes[h.Seq] = s.HeaderHash
	return envelope.FileName(&s.Header), s.Data
}

// resultsHeader is the header of the next envelope on the results
// channel.
func (e *env) resultsHeader() envelope.Header {
	e.seq++
	return e.headerSeq(e.seq)
}

// headerSeq is a results header with sequence number seq, whose prev is
// the header hash of the envelope sealResults sealed last as seq-1 (zero
// if none: seal an envelope's predecessor first).
func (e *env) headerSeq(seq uint64) envelope.Header {
	now := time.Now()
	return envelope.Header{ID: envelope.NewID(), Kind: envelope.KindResults, From: "intranet", To: "dmz",
		Channel: ResultsChannel, Seq: seq, Prev: e.hashes[seq-1], Created: now, Expires: now.Add(time.Hour)}
}

// drop writes a file into the result medium the way a ferry does: under a
// temporary name, then renamed.
func (e *env) drop(t testing.TB, name string, data []byte) {
	t.Helper()
	dir := filepath.Join(e.dir, "exchange", "results")
	tmp := filepath.Join(dir, ".tmp-"+name)
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func (e *env) status(t testing.TB, id string) *reply {
	t.Helper()
	return e.do(t, http.MethodGet, "/v1/requests/"+id, tokenPortal, "", nil)
}

// waitStatus polls until request id has status want.
func (e *env) waitStatus(t testing.TB, id, want string) *reply {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := e.status(t, id)
		if r.str("status") == want {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("request %s: %s after 10s, want %s", id, r.raw, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
