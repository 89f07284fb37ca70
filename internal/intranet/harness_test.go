package intranet

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"golang.org/x/mod/sumdb/note"

	"github.com/ferrybridge/ferry/internal/admin"
	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/config"
	"github.com/ferrybridge/ferry/internal/envelope"
	"github.com/ferrybridge/ferry/internal/keys"
	"github.com/ferrybridge/ferry/internal/policy"
	"github.com/ferrybridge/ferry/internal/sample"
)

// testEnv is a deployment of the intranet side in a temporary directory,
// with the DMZ's keys so the test can play the DMZ.
type testEnv struct {
	admins []note.Signer // the admins whose public keys the agent knows
	root   string
	cfg    *Config
	dmz    *keys.Zone
	intra  *keys.Zone
	reqDir string
	resDir string

	mu     sync.Mutex
	seq    uint64
	prev   [32]byte
	booked map[int64]bool // exam slots handed out by bookings
}

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	root := t.TempDir()
	dmz, err := keys.Generate("dmz")
	if err != nil {
		t.Fatal(err)
	}
	intra, err := keys.Generate("intranet")
	if err != nil {
		t.Fatal(err)
	}
	zdir := filepath.Join(root, "intranet")
	kdir := filepath.Join(zdir, "keys")
	if err := intra.WriteDir(kdir); err != nil {
		t.Fatal(err)
	}
	if err := keys.GenerateAudit(kdir, "intranet"); err != nil {
		t.Fatal(err)
	}
	// The DMZ's audit key, which the agent witnesses the DMZ's log with.
	peerAudit := t.TempDir()
	if err := keys.GenerateAudit(peerAudit, "dmz"); err != nil {
		t.Fatal(err)
	}
	if err := keys.CopyAuditPub(peerAudit, "dmz", kdir); err != nil {
		t.Fatal(err)
	}
	if err := keys.WritePeer(kdir, dmz.Public()); err != nil {
		t.Fatal(err)
	}
	e0 := &testEnv{}
	e0.admins = testAdmins(t, filepath.Join(kdir, "admins"), "alice", "bob")
	// The sample policy with its rate limits raised: these tests send one
	// citizen's requests hundreds of times (the limits are tested in
	// package replica).
	e0.writePolicy(t, filepath.Join(zdir, "policy.yaml"), sample.LoadPolicy(), e0.admins...)
	if err := sample.WriteReplica(context.Background(), filepath.Join(zdir, "replica.db")); err != nil {
		t.Fatal(err)
	}
	e := &testEnv{
		admins: e0.admins,
		root:   root,
		dmz:    dmz,
		intra:  intra,
		reqDir: filepath.Join(root, "exchange", "requests"),
		resDir: filepath.Join(root, "exchange", "results"),
		booked: map[int64]bool{},
	}
	for _, d := range []string{e.reqDir, e.resDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	cfg := DefaultConfig()
	cfg.Keys = kdir
	cfg.Admins = filepath.Join(kdir, "admins")
	cfg.Policy = filepath.Join(zdir, "policy.yaml")
	cfg.Replica = filepath.Join(zdir, "replica.db")
	cfg.Receive.Dir, cfg.Send.Dir = e.reqDir, e.resDir
	// fsnotify is only a hint; a short rescan keeps the tests quick if
	// an event is missed.
	cfg.Receive.Rescan = config.Duration(100 * time.Millisecond)
	cfg.Batch.MaxDelay = config.Duration(2 * time.Millisecond)
	cfg.Inbox = filepath.Join(zdir, "state", "inbox")
	cfg.Quarantine = filepath.Join(zdir, "state", "quarantine")
	cfg.AuditLog = filepath.Join(zdir, "state", audit.FileName)
	e.cfg = &cfg
	return e
}

