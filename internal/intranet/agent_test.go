package intranet

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/config"
	"github.com/ferrybridge/ferry/internal/envelope"
	"github.com/ferrybridge/ferry/internal/keys"
	"github.com/ferrybridge/ferry/internal/policy"
	"github.com/ferrybridge/ferry/internal/replica"
	"github.com/ferrybridge/ferry/internal/sample"
)

// readRequest is an allowed read: the first sample citizen's violations.
func readRequest() batch.Request {
	c := sample.Citizens()[0]
	return newRequest("violations.query", map[string]any{"id_number": c.IDNumber, "plate": c.Plate})
}

// bookings returns n exam.book requests that each add one appointment:
// one per slot with a place left, for a citizen not yet booked there.
func (e *testEnv) bookings(t testing.TB, n int) []batch.Request {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+e.cfg.Replica+"?mode=ro&_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out []batch.Request
	for _, c := range sample.Citizens() {
		rows, err := db.Query(`SELECT s.id FROM exam_slots s
			WHERE s.capacity > (SELECT count(*) FROM appointments a WHERE a.slot_id = s.id)
			  AND NOT EXISTS (SELECT 1 FROM appointments a WHERE a.slot_id = s.id AND a.id_number = ?)
			ORDER BY s.id`, c.IDNumber)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() && len(out) < n {
			var slot int64
			if err := rows.Scan(&slot); err != nil {
				t.Fatal(err)
			}
			if e.booked[slot] {
				continue
			}
			e.booked[slot] = true
			out = append(out, newRequest("exam.book", map[string]any{"id_number": c.IDNumber, "slot_id": slot}))
		}
		rows.Close()
	}
	if len(out) < n {
		t.Fatalf("only %d free exam slots in the sample replica, want %d", len(out), n)
	}
	return out
}

const countAppointments = `SELECT count(*) FROM appointments`

func ids(envs ...*envelope.Sealed) []string {
	out := make([]string, len(envs))
	for i, e := range envs {
		out[i] = e.Header.ID
	}
	return out
}

// checkOnce fails unless every request has exactly one result with a final
// status.
func checkOnce(t testing.TB, a *answers, reqs ...batch.Request) {
	t.Helper()
	for _, r := range reqs {
		got := a.results[r.ID]
		if len(got) != 1 {
			t.Fatalf("request %s (%s) answered %d times, want once", r.ID, r.Operation, len(got))
		}
		switch got[0].Status {
		case batch.StatusDone, batch.StatusRejected, batch.StatusFailed:
		default:
			t.Fatalf("request %s: status %q", r.ID, got[0].Status)
		}
	}
}

