package queue

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
)

func openSpool(t *testing.T, path string) *Spool {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// runIntake starts an intake on s and stops it at cleanup.
func runIntake(t *testing.T, s *Spool, cfg IntakeConfig) *Intake {
	t.Helper()
	in := NewIntake(s, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("intake Run: %v", err)
		}
	})
	return in
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// countRows counts rows in a second, independent handle on the file.
func countRows(t *testing.T, path, query string, args ...any) int {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestIntake_GroupCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s := openSpool(t, path)
	in := runIntake(t, s, IntakeConfig{})
	ctx := ctxT(t)
	const n = 400
	var wg sync.WaitGroup
	ids := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acc, err := in.Submit(ctx, Request{Client: "portal", Operation: "op", Params: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))})
			ids[i], errs[i] = acc.ID, err
			if err == nil {
				// Durable on return: another handle sees the row.
				if c := countRows(t, path, `SELECT count(*) FROM requests WHERE id = ?`, acc.ID); c != 1 {
					t.Errorf("request %d: %d rows after Submit returned", i, c)
				}
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
		if !batch.ValidID(ids[i]) {
			t.Fatalf("submit %d: id %q", i, ids[i])
		}
	}
	if c := countRows(t, path, `SELECT count(*) FROM requests WHERE status = 'queued'`); c != n {
		t.Fatalf("%d queued rows, want %d", c, n)
	}
	st := in.Stats()
	if st.Inserted != n || st.Commits >= n {
		t.Fatalf("stats %+v: want %d inserted in fewer than %d commits", st, n, n)
	}
	t.Logf("%d requests in %d commits", st.Inserted, st.Commits)
}

func TestIntake_Idempotency(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	in := runIntake(t, s, IntakeConfig{})
	ctx := ctxT(t)
	req := Request{Client: "portal", IdempotencyKey: "k1", Operation: "op", Params: json.RawMessage(`{"a":1}`)}
	first, err := in.Submit(ctx, req)
	if err != nil || first.Existing {
		t.Fatalf("first: %+v %v", first, err)
	}
	tests := []struct {
		name     string
		req      Request
		wantErr  error
		wantSame bool
	}{
		{"same key same body", req, nil, true},
		{"same key other params", Request{Client: "portal", IdempotencyKey: "k1", Operation: "op", Params: json.RawMessage(`{"a":2}`)}, ErrIdempotencyConflict, false},
		{"same key other operation", Request{Client: "portal", IdempotencyKey: "k1", Operation: "op2", Params: json.RawMessage(`{"a":1}`)}, ErrIdempotencyConflict, false},
		{"same key other client", Request{Client: "other", IdempotencyKey: "k1", Operation: "op", Params: json.RawMessage(`{"a":1}`)}, nil, false},
		{"no key", Request{Client: "portal", Operation: "op", Params: json.RawMessage(`{"a":1}`)}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acc, err := in.Submit(ctx, tt.req)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got := acc.ID == first.ID; got != tt.wantSame || acc.Existing != tt.wantSame {
				t.Fatalf("accepted %+v, first %s, want same=%v", acc, first.ID, tt.wantSame)
			}
		})
	}
	// Concurrent repeats of one new key land on one request.
	var wg sync.WaitGroup
	got := make([]string, 20)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acc, err := in.Submit(ctx, Request{Client: "portal", IdempotencyKey: "k2", Operation: "op", Params: json.RawMessage(`{}`)})
			if err != nil {
				t.Error(err)
			}
			got[i] = acc.ID
		}()
	}
	wg.Wait()
	for _, id := range got {
		if id != got[0] {
			t.Fatalf("same key gave ids %s and %s", got[0], id)
		}
	}
}