// testAdmins creates admin keys with the given names and installs their
// public keys in dir, as an intranet's admins directory.
func testAdmins(t testing.TB, dir string, names ...string) []note.Signer {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var out []note.Signer
	for _, name := range names {
		skey, vkey, err := admin.GenerateKey(name, nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := note.NewSigner(skey)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+admin.PubSuffix), []byte(vkey+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// writePolicy writes a policy file and a fresh signature file signed by
// signers.
func (e *testEnv) writePolicy(t testing.TB, path string, data []byte, signers ...note.Signer) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path + admin.SigSuffix); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if len(signers) == 0 {
		return
	}
	if _, err := admin.SignPolicyFile(path, signers...); err != nil {
		t.Fatal(err)
	}
}

// testLogger logs to the test's output, so failures show the agent's log.
func testLogger(t testing.TB) *slog.Logger {
	if _, ok := t.(*testing.B); ok {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// running is an agent running in the background.
type running struct {
	agent  *Agent
	cancel context.CancelFunc
	done   chan error
}

// start builds an agent on the environment and runs it until the test
// ends or stop is called.
func (e *testEnv) start(t testing.TB) *running {
	t.Helper()
	a, err := New(e.cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{agent: a, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	select {
	case <-a.Ready():
	case err := <-r.done:
		t.Fatalf("agent stopped during start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("agent not ready within 10s")
	}
	return r
}

// stop cancels the agent, waits for Run and closes it. It may be called
// more than once.
func (r *running) stop(t testing.TB) {
	t.Helper()
	if r.done == nil {
		return
	}
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("agent did not stop within 20s")
	}
	r.done = nil
	if err := r.agent.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// drop writes a file into the request directory atomically, as a medium
// does: a hidden temporary name, then a rename.
func (e *testEnv) drop(t testing.TB, name string, data []byte) {
	t.Helper()
	tmp := filepath.Join(e.reqDir, ".tmp-"+name)
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(e.reqDir, name)); err != nil {
		t.Fatal(err)
	}
}

// header returns the header of the DMZ's next request envelope.
func (e *testEnv) header() envelope.Header {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seq++
	now := time.Now()
	return envelope.Header{
		ID: envelope.NewID(), Kind: envelope.KindRequests, From: "dmz", To: "intranet",
		Channel: "requests", Seq: e.seq, Prev: e.prev, Created: now, Expires: now.Add(time.Hour),
	}
}

// seal seals reqs as the DMZ would, advancing the request channel.
func (e *testEnv) seal(t testing.TB, reqs []batch.Request) *envelope.Sealed {
	t.Helper()
	return e.sealWith(t, e.header(), batch.Requests{Requests: reqs}, e.dmz.Signer, e.intra.Recipient)
}

func (e *testEnv) sealWith(t testing.TB, h envelope.Header, body any, signer note.Signer, to *age.X25519Recipient) *envelope.Sealed {
	t.Helper()
	data, err := batch.Encode(body)
	if err != nil {
		t.Fatal(err)
	}
	s, err := envelope.Seal(h, data, signer, to)
	if err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	if h.Channel == "requests" && h.Seq == e.seq {
		e.prev = s.HeaderHash
	}
	e.mu.Unlock()
	return s
}

// send seals reqs and drops the envelope under its file name.
func (e *testEnv) send(t testing.TB, reqs []batch.Request) *envelope.Sealed {
	t.Helper()
	s := e.seal(t, reqs)
	e.drop(t, envelope.FileName(&s.Header), s.Data)
	return s
}

// answers is what the DMZ has received on the results channel.
type answers struct {
	results map[string][]batch.Result // by request id, every copy
	acks    map[string]int            // request envelope id → times acked
	seqs    []uint64
	// catalogues holds the operation catalogues received, in channel order.
	catalogues []*policy.Policy
	// received holds each envelope's report of the requests channel, in
	// channel order.
	received []*batch.Received
}

// collect opens every result envelope in the results directory with the
// DMZ's keys and checks the channel's sequence and hash chain.
func (e *testEnv) collect(t testing.TB) *answers {
	t.Helper()
	entries, err := os.ReadDir(e.resDir)
	if err != nil {
		t.Fatal(err)
	}
	op := &envelope.Opener{Self: "dmz", Identity: e.dmz.Identity, Sender: e.intra.Verifier}
	type env struct {
		h    envelope.Header
		hash [32]byte
		body *batch.Results
	}
	bySeq := map[uint64]env{}
	for _, de := range entries {
		if strings.HasPrefix(de.Name(), ".") || !strings.HasSuffix(de.Name(), envelope.FileExt) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(e.resDir, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		o, err := op.Open(data)
		if err != nil {
			t.Fatalf("result envelope %s does not open with the DMZ's keys: %v", de.Name(), err)
		}
		if o.Header.Kind != envelope.KindResults || o.Header.Channel != ResultsChannel || o.Header.From != "intranet" || o.Header.To != "dmz" {
			t.Fatalf("result envelope %s header %+v", de.Name(), o.Header)
		}
		body, err := batch.DecodeResults(o.Body)
		if err != nil {
			t.Fatalf("result envelope %s: %v", de.Name(), err)
		}
		if _, dup := bySeq[o.Header.Seq]; dup {
			t.Fatalf("two result envelopes with seq %d", o.Header.Seq)
		}
		bySeq[o.Header.Seq] = env{o.Header, o.HeaderHash, body}
	}
	a := &answers{results: map[string][]batch.Result{}, acks: map[string]int{}}
	var prev [32]byte
	for seq := uint64(1); seq <= uint64(len(bySeq)); seq++ {
		en, ok := bySeq[seq]
		if !ok {
			t.Fatalf("result channel has a gap at seq %d (%d envelopes)", seq, len(bySeq))
		}
		if en.h.Prev != prev {
			t.Fatalf("result envelope seq %d: prev does not chain to seq %d", seq, seq-1)
		}
		prev = en.hash
		a.seqs = append(a.seqs, seq)
		a.received = append(a.received, en.body.Received)
		for _, id := range en.body.Acks {
			a.acks[id]++
		}
		for _, r := range en.body.Results {
			a.results[r.RequestID] = append(a.results[r.RequestID], r)
		}
		if en.body.Catalogue != nil {
			cat, err := policy.ParseCatalogue(en.body.Catalogue)
			if err != nil {
				t.Fatalf("result envelope seq %d: catalogue: %v", seq, err)
			}
			a.catalogues = append(a.catalogues, cat)
		}
	}
	return a
}

// waitAcked waits until every envelope id is acknowledged and returns the
// answers.
func (e *testEnv) waitAcked(t testing.TB, ids ...string) *answers {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		a := e.collect(t)
		missing := 0
		for _, id := range ids {
			if a.acks[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d request envelopes not acknowledged within 20s", missing, len(ids))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitEmpty waits until the request directory and the inbox hold no
// envelope files.
func (e *testEnv) waitEmpty(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		n := countFiles(t, e.reqDir) + countFiles(t, e.cfg.Inbox)
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d envelope files left in the request directory and inbox after 60s", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func countFiles(t testing.TB, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	n := 0
	for _, de := range entries {
		if !strings.HasPrefix(de.Name(), ".") {
			n++
		}
	}
	return n
}

// replicaCount counts rows on the replica with a separate read-only
// connection.
func (e *testEnv) replicaCount(t testing.TB, query string, args ...any) int {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+e.cfg.Replica+"?mode=ro&_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

var reqCounter struct {
	sync.Mutex
	n int
}

// newRequest returns a request with a fresh id.
//
// The request comes from the portal; a citizen's id_number parameter is
// also its subject, as when a citizen asks about their own records.
func newRequest(op string, params map[string]any) batch.Request {
	reqCounter.Lock()
	reqCounter.n++
	n := reqCounter.n
	reqCounter.Unlock()
	p, _ := json.Marshal(params)
	subject, _ := params["id_number"].(string)
	return batch.Request{ID: fmt.Sprintf("%08x%024x", time.Now().UnixNano()&0xffffffff, n), Client: "portal", Subject: subject,
		Operation: op, Params: p, Received: time.Now().UTC()}
}

// writeFile replaces a file's contents, keeping nothing else.
func (e *testEnv) writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