func TestAgent_Run_pipeline(t *testing.T) {
	e := newTestEnv(t)
	r := e.start(t)
	before := e.replicaCount(t, countAppointments)

	read1, read2, read3 := readRequest(), readRequest(), readRequest()
	denied := newRequest("citizens.dump", map[string]any{})
	book := e.bookings(t, 1)[0]
	env1 := e.send(t, []batch.Request{read1, read2})
	env2 := e.send(t, []batch.Request{read3, denied})
	env3 := e.send(t, []batch.Request{book})

	// Bad files beside the good ones.
	bad := map[string]string{} // file name → expected reason ("" = any)
	garbage := "garbage-0001.fxe"
	e.drop(t, garbage, []byte("this is not an envelope\n"))
	bad[garbage] = ""

	evil, err := keys.Generate("dmz")
	if err != nil {
		t.Fatal(err)
	}
	h := e.header()
	s := e.sealWith(t, h, batch.Requests{Requests: []batch.Request{readRequest()}}, evil.Signer, e.intra.Recipient)
	e.drop(t, "wrong-signer.fxe", s.Data)
	bad["wrong-signer.fxe"] = ""

	h = e.header()
	h.To = "elsewhere"
	s = e.sealWith(t, h, batch.Requests{Requests: []batch.Request{readRequest()}}, e.dmz.Signer, e.intra.Recipient)
	e.drop(t, "misaddressed.fxe", s.Data)
	bad["misaddressed.fxe"] = ""

	h = e.header()
	h.Created, h.Expires = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
	s = e.sealWith(t, h, batch.Requests{Requests: []batch.Request{readRequest()}}, e.dmz.Signer, e.intra.Recipient)
	e.drop(t, "expired.fxe", s.Data)
	bad["expired.fxe"] = ""

	s = e.seal(t, []batch.Request{readRequest()})
	e.drop(t, "truncated.fxe", s.Data[:len(s.Data)/2])
	bad["truncated.fxe"] = ""

	h = e.header()
	h.Kind = envelope.KindHeartbeat
	s = e.sealWith(t, h, batch.Requests{}, e.dmz.Signer, e.intra.Recipient)
	e.drop(t, "heartbeat.fxe", s.Data)
	bad["heartbeat.fxe"] = ReasonWrongKind

	s = e.sealWith(t, e.header(), map[string]any{"hello": 1}, e.dmz.Signer, e.intra.Recipient)
	e.drop(t, "bad-body.fxe", s.Data)
	bad["bad-body.fxe"] = ReasonBadBody

	a := e.waitAcked(t, ids(env1, env2, env3)...)
	checkOnce(t, a, read1, read2, read3, denied, book)
	for _, rq := range []batch.Request{read1, read2, read3, book} {
		if res := a.results[rq.ID][0]; res.Status != batch.StatusDone {
			t.Errorf("%s: %+v, want done", rq.Operation, res)
		}
	}
	if len(a.results[read1.ID][0].Rows) == 0 {
		t.Errorf("violations.query of a citizen with violations returned no rows")
	}
	if res := a.results[denied.ID][0]; res.Status != batch.StatusRejected || res.Reason == "" {
		t.Errorf("unknown operation: %+v, want rejected with a reason", res)
	}
	if res := a.results[book.ID][0]; res.RowsAffected != 1 {
		t.Errorf("exam.book: %+v, want 1 row affected", res)
	}
	if n := e.replicaCount(t, countAppointments); n != before+1 {
		t.Errorf("%d appointments, want %d", n, before+1)
	}

	// A different envelope reusing env1's sequence number is a replay.
	h = envelope.Header{ID: envelope.NewID(), Kind: envelope.KindRequests, From: "dmz", To: "intranet",
		Channel: "requests", Seq: env1.Header.Seq, Created: time.Now(), Expires: time.Now().Add(time.Hour)}
	replayed := e.bookings(t, 1)[0]
	s = e.sealWith(t, h, batch.Requests{Requests: []batch.Request{replayed}}, e.dmz.Signer, e.intra.Recipient)
	e.drop(t, "replay.fxe", s.Data)
	bad["replay.fxe"] = ReasonReplay

	waitQuarantined(t, e, bad)
	e.waitEmpty(t)
	r.stop(t)
	if n := e.replicaCount(t, countAppointments); n != before+1 {
		t.Errorf("%d appointments after the replay, want %d", n, before+1)
	}
	if got := e.collect(t).results[replayed.ID]; len(got) != 0 {
		t.Errorf("replayed envelope's request was answered: %+v", got)
	}
}