func TestIntake_StopRefusesAndFlushes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s := openSpool(t, path)
	// A submission is waiting when Run sees its context end. Run's select
	// then has both the wake-up and ctx.Done ready and picks one at
	// random; only the final flush commits the submission when it picks
	// ctx.Done. Twenty rounds miss a missing flush with odds of 2^-20.
	for round := range 20 {
		in := NewIntake(s, IntakeConfig{})
		res := make(chan error, 1)
		go func() {
			_, err := in.Submit(context.Background(), Request{Client: "c", Operation: "op"})
			res <- err
		}()
		for deadline := time.Now().Add(10 * time.Second); ; {
			in.mu.Lock()
			n := len(in.pending)
			in.mu.Unlock()
			if n == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("submission never queued")
			}
			time.Sleep(time.Millisecond)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := in.Run(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-res:
			if err != nil {
				t.Fatalf("round %d: pending submission: %v, want it committed by the final flush", round, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: pending submission never answered after Run returned", round)
		}
		if _, err := in.Submit(context.Background(), Request{Client: "c", Operation: "op"}); !errors.Is(err, ErrClosed) {
			t.Fatalf("submit after stop: %v, want ErrClosed", err)
		}
	}
	if n := countRows(t, path, "SELECT count(*) FROM requests"); n != 20 {
		t.Fatalf("%d requests stored, want 20", n)
	}
}

// seal stores a fake envelope for the unsealed requests, as the batcher
// would.
func sealNext(t *testing.T, s *Spool, max int) *Envelope {
	t.Helper()
	ctx := ctxT(t)
	reqs, err := s.Unsealed(ctx, max)
	if err != nil {
		t.Fatal(err)
	}
	next, prev, err := s.Channel(ctx, "requests")
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(reqs))
	for i, r := range reqs {
		ids[i] = r.ID
	}
	id, _ := batch.NewID(rand.Reader)
	env := &Envelope{ID: id, Channel: "requests", Seq: next, Name: id + ".fxe", Data: []byte("data " + id),
		Created: time.Now(), Expires: time.Now().Add(time.Hour)}
	env.HeaderHash[0], env.HeaderHash[1] = byte(next), prev[0]+1
	if err := s.StoreSealed(ctx, env, ids); err != nil {
		t.Fatal(err)
	}
	return env
}

func TestSpool_ChainAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	in := NewIntake(s, IntakeConfig{})
	ictx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- in.Run(ictx) }()
	for range 5 {
		if _, err := in.Submit(ctx, Request{Client: "c", Operation: "op"}); err != nil {
			t.Fatal(err)
		}
	}
	e1 := sealNext(t, s, 2)
	e2 := sealNext(t, s, 2)
	if e1.Seq != 1 || e2.Seq != 2 {
		t.Fatalf("seqs %d %d, want 1 2", e1.Seq, e2.Seq)
	}
	// A stale seal (the sequence number already used) stores nothing.
	stale := &Envelope{ID: "ffffffffffffffffffffffffffffffff", Channel: "requests", Seq: 2, Name: "x.fxe", Data: []byte("x"),
		Created: time.Now(), Expires: time.Now().Add(time.Hour)}
	rest, _ := s.Unsealed(ctx, 10)
	if err := s.StoreSealed(ctx, stale, []string{rest[0].ID}); !errors.Is(err, ErrSeqConflict) {
		t.Fatalf("stale seal: %v, want ErrSeqConflict", err)
	}
	if err := s.MarkPublished(ctx, []string{e1.ID}, time.Now(), testBackoff); err != nil {
		t.Fatal(err)
	}
	stop()
	<-done
	s.Close()

	// Reopen: the channel continues after e2, and e2 is still to publish.
	s = openSpool(t, path)
	next, prev, err := s.Channel(ctx, "requests")
	if err != nil {
		t.Fatal(err)
	}
	if next != 3 || prev != e2.HeaderHash {
		t.Fatalf("after reopen: next %d prev %x, want 3 %x", next, prev[:2], e2.HeaderHash[:2])
	}
	unpub, err := s.Unpublished(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(unpub) != 1 || unpub[0].ID != e2.ID || string(unpub[0].Data) != string(e2.Data) {
		t.Fatalf("unpublished %+v, want only %s with the same bytes", unpub, e2.ID)
	}
	rest, _ = s.Unsealed(ctx, 10)
	if len(rest) != 1 {
		t.Fatalf("%d unsealed requests, want 1", len(rest))
	}
	st, err := s.Get(ctx, e1IDRequest(t, s, e1.ID))
	if err != nil || st.Status != batch.StatusSent {
		t.Fatalf("request of published envelope: %+v %v, want sent", st, err)
	}
}