// waitQuarantined waits until every file in bad is in the quarantine
// directory with a reason file naming the expected reason.
func waitQuarantined(t *testing.T, e *testEnv, bad map[string]string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for name, want := range bad {
		for {
			reason, err := os.ReadFile(filepath.Join(e.cfg.Quarantine, name+".reason"))
			if err == nil && len(reason) > 0 {
				if _, err := os.Stat(filepath.Join(e.cfg.Quarantine, name)); err != nil {
					t.Fatalf("%s: reason file without the quarantined file: %v", name, err)
				}
				if want != "" && !strings.Contains(string(reason), want) {
					t.Fatalf("%s quarantined with reason %q, want %q", name, reason, want)
				}
				if strings.Contains(string(reason), "skeleton") {
					t.Fatalf("%s: placeholder reason %q", name, reason)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not quarantined within 10s", name)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestAgent_Run_duplicate delivers an applied envelope again, under its
// own name and under another: a copy the medium made, or a replay, is
// dropped without an answer and takes no effect. A re-send the way the DMZ
// makes one, a new envelope of the same requests that names the one it
// replaces, is answered with the stored results and takes no effect
// either; the replaced envelope arriving after it is refused.
func TestAgent_Run_duplicate(t *testing.T) {
	e := newTestEnv(t)
	e.start(t)
	before := e.replicaCount(t, countAppointments)
	reqs := []batch.Request{e.bookings(t, 1)[0], readRequest()}
	env := e.send(t, reqs)
	first := e.waitAcked(t, env.Header.ID)
	checkOnce(t, first, reqs...)
	e.waitEmpty(t)

	for _, name := range []string{envelope.FileName(&env.Header), "copy-0001.fxe"} {
		e.drop(t, name, env.Data)
		e.waitEmpty(t)
	}
	if n := e.collect(t).acks[env.Header.ID]; n != 1 {
		t.Fatalf("envelope answered %d times, want once: a copy was answered", n)
	}

	// The DMZ lost the answer and re-sends: seq 2 replaces seq 1 (which
	// did arrive). A lost seq 3 is replaced by seq 4, and its late copy
	// is refused.
	resend := func(replaces uint64) *envelope.Sealed {
		s := e.sealWith(t, e.header(), batch.Requests{Requests: reqs, Replaces: replaces}, e.dmz.Signer, e.intra.Recipient)
		e.drop(t, envelope.FileName(&s.Header), s.Data)
		return s
	}
	again := resend(env.Header.Seq)
	lost := e.seal(t, reqs)
	again2 := resend(lost.Header.Seq)
	a := e.waitAcked(t, again.Header.ID, again2.Header.ID)
	e.waitEmpty(t)
	for _, r := range reqs {
		got := a.results[r.ID]
		if len(got) != 3 || !reflect.DeepEqual(got[0], got[1]) || !reflect.DeepEqual(got[0], got[2]) {
			t.Fatalf("request %s: answers differ or missing: %+v", r.ID, got)
		}
	}
	if got := a.received[len(a.received)-1]; got.Contiguous != again2.Header.Seq || len(got.Missing) != 0 {
		t.Fatalf("after seq %d replaced the lost seq %d: received %+v, want nothing missing", again2.Header.Seq, lost.Header.Seq, got)
	}
	e.drop(t, envelope.FileName(&lost.Header), lost.Data)
	waitQuarantined(t, e, map[string]string{envelope.FileName(&lost.Header): ReasonReplay})
	if n := e.replicaCount(t, countAppointments); n != before+1 {
		t.Fatalf("%d appointments, want %d: a duplicate took effect", n, before+1)
	}
}

func TestAgent_Run_restart(t *testing.T) {
	e := newTestEnv(t)
	before := e.replicaCount(t, countAppointments)
	var (
		envs []*envelope.Sealed
		all  []batch.Request
	)
	books := e.bookings(t, 24)
	for i := 0; i < 24; i++ {
		reqs := []batch.Request{books[i], readRequest(), readRequest()}
		all = append(all, reqs...)
		envs = append(envs, e.send(t, reqs))
	}
	r := e.start(t)
	// Stop it once some, but usually not all, envelopes are answered.
	deadline := time.Now().Add(20 * time.Second)
	for len(e.collect(t).acks) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("nothing answered within 20s")
		}
		time.Sleep(time.Millisecond)
	}
	r.stop(t)
	t.Logf("answered before the restart: %d of %d envelopes", len(e.collect(t).acks), len(envs))

	e.start(t)
	a := e.waitAcked(t, ids(envs...)...)
	checkOnce(t, a, all...)
	for id, n := range a.acks {
		if n != 1 {
			t.Errorf("envelope %s acknowledged %d times", id, n)
		}
	}
	if n := e.replicaCount(t, countAppointments); n != before+len(envs) {
		t.Fatalf("%d appointments, want %d", n, before+len(envs))
	}
	e.waitEmpty(t)
}

// TestAgent_Run_recoverApplied simulates a crash right after an envelope's
// apply committed: its results were never sealed and its file is still in
// the inbox. The next start must answer it once and not apply it again.
func TestAgent_Run_recoverApplied(t *testing.T) {
	e := newTestEnv(t)
	before := e.replicaCount(t, countAppointments)
	reqs := []batch.Request{e.bookings(t, 1)[0], readRequest()}
	env := e.seal(t, reqs)
	name := envelope.FileName(&env.Header)

	db, err := replica.Open(context.Background(), e.cfg.Replica)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(e.cfg.Policy)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Apply(context.Background(), replica.Envelope{ID: env.Header.ID, From: "dmz", Channel: "requests",
		Seq: env.Header.Seq, HeaderHash: env.HeaderHash, File: name}, reqs, pol); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := os.MkdirAll(e.cfg.Inbox, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.cfg.Inbox, name), env.Data, 0o600); err != nil {
		t.Fatal(err)
	}

	e.start(t)
	a := e.waitAcked(t, env.Header.ID)
	checkOnce(t, a, reqs...)
	e.waitEmpty(t)
	if n := e.replicaCount(t, countAppointments); n != before+1 {
		t.Fatalf("%d appointments, want %d", n, before+1)
	}
	if a.acks[env.Header.ID] != 1 {
		t.Fatalf("acknowledged %d times", a.acks[env.Header.ID])
	}
}

// publishFunc is a medium.Publisher made of a function.
type publishFunc func(ctx context.Context, name string, data []byte) error

func (f publishFunc) Publish(ctx context.Context, name string, data []byte) error {
	return f(ctx, name, data)
}

func (f publishFunc) PublishFrom(ctx context.Context, name string, src io.ReaderAt, size int64) error {
	data, err := io.ReadAll(io.NewSectionReader(src, 0, size))
	if err != nil {
		return err
	}
	return f(ctx, name, data)
}

// TestAgent_Run_recoverSealed: results sealed but never published (the
// medium was down, then the agent stopped) are published by the next start,
// byte for byte.
func TestAgent_Run_recoverSealed(t *testing.T) {
	e := newTestEnv(t)
	e.cfg.DrainTimeout = config.Duration(200 * time.Millisecond)
	a, err := New(e.cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	var attempts atomic.Int32
	var sealed []byte
	var sealedName atomic.Value
	a.pub = publishFunc(func(ctx context.Context, name string, data []byte) error {
		if attempts.Add(1) == 1 {
			sealed = append([]byte(nil), data...)
			sealedName.Store(name)
		}
		return errors.New("medium unavailable")
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	<-a.Ready()
	reqs := []batch.Request{readRequest()}
	env := e.send(t, reqs)
	deadline := time.Now().Add(10 * time.Second)
	for attempts.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("agent never tried to publish")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after the drain timeout: %v, want nil", err)
	}
	a.Close()
	if n := countFiles(t, e.resDir); n != 0 {
		t.Fatalf("%d files on the result medium", n)
	}

	e.start(t)
	ans := e.waitAcked(t, env.Header.ID)
	checkOnce(t, ans, reqs...)
	got, err := os.ReadFile(filepath.Join(e.resDir, sealedName.Load().(string)))
	if err != nil {
		t.Fatalf("the stored result envelope was not published under its name: %v", err)
	}
	if string(got) != string(sealed) {
		t.Fatal("re-published result envelope differs from the sealed one")
	}
	e.waitEmpty(t)
}

func TestNew_errors(t *testing.T) {
	tests := []struct {
		name    string
		breakIt func(t *testing.T, e *testEnv)
		want    string
	}{
		{"bad policy", func(t *testing.T, e *testEnv) {
			e.writePolicy(t, e.cfg.Policy, []byte("version: 1\noperations:\n  - name: x\n    mode: sideways\n"), e.admins...)
		}, "policy.yaml:4: operations[0].mode"},
		{"statement reads an undeclared column", func(t *testing.T, e *testEnv) {
			p := bytes.Replace(sample.Policy(), []byte("drivers: [id_number, name, mobile]"), []byte("drivers: [id_number, name]"), 1)
			if bytes.Equal(p, sample.Policy()) {
				t.Fatal("the sample policy no longer declares drivers' columns for licence.status")
			}
			e.writePolicy(t, e.cfg.Policy, p, e.admins...)
		}, "operation licence.status: read statement not allowed: reads drivers.mobile"},
		{"read statement that writes", func(t *testing.T, e *testEnv) {
			p := append(sample.Policy(), `
  - name: exam.sneak
    mode: read
    statement: WITH s AS (SELECT 1 AS id) INSERT INTO appointments (slot_id, id_number) SELECT id, 'x' FROM s
    reads: {}
`...)
			e.writePolicy(t, e.cfg.Policy, p, e.admins...)
		}, "operation exam.sneak"},
		{"no admin keys", func(t *testing.T, e *testEnv) { e.cfg.Admins = filepath.Join(e.root, "nowhere") }, "load admin keys"},
		{"loose key", func(t *testing.T, e *testEnv) {
			if err := os.Chmod(filepath.Join(e.cfg.Keys, keys.SignKeyFile), 0o644); err != nil {
				t.Fatal(err)
			}
		}, keys.ErrPermissions.Error()},
		{"wrong zone", func(t *testing.T, e *testEnv) { e.cfg.Zone = "intranet-b" }, "holds the keys of zone"},
		{"missing replica", func(t *testing.T, e *testEnv) {
			if err := os.Remove(e.cfg.Replica); err != nil {
				t.Fatal(err)
			}
		}, "does not exist"},
		{"bad config", func(t *testing.T, e *testEnv) { e.cfg.Batch.MaxResults = -1 }, "batch.max_results"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			tt.breakIt(t, e)
			a, err := New(e.cfg, testLogger(t))
			if err == nil {
				a.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

// BenchmarkPipeline measures envelopes and requests per second through
// open, apply, seal and publish, with 256 reads per envelope. Envelopes
// are sealed and dropped before the timer starts.
func BenchmarkPipeline(b *testing.B) {
	const perEnvelope = 256
	e := newTestEnv(b)
	e.cfg.Batch.MaxDelay = config.Duration(5 * time.Millisecond)
	var envs []*envelope.Sealed
	for i := 0; i < b.N; i++ {
		reqs := make([]batch.Request, perEnvelope)
		for j := range reqs {
			reqs[j] = readRequest()
		}
		envs = append(envs, e.send(b, reqs))
	}
	b.ResetTimer()
	r := e.start(b)
	// Answered envelopes' files leave the inbox; counting them is cheaper
	// than opening every result envelope while the clock runs.
	e.waitEmpty(b)
	b.StopTimer()
	r.stop(b)
	e.waitAcked(b, ids(envs...)...)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "envelopes/s")
	b.ReportMetric(float64(b.N*perEnvelope)/b.Elapsed().Seconds(), "req/s")
}

// TestAgent_Run_resultsTooLarge checks that results too large for one
// result envelope are split over several, that a single request envelope
// whose results cannot fit gets its largest results answered as failed
// with result_too_large, and that the agent goes on answering either way.
func TestAgent_Run_resultsTooLarge(t *testing.T) {
	old := maxResultsBody
	// One violations.query result encodes to about 1 KB and the exam.slots
	// result for subject 1 to about 2.3 KB: two reads do not fit together,
	// the slot list never fits.
	maxResultsBody = 1800
	t.Cleanup(func() { maxResultsBody = old })
	e := newTestEnv(t)

	var ids []string
	var singles []batch.Request
	for range 4 {
		r := readRequest()
		singles = append(singles, r)
		ids = append(ids, e.send(t, []batch.Request{r}).Header.ID)
	}
	slots := newRequest("exam.slots", map[string]any{"subject": 1})
	ids = append(ids, e.send(t, []batch.Request{slots}).Header.ID)
	pair := []batch.Request{readRequest(), readRequest()}
	ids = append(ids, e.send(t, pair).Header.ID)
	after := readRequest()
	ids = append(ids, e.send(t, []batch.Request{after}).Header.ID)

	e.start(t)
	a := e.waitAcked(t, ids...)
	for _, id := range ids {
		if a.acks[id] != 1 {
			t.Fatalf("envelope %s acknowledged %d times, want 1", id, a.acks[id])
		}
	}
	one := func(r batch.Request) batch.Result {
		t.Helper()
		got := a.results[r.ID]
		if len(got) != 1 {
			t.Fatalf("request %s (%s): %d results, want 1", r.ID, r.Operation, len(got))
		}
		return got[0]
	}
	for _, r := range append(singles, after) {
		if res := one(r); res.Status != batch.StatusDone || len(res.Rows) == 0 {
			t.Fatalf("read %s: %+v, want done with rows", r.ID, res)
		}
	}
	if res := one(slots); res.Status != batch.StatusFailed || res.Reason != ReasonResultTooLarge || res.Rows != nil {
		t.Fatalf("slot list: %+v, want failed %s without rows", res, ReasonResultTooLarge)
	}
	p0, p1 := one(pair[0]), one(pair[1])
	if (p0.Status == batch.StatusDone) == (p1.Status == batch.StatusDone) {
		t.Fatalf("pair: %s/%s and %s/%s, want one done and one %s", p0.Status, p0.Reason, p1.Status, p1.Reason, ReasonResultTooLarge)
	}
	if len(a.seqs) < len(ids) {
		t.Fatalf("%d result envelopes for %d request envelopes: results that do not fit together were not split", len(a.seqs), len(ids))
	}
}

// TestAgent_Run_replayAfterRestartAndExpiry replays a captured request
// envelope carrying a write: after it was applied, across a restart of the
// agent, and after its expiry. None is answered and none takes a second
// effect; the first two are dropped as duplicates, the expired copy is
// quarantined unopened past its header.
func TestAgent_Run_replayAfterRestartAndExpiry(t *testing.T) {
	e := newTestEnv(t)
	r := e.start(t)
	before := e.replicaCount(t, countAppointments)
	reqs := e.bookings(t, 1)
	h := e.header()
	h.Expires = time.Now().Add(3 * time.Second)
	captured := e.sealWith(t, h, batch.Requests{Requests: reqs}, e.dmz.Signer, e.intra.Recipient)
	e.drop(t, envelope.FileName(&captured.Header), captured.Data)
	first := e.waitAcked(t, captured.Header.ID).results[reqs[0].ID]
	e.waitEmpty(t)

	e.drop(t, "replay-after-apply.fxe", captured.Data)
	e.waitEmpty(t)
	r.stop(t)
	r = e.start(t)
	e.drop(t, "replay-after-restart.fxe", captured.Data)
	e.waitEmpty(t)
	if got := e.collect(t).acks[captured.Header.ID]; got != 1 {
		t.Fatalf("the captured envelope was answered %d times, want once: a replay was answered", got)
	}
	if got := e.collect(t).results[reqs[0].ID]; len(got) != 1 || !reflect.DeepEqual(got[0], first[0]) {
		t.Fatalf("answers: %+v", got)
	}

	time.Sleep(time.Until(h.Expires) + 100*time.Millisecond)
	e.drop(t, "replay-after-expiry.fxe", captured.Data)
	waitQuarantined(t, e, map[string]string{"replay-after-expiry.fxe": envelope.ReasonExpired})
	if n := e.collect(t).acks[captured.Header.ID]; n != 1 {
		t.Fatalf("the expired replay was answered (%d answers)", n)
	}
	if n := e.replicaCount(t, countAppointments); n != before+1 {
		t.Fatalf("%d appointments, want %d: a replay took effect", n, before+1)
	}
	r.stop(t)
}

// TestAgent_Run_heartbeat leaves the agent without requests: it seals an
// envelope carrying its catalogue whenever the results channel has been
// quiet for a heartbeat, chained like any other, so the DMZ hears that
// the intranet lives and gets back a catalogue the medium lost.
func TestAgent_Run_heartbeat(t *testing.T) {
	e := newTestEnv(t)
	e.cfg.Heartbeat = config.Duration(200 * time.Millisecond)
	r := e.start(t)
	deadline := time.Now().Add(10 * time.Second)
	for len(e.collect(t).catalogues) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("%d catalogue envelopes after 10s of quiet, want a heartbeat every 200ms", len(e.collect(t).catalogues))
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.stop(t)
	a := e.collect(t)
	if len(a.seqs) != len(a.catalogues) || len(a.acks) != 0 {
		t.Fatalf("heartbeats: %d envelopes, %d catalogues, %d acks", len(a.seqs), len(a.catalogues), len(a.acks))
	}
}