func e1IDRequest(t *testing.T, s *Spool, envID string) string {
	t.Helper()
	var id string
	if err := s.r.QueryRow(`SELECT id FROM requests WHERE envelope_id = ? LIMIT 1`, envID).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestSpool_ApplyResults(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	in := runIntake(t, s, IntakeConfig{})
	ctx := ctxT(t)
	var ids []string
	for range 3 {
		acc, err := in.Submit(ctx, Request{Client: "c", Operation: "op", Params: json.RawMessage(`{"id_number":"x"}`)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, acc.ID)
	}
	env := sealNext(t, s, 10)
	if err := s.MarkPublished(ctx, []string{env.ID}, time.Now(), testBackoff); err != nil {
		t.Fatal(err)
	}
	unknown := "0123456789abcdef0123456789abcdef"
	res := &batch.Results{
		Results: []batch.Result{
			{RequestID: ids[0], Status: batch.StatusDone, Rows: []map[string]any{{"n": 1}}},
			{RequestID: ids[1], Status: batch.StatusRejected, Reason: "rate_limited", Message: "slow down", RetryAfter: 6},
			{RequestID: unknown, Status: batch.StatusDone},
		},
	}
	r1 := ReceivedEnvelope{ID: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Channel: "results", Seq: 1}
	got, err := s.ApplyResults(ctx, r1, res, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Final) != 2 || len(got.Unknown) != 1 || got.Unknown[0] != unknown {
		t.Fatalf("applied %+v", got)
	}
	if _, err := s.ApplyResults(ctx, r1, res, time.Now()); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("same envelope again: %v, want ErrDuplicate", err)
	}
	r2 := ReceivedEnvelope{ID: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", Channel: "results", Seq: 1}
	if _, err := s.ApplyResults(ctx, r2, res, time.Now()); !errors.Is(err, ErrReplay) {
		t.Fatalf("other envelope with the same seq: %v, want ErrReplay", err)
	}
	// A later envelope with a different result for ids[0] does not
	// change it (stored once), and its ack fails the unanswered ids[2].
	r3 := ReceivedEnvelope{ID: "cccccccccccccccccccccccccccccccc", Channel: "results", Seq: 2}
	got, err = s.ApplyResults(ctx, r3, &batch.Results{Acks: []string{env.ID},
		Results: []batch.Result{{RequestID: ids[0], Status: batch.StatusFailed, Reason: "x"}}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got.Stale != 1 || got.Acked != 1 || len(got.NoResult) != 1 || got.NoResult[0] != ids[2] {
		t.Fatalf("second apply %+v", got)
	}
	// Final lists the requests that became final, so long polls on them
	// wake: the no-result failure included.
	if !slices.Contains(got.Final, ids[2]) {
		t.Fatalf("second apply: Final %v lacks the no-result request %s", got.Final, ids[2])
	}
	want := []struct {
		status, reason, result string
		retry                  int64
	}{
		{batch.StatusDone, "", `[{"n":1}]`, 0},
		{batch.StatusRejected, "rate_limited", "", 6},
		{batch.StatusFailed, ReasonNoResult, "", 0},
	}
	for i, w := range want {
		st, err := s.Get(ctx, ids[i])
		if err != nil {
			t.Fatal(err)
		}
		if st.Status != w.status || st.Reason != w.reason || string(st.Result) != w.result || st.RetryAfter != w.retry {
			t.Errorf("request %d: %s/%s/%s retry %d, want %s/%s/%s retry %d", i, st.Status, st.Reason, st.Result, st.RetryAfter,
				w.status, w.reason, w.result, w.retry)
		}
	}
	// Final requests no longer hold their parameters.
	var n int
	if err := s.r.QueryRow(`SELECT count(*) FROM requests WHERE params IS NOT NULL`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d requests still hold params (%v)", n, err)
	}
	if e, err := s.EnvelopeByID(ctx, env.ID); err != nil || e.State != EnvAcked || len(e.Data) != 0 {
		t.Fatalf("envelope after ack: %+v %v", e, err)
	}
}

func TestSpool_ExpireAndResend(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	in := runIntake(t, s, IntakeConfig{})
	ctx := ctxT(t)
	acc, err := in.Submit(ctx, Request{Client: "c", Operation: "op"})
	if err != nil {
		t.Fatal(err)
	}
	env := sealNext(t, s, 10)
	sent := time.Now()
	if err := s.MarkPublished(ctx, []string{env.ID}, sent, testBackoff); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.Due(ctx, sent.Add(testBackoff.After-time.Millisecond), 10); len(list) != 0 {
		t.Fatalf("unacked before its time: %d", len(list))
	}
	if list, _ := s.Due(ctx, sent.Add(testBackoff.After), 10); len(list) != 1 || list[0].ID != env.ID {
		t.Fatalf("unacked after resend time: %+v", list)
	}
	if ids, err := s.Expire(ctx, env.Expires.Add(-time.Second)); err != nil || len(ids) != 0 {
		t.Fatalf("expire early: %v %v", ids, err)
	}
	ids, err := s.Expire(ctx, env.Expires.Add(time.Second))
	if err != nil || len(ids) != 1 || ids[0] != acc.ID {
		t.Fatalf("expire: %v %v", ids, err)
	}
	// Not final: the intranet may have applied it. It is orphaned, and
	// due to be asked about at once.
	st, _ := s.Get(ctx, acc.ID)
	if st.Status != batch.StatusSent || st.Reason != "" || orphanedAt(t, s, acc.ID) != ms(env.Expires.Add(time.Second)) {
		t.Fatalf("status %+v, orphaned %d", st, orphanedAt(t, s, acc.ID))
	}
	if due, err := s.AskDue(ctx, env.Expires.Add(-time.Hour), 10); err != nil || !slices.Equal(due, []string{acc.ID}) {
		t.Fatalf("due after expiry: %v %v", due, err)
	}
	if list, _ := s.Due(ctx, time.Now().Add(time.Hour), 10); len(list) != 0 {
		t.Fatalf("expired envelope still resent")
	}
}
