package queue

import (
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
)

// testBackoff is the re-send schedule of the spool tests: 1s, 2s, 4s, 4s…
var testBackoff = Backoff{After: time.Second, Max: 4 * time.Second}

func TestBackoff_Delay(t *testing.T) {
	tests := []struct {
		b        Backoff
		attempts int
		want     time.Duration
	}{
		{Backoff{time.Minute, 10 * time.Minute}, 0, time.Minute},
		{Backoff{time.Minute, 10 * time.Minute}, 1, time.Minute},
		{Backoff{time.Minute, 10 * time.Minute}, 2, 2 * time.Minute},
		{Backoff{time.Minute, 10 * time.Minute}, 3, 4 * time.Minute},
		{Backoff{time.Minute, 10 * time.Minute}, 4, 8 * time.Minute},
		{Backoff{time.Minute, 10 * time.Minute}, 5, 10 * time.Minute},
		{Backoff{time.Minute, 10 * time.Minute}, 1000, 10 * time.Minute},
		{Backoff{2 * time.Minute, 2 * time.Minute}, 7, 2 * time.Minute},
	}
	for _, tt := range tests {
		if got := tt.b.Delay(tt.attempts); got != tt.want {
			t.Errorf("%+v.Delay(%d) = %s, want %s", tt.b, tt.attempts, got, tt.want)
		}
	}
	// A cap beyond any doubling never overflows into a negative delay.
	huge := Backoff{After: time.Hour, Max: time.Duration(1<<63 - 1)}
	for _, n := range []int{1, 10, 40, 1000} {
		if d := huge.Delay(n); d < time.Hour {
			t.Errorf("%+v.Delay(%d) = %s", huge, n, d)
		}
	}
}

// spoolT0 is the injected clock's start in the spool tests.
var spoolT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// publishedEnvelope submits n requests, seals them and publishes the
// envelope at at.
func publishedEnvelope(t *testing.T, s *Spool, in *Intake, n int, at time.Time) (*Envelope, []string) {
	t.Helper()
	ids := submitN(t, in, n)
	env := sealNext(t, s, n)
	if err := s.MarkPublished(ctxT(t), []string{env.ID}, at, testBackoff); err != nil {
		t.Fatal(err)
	}
	return env, ids
}

func envelopeAt(t *testing.T, s *Spool, id string) *Envelope {
	t.Helper()
	e, err := s.EnvelopeByID(ctxT(t), id)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func statusOf(t *testing.T, s *Spool, id string) *Status {
	t.Helper()
	st, err := s.Get(ctxT(t), id)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func dueIDs(t *testing.T, s *Spool, now time.Time) []string {
	t.Helper()
	list, err := s.Due(ctxT(t), now, 100)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range list {
		ids = append(ids, e.ID)
	}
	return ids
}

// TestSpool_DueBackoff follows one envelope through its re-send schedule:
// due resend_after after the first publication, then after twice as
// long each time, capped at resend_max.
func TestSpool_DueBackoff(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	in := runIntake(t, s, IntakeConfig{})
	ctx := ctxT(t)
	env, _ := publishedEnvelope(t, s, in, 2, spoolT0)
	at := spoolT0
	for i, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second, 4 * time.Second} {
		e := envelopeAt(t, s, env.ID)
		if e.State != EnvPublished || e.Attempts != i+1 || !e.Published.Equal(at) || !e.ResendAt.Equal(at.Add(wait)) {
			t.Fatalf("after publication %d: %s attempts %d published %s resend %s, want resend %s",
				i+1, e.State, e.Attempts, e.Published, e.ResendAt, at.Add(wait))
		}
		if got := dueIDs(t, s, at.Add(wait-time.Millisecond)); len(got) != 0 {
			t.Fatalf("publication %d: due %s early", i+1, got)
		}
		due, err := s.Due(ctx, at.Add(wait), 100)
		if err != nil || len(due) != 1 || due[0].ID != env.ID || len(due[0].Data) != 0 || due[0].Seq != env.Seq {
			t.Fatalf("publication %d: due %+v %v, want the envelope without its bytes", i+1, due, err)
		}
		at = at.Add(wait)
		if err := s.MarkPublished(ctx, []string{env.ID}, at, testBackoff); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSpool_DueOrder puts the longest overdue first and honours limit.
func TestSpool_DueOrder(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	in := runIntake(t, s, IntakeConfig{})
	ctx := ctxT(t)
	late, _ := publishedEnvelope(t, s, in, 1, spoolT0.Add(time.Second))
	early, _ := publishedEnvelope(t, s, in, 1, spoolT0)
	if got := dueIDs(t, s, spoolT0.Add(time.Hour)); !slices.Equal(got, []string{early.ID, late.ID}) {
		t.Fatalf("due %v, want %s then %s", got, early.ID, late.ID)
	}
	if list, err := s.Due(ctx, spoolT0.Add(time.Hour), 1); err != nil || len(list) != 1 || list[0].ID != early.ID {
		t.Fatalf("due with limit 1: %+v %v", list, err)
	}
}

// TestSpool_MarkDead makes an envelope dead once it was published
// max_resends times and its next re-send falls due, and checks what a
// dead envelope still does: late results and a late acknowledgement
// apply, it expires, and it is never due again.
func TestSpool_MarkDead(t *testing.T) {
	const maxAttempts = 2
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	in := runIntake(t, s, IntakeConfig{})
	ctx := ctxT(t)
	envA, reqA := publishedEnvelope(t, s, in, 2, spoolT0) // acknowledged late
	envB, reqB := publishedEnvelope(t, s, in, 1, spoolT0) // expires
	for _, id := range []string{envA.ID, envB.ID} {
		if err := s.MarkPublished(ctx, []string{id}, spoolT0.Add(time.Second), testBackoff); err != nil {
			t.Fatal(err)
		}
	}
	// Published twice; the next re-send is due 2s after the second.
	dueAt := spoolT0.Add(3 * time.Second)
	if dead, err := s.MarkDead(ctx, dueAt.Add(-time.Millisecond), maxAttempts); err != nil || len(dead) != 0 {
		t.Fatalf("dead before the re-send fell due: %+v %v", dead, err)
	}
	if dead, err := s.MarkDead(ctx, dueAt, maxAttempts+1); err != nil || len(dead) != 0 {
		t.Fatalf("dead with attempts left: %+v %v", dead, err)
	}
	dead, err := s.MarkDead(ctx, dueAt, maxAttempts)
	if err != nil || len(dead) != 2 {
		t.Fatalf("mark dead: %+v %v, want both envelopes", dead, err)
	}
	for _, e := range dead {
		if e.State != EnvDead || e.Attempts != maxAttempts || e.Requests == 0 || len(e.Data) != 0 {
			t.Fatalf("dead envelope %+v", e)
		}
	}
	// Once only.
	if again, err := s.MarkDead(ctx, dueAt.Add(time.Hour), maxAttempts); err != nil || len(again) != 0 {
		t.Fatalf("dead twice: %+v %v", again, err)
	}
	if got := dueIDs(t, s, dueAt.Add(time.Hour)); len(got) != 0 {
		t.Fatalf("dead envelopes due: %v", got)
	}
	// A publication recorded late does not bring a dead envelope back.
	if err := s.MarkPublished(ctx, []string{envA.ID}, dueAt, testBackoff); err != nil {
		t.Fatal(err)
	}
	if e := envelopeAt(t, s, envA.ID); e.State != EnvDead || e.Attempts != maxAttempts || len(e.Data) == 0 {
		t.Fatalf("dead envelope after a late mark: %s attempts %d, %d bytes", e.State, e.Attempts, len(e.Data))
	}
	for _, id := range append(slices.Clone(reqA), reqB...) {
		if st := statusOf(t, s, id); st.Status != batch.StatusSent {
			t.Fatalf("request %s of a dead envelope is %s, want sent", id, st.Status)
		}
	}

	// Late results and a late acknowledgement of envA apply as for a
	// published envelope.
	got, err := s.ApplyResults(ctx, ReceivedEnvelope{ID: strings.Repeat("d", 32), Channel: "results", Seq: 1},
		&batch.Results{Results: []batch.Result{{RequestID: reqA[0], Status: batch.StatusDone}}, Acks: []string{envA.ID}},
		dueAt.Add(time.Minute))
	if err != nil || !slices.Equal(got.Final, []string{reqA[0], reqA[1]}) || got.Acked != 1 ||
		!slices.Equal(got.NoResult, []string{reqA[1]}) {
		t.Fatalf("late results on a dead envelope: %+v %v", got, err)
	}
	if e := envelopeAt(t, s, envA.ID); e.State != EnvAcked || len(e.Data) != 0 || !e.ResendAt.IsZero() {
		t.Fatalf("dead envelope after its ack: %+v", e)
	}
	if st := statusOf(t, s, reqA[0]); st.Status != batch.StatusDone {
		t.Fatalf("late result: %s", st.Status)
	}

	// envB expires like a published envelope.
	ids, err := s.Expire(ctx, envB.Expires)
	if err != nil || !slices.Equal(ids, reqB) {
		t.Fatalf("expire dead: %v %v, want %v", ids, err, reqB)
	}
	if e := envelopeAt(t, s, envB.ID); e.State != EnvExpired || len(e.Data) != 0 {
		t.Fatalf("dead envelope after expiry: %s, %d bytes", e.State, len(e.Data))
	}
	if st := statusOf(t, s, reqB[0]); st.Status != batch.StatusSent || orphanedAt(t, s, reqB[0]) == 0 {
		t.Fatalf("request of an expired dead envelope: %+v, orphaned %d", st, orphanedAt(t, s, reqB[0]))
	}
}

// TestSpool_AskDueDeadQuery: the held requests an asking envelope asked
// about are due again once that envelope is dead, since nobody publishes
// it again.
func TestSpool_AskDueDeadQuery(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	in := runIntake(t, s, IntakeConfig{})
	ctx := ctxT(t)
	env, reqs := publishedEnvelope(t, s, in, 1, spoolT0)
	if _, err := s.ApplyResults(ctx, ReceivedEnvelope{ID: strings.Repeat("e", 32), Channel: "results", Seq: 1},
		&batch.Results{Results: []batch.Result{heldResult(reqs[0])}, Acks: []string{env.ID}}, spoolT0); err != nil {
		t.Fatal(err)
	}
	q := queryEnvelope(t, s, reqs, spoolT0.Add(time.Minute))
	if err := s.MarkPublished(ctx, []string{q.ID}, spoolT0.Add(time.Minute), testBackoff); err != nil {
		t.Fatal(err)
	}
	later := spoolT0.Add(time.Hour)
	if due, err := s.AskDue(ctx, later, 10); err != nil || len(due) != 0 {
		t.Fatalf("held due while its asking envelope is published: %v %v", due, err)
	}
	if dead, err := s.MarkDead(ctx, later, 1); err != nil || len(dead) != 1 || dead[0].ID != q.ID {
		t.Fatalf("mark dead: %+v %v", dead, err)
	}
	if due, err := s.AskDue(ctx, later, 10); err != nil || !slices.Equal(due, reqs) {
		t.Fatalf("held due once its asking envelope is dead: %v %v, want %v", due, err, reqs)
	}
}

// TestSpool_Retry retries a dead envelope and a published one; each is due
// at once with its attempts reset, and each action is recorded.
func TestSpool_Retry(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	in := runIntake(t, s, IntakeConfig{})
	ctx := ctxT(t)
	deadEnv, _ := publishedEnvelope(t, s, in, 3, spoolT0)
	if _, err := s.MarkDead(ctx, spoolT0.Add(time.Second), 1); err != nil {
		t.Fatal(err)
	}
	pubEnv, _ := publishedEnvelope(t, s, in, 1, spoolT0.Add(time.Second))
	now := spoolT0.Add(time.Minute)
	a, err := s.Retry(ctx, deadEnv.ID, "alice", now)
	if err != nil {
		t.Fatal(err)
	}
	if a.Action != ActionRetry || a.Envelope != deadEnv.ID || a.Actor != "alice" || a.Requests != 3 || !a.At.Equal(now) || a.ID == 0 {
		t.Fatalf("retry action %+v", a)
	}
	if _, err := s.Retry(ctx, pubEnv.ID, "alice", now); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{deadEnv.ID, pubEnv.ID} {
		e := envelopeAt(t, s, id)
		if e.State != EnvPublished || e.Attempts != 0 || !e.ResendAt.Equal(now) {
			t.Fatalf("retried envelope %s: %s attempts %d resend %s", id, e.State, e.Attempts, e.ResendAt)
		}
	}
	if got := dueIDs(t, s, now); !slices.Equal(got, []string{deadEnv.ID, pubEnv.ID}) {
		t.Fatalf("due after retry: %v", got)
	}
	// Published again: the backoff starts over.
	if err := s.MarkPublished(ctx, []string{deadEnv.ID}, now, testBackoff); err != nil {
		t.Fatal(err)
	}
	if e := envelopeAt(t, s, deadEnv.ID); e.Attempts != 1 || !e.ResendAt.Equal(now.Add(testBackoff.After)) {
		t.Fatalf("after the retry's publication: attempts %d resend %s", e.Attempts, e.ResendAt)
	}
	if got, err := s.RetryDead(ctx, "bob", now); err != nil || len(got) != 0 {
		t.Fatalf("retry dead with none dead: %+v %v", got, err)
	}
	if err := s.MarkPublished(ctx, []string{pubEnv.ID}, now, testBackoff); err != nil {
		t.Fatal(err)
	}
	if dead, err := s.MarkDead(ctx, now.Add(time.Hour), 1); err != nil || len(dead) != 2 {
		t.Fatalf("mark dead: %+v %v", dead, err)
	}
	all, err := s.RetryDead(ctx, "bob", now.Add(time.Hour))
	if err != nil || len(all) != 2 || all[0].Envelope != deadEnv.ID || all[1].Envelope != pubEnv.ID {
		t.Fatalf("retry dead: %+v %v", all, err)
	}
	log, err := s.Actions(ctx, 100)
	if err != nil || len(log) != 4 {
		t.Fatalf("actions %+v %v", log, err)
	}
	if l := log[3]; l.Actor != "bob" || l.Action != ActionRetry || l.Envelope != pubEnv.ID || l.Requests != 1 {
		t.Fatalf("last action %+v", l)
	}
	if last, err := s.Actions(ctx, 1); err != nil || len(last) != 1 || last[0].ID != log[3].ID {
		t.Fatalf("last action only: %+v %v", last, err)
	}
}

// TestSpool_Drop drops a dead envelope: its sent requests fail with
// reason dropped and the admin's message, a held one stays held, the
// envelope leaves the re-send cycle, late results and acknowledgements
// change nothing, and the action is recorded.
func TestSpool_Drop(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	in := runIntake(t, s, IntakeConfig{})
	ctx := ctxT(t)
	env, reqs := publishedEnvelope(t, s, in, 3, spoolT0)
	if _, err := s.ApplyResults(ctx, ReceivedEnvelope{ID: strings.Repeat("1", 32), Channel: "results", Seq: 1},
		&batch.Results{Results: []batch.Result{heldResult(reqs[2])}}, spoolT0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MarkDead(ctx, spoolT0.Add(time.Second), 1); err != nil {
		t.Fatal(err)
	}
	now := spoolT0.Add(time.Minute)
	const msg = "intranet rebuilt; ticket 42"
	if _, err := s.Drop(ctx, env.ID, "alice", "  ", now); err == nil {
		t.Fatal("drop without a reason accepted")
	}
	a, err := s.Drop(ctx, env.ID, "alice", msg, now)
	if err != nil {
		t.Fatal(err)
	}
	if a.Action != ActionDrop || a.Requests != 2 || a.Reason != msg || a.Actor != "alice" {
		t.Fatalf("drop action %+v", a)
	}
	// Orphaned, not failed: the intranet may have applied the envelope.
	for _, id := range reqs[:2] {
		st := statusOf(t, s, id)
		if st.Status != batch.StatusSent || st.Reason != "" || !st.Updated.Equal(now) || orphanedAt(t, s, id) != ms(now) {
			t.Fatalf("dropped request %+v, orphaned %d", st, orphanedAt(t, s, id))
		}
		if params, subject := personal(t, s, id); params != nil || subject != "" {
			t.Fatalf("dropped request keeps personal data")
		}
	}
	if st := statusOf(t, s, reqs[2]); st.Status != batch.StatusHeld {
		t.Fatalf("held request of a dropped envelope: %s", st.Status)
	}
	if e := envelopeAt(t, s, env.ID); e.State != EnvDropped || len(e.Data) != 0 || !e.ResendAt.IsZero() {
		t.Fatalf("dropped envelope %+v", e)
	}
	if got := dueIDs(t, s, now.Add(time.Hour)); len(got) != 0 {
		t.Fatalf("dropped envelope due: %v", got)
	}
	// Both orphaned requests are due to be asked about at once (the
	// held one only once it waited the age given).
	if due, err := s.AskDue(ctx, now.Add(-time.Hour), 10); err != nil || !slices.Equal(due, reqs[:2]) {
		t.Fatalf("due after the drop: %v %v, want %v", due, err, reqs[:2])
	}
	// The intranet had applied the envelope after all: the late result
	// is the request's result. The acknowledgement changes nothing.
	got, err := s.ApplyResults(ctx, ReceivedEnvelope{ID: strings.Repeat("2", 32), Channel: "results", Seq: 2},
		&batch.Results{Results: []batch.Result{{RequestID: reqs[0], Status: batch.StatusDone}}, Acks: []string{env.ID}}, now)
	if err != nil || got.Acked != 0 || got.Stale != 0 || !slices.Equal(got.Final, reqs[:1]) {
		t.Fatalf("late results on a dropped envelope: %+v %v", got, err)
	}
	if st := statusOf(t, s, reqs[0]); st.Status != batch.StatusDone {
		t.Fatalf("late result of a dropped envelope's request: %+v", st)
	}
	if ids, err := s.Expire(ctx, env.Expires); err != nil || len(ids) != 0 {
		t.Fatalf("expire a dropped envelope: %v %v", ids, err)
	}
	if e := envelopeAt(t, s, env.ID); e.State != EnvDropped {
		t.Fatalf("dropped envelope after expiry: %s", e.State)
	}
	log, err := s.Actions(ctx, 10)
	if err != nil || len(log) != 1 || *log[0] != *a {
		t.Fatalf("actions %+v %v, want %+v", log, err, a)
	}
}

// TestSpool_ActionRefused: retry and drop refuse envelopes they do not
// apply to, and record nothing.
func TestSpool_ActionRefused(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	in := runIntake(t, s, IntakeConfig{})
	ctx := ctxT(t)
	acked, _ := publishedEnvelope(t, s, in, 1, spoolT0)
	if _, err := s.ApplyResults(ctx, ReceivedEnvelope{ID: strings.Repeat("3", 32), Channel: "results", Seq: 1},
		&batch.Results{Acks: []string{acked.ID}}, spoolT0); err != nil {
		t.Fatal(err)
	}
	expired, _ := publishedEnvelope(t, s, in, 1, spoolT0)
	if _, err := s.Expire(ctx, expired.Expires); err != nil {
		t.Fatal(err)
	}
	submitN(t, in, 1)
	sealed := sealNext(t, s, 1)
	dropped, _ := publishedEnvelope(t, s, in, 1, spoolT0)
	if _, err := s.Drop(ctx, dropped.ID, "alice", "gone", spoolT0); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		do   func() error
		want error
	}{
		{"retry acked", func() error { _, err := s.Retry(ctx, acked.ID, "bob", spoolT0); return err }, ErrEnvelopeState},
		{"retry expired", func() error { _, err := s.Retry(ctx, expired.ID, "bob", spoolT0); return err }, ErrEnvelopeState},
		{"retry dropped", func() error { _, err := s.Retry(ctx, dropped.ID, "bob", spoolT0); return err }, ErrEnvelopeState},
		{"retry sealed", func() error { _, err := s.Retry(ctx, sealed.ID, "bob", spoolT0); return err }, ErrEnvelopeState},
		{"retry unknown", func() error { _, err := s.Retry(ctx, strings.Repeat("f", 32), "bob", spoolT0); return err }, ErrNotFound},
		{"drop acked", func() error { _, err := s.Drop(ctx, acked.ID, "bob", "x", spoolT0); return err }, ErrEnvelopeState},
		{"drop expired", func() error { _, err := s.Drop(ctx, expired.ID, "bob", "x", spoolT0); return err }, ErrEnvelopeState},
		{"drop dropped", func() error { _, err := s.Drop(ctx, dropped.ID, "bob", "x", spoolT0); return err }, ErrEnvelopeState},
		{"drop unknown", func() error { _, err := s.Drop(ctx, strings.Repeat("f", 32), "bob", "x", spoolT0); return err }, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(); !errors.Is(err, tt.want) {
				t.Fatalf("%v, want %v", err, tt.want)
			}
		})
	}
	if log, err := s.Actions(ctx, 10); err != nil || len(log) != 1 {
		t.Fatalf("actions after refusals: %+v %v, want the one drop", log, err)
	}
	// A sealed envelope can be dropped.
	if a, err := s.Drop(ctx, sealed.ID, "bob", "not wanted", spoolT0); err != nil || a.Requests != 1 {
		t.Fatalf("drop sealed: %+v %v", a, err)
	}
	if list, err := s.Unpublished(ctx); err != nil || len(list) != 0 {
		t.Fatalf("dropped sealed envelope still unpublished: %+v %v", list, err)
	}
}

// TestSpool_ListAndCount lists envelopes by state and counts requests by
// status.
func TestSpool_ListAndCount(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	in := runIntake(t, s, IntakeConfig{})
	ctx := ctxT(t)
	dead, _ := publishedEnvelope(t, s, in, 2, spoolT0)
	if _, err := s.MarkDead(ctx, spoolT0.Add(time.Second), 1); err != nil {
		t.Fatal(err)
	}
	pub, _ := publishedEnvelope(t, s, in, 1, spoolT0)
	submitN(t, in, 1)
	list, err := s.ListEnvelopes(ctx, EnvDead)
	if err != nil || len(list) != 1 || list[0].ID != dead.ID || len(list[0].Data) != 0 || list[0].Attempts != 1 {
		t.Fatalf("list dead: %+v %v", list, err)
	}
	all, err := s.ListEnvelopes(ctx)
	if err != nil || len(all) != 2 || all[1].ID != pub.ID || !all[1].ResendAt.Equal(spoolT0.Add(time.Second)) {
		t.Fatalf("list all: %+v %v", all, err)
	}
	counts, err := s.CountRequests(ctx)
	if err != nil || counts[batch.StatusSent] != 3 || counts[batch.StatusQueued] != 1 || len(counts) != 2 {
		t.Fatalf("counts %v %v", counts, err)
	}
}

// TestSpool_MigrateFrom0006 opens a spool left at schema version 6 with
// requests in a published and an acknowledged envelope, and checks that
// 0007's rebuild of envelopes and requests keeps every row, the foreign
// keys and the rid counter, and makes the published envelope due at once.
func TestSpool_MigrateFrom0006(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	ctx := ctxT(t)
	db := openOldSpool(t, path, 6)
	const (
		envAcked = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		envOpen  = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
		envNew   = "cccccccccccccccccccccccccccccccc"
	)
	if _, err := db.ExecContext(ctx, `INSERT INTO envelopes
		(id, channel, seq, header_hash, name, data, requests, state, created, expires, published) VALUES
		(?, 'requests', 1, zeroblob(32), 'a.fxe', X'', 1, 'acked', 1, 3600001, 2),
		(?, 'requests', 2, zeroblob(32), 'b.fxe', X'0102', 1, 'published', 3, 3600003, 4),
		(?, 'requests', 3, zeroblob(32), 'c.fxe', X'0304', 1, 'sealed', 5, 3600005, 0)`, envAcked, envOpen, envNew); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO requests
		(id, client, idem_key, body_hash, operation, params, received, status, envelope_id, result,
		 rows_affected, reason, message, updated, subject, retry_after, queried, query_envelope) VALUES
		('00000000000000000000000000000001', 'portal', 'k1', X'01', 'exam.slots', NULL, 1, 'done', ?, CAST('[]' AS BLOB), 0, '', '', 2, '', 0, 0, NULL),
		('00000000000000000000000000000002', 'portal', NULL, X'02', 'exam.slots', CAST('{}' AS BLOB), 3, 'sent', ?, NULL, 0, '', '', 4, '', 0, 7, ?),
		('00000000000000000000000000000003', 'portal', 'k3', X'03', 'exam.slots', CAST('{}' AS BLOB), 5, 'queued', ?, NULL, 0, '', '', 6, '', 0, 0, NULL),
		('00000000000000000000000000000004', 'portal', 'k4', X'04', 'exam.slots', CAST('{}' AS BLOB), 7, 'queued', NULL, NULL, 0, '', '', 8, '', 0, 0, NULL)`,
		envAcked, envOpen, envOpen, envNew); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `DELETE FROM requests WHERE rid = 4`); err != nil {
		t.Fatal(err)
	}
	wantRows, wantIndexes := dumpRequests(t, db), schemaOf(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s := openSpool(t, path)
	if v, want := schemaVersion(t, s), latestVersion(t); v != want || v < 7 {
		t.Fatalf("schema version %d, want %d", v, want)
	}
	if got := dumpRequests(t, s.r); !slices.Equal(got, wantRows) {
		t.Fatalf("rows after migration:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantRows, "\n"))
	}
	if got, want := schemaOf(t, s.r), withAskIndex(wantIndexes); !slices.Equal(got, want) {
		t.Fatalf("indexes after migration:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var q string
	if err := s.r.QueryRow(`SELECT queried || '/' || query_envelope FROM requests WHERE rid = 2`).Scan(&q); err != nil || q != "7/"+envOpen {
		t.Fatalf("asking columns after migration: %q %v", q, err)
	}
	for _, pragma := range []string{"integrity_check", "foreign_key_check", "foreign_key_list(requests)"} {
		rows, err := s.r.Query("PRAGMA " + pragma)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		var out []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			if pragma == "foreign_key_list(requests)" {
				out = append(out, fmt.Sprint(vals[2])) // the table referred to
			} else {
				out = append(out, fmt.Sprint(vals...))
			}
		}
		rows.Close()
		switch pragma {
		case "integrity_check":
			if !slices.Equal(out, []string{"ok"}) {
				t.Fatalf("integrity_check: %v", out)
			}
		case "foreign_key_check":
			if len(out) != 0 {
				t.Fatalf("foreign_key_check: %d violations", len(out))
			}
		default:
			if !slices.Equal(out, []string{"envelopes"}) {
				t.Fatalf("requests refers to %v, want [envelopes]", out)
			}
		}
	}
	var seqs []string
	rows, err := s.r.Query(`SELECT name || '=' || seq FROM sqlite_sequence ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	if seqs, err = scanStrings(rows); err != nil || !slices.Equal(seqs, []string{"requests=4"}) {
		t.Fatalf("sqlite_sequence after migration %v (%v), want [requests=4]", seqs, err)
	}
	tests := []struct {
		id       string
		state    string
		attempts int
		resend   time.Time
	}{
		{envAcked, EnvAcked, 1, time.Time{}},
		{envOpen, EnvPublished, 1, time.UnixMilli(4).UTC()},
		{envNew, EnvSealed, 0, time.Time{}},
	}
	for _, tt := range tests {
		if e := envelopeAt(t, s, tt.id); e.State != tt.state || e.Attempts != tt.attempts || !e.ResendAt.Equal(tt.resend) {
			t.Fatalf("envelope %s after migration: %s attempts %d resend %s", tt.id, e.State, e.Attempts, e.ResendAt)
		}
	}
	if got := dueIDs(t, s, time.UnixMilli(4)); !slices.Equal(got, []string{envOpen}) {
		t.Fatalf("due after migration: %v", got)
	}
	// The rebuilt tables work: the foreign key holds, and a dead
	// envelope can be stored.
	if _, err := s.w.ExecContext(ctx, `UPDATE requests SET envelope_id = ? WHERE rid = 3`, strings.Repeat("9", 32)); err == nil {
		t.Fatal("foreign key on requests.envelope_id lost")
	}
	if dead, err := s.MarkDead(ctx, time.UnixMilli(4), 1); err != nil || len(dead) != 1 {
		t.Fatalf("mark dead after migration: %+v %v", dead, err)
	}
}

// resealNext seals a re-send of old's open requests as the channel's next
// envelope and stores it with StoreResend.
func resealNext(t *testing.T, s *Spool, old *Envelope) (*Envelope, error) {
	t.Helper()
	ctx := ctxT(t)
	next, prev, err := s.Channel(ctx, "requests")
	if err != nil {
		t.Fatal(err)
	}
	id, _ := batch.NewID(rand.Reader)
	env := &Envelope{ID: id, Channel: "requests", Seq: next, Name: id + ".fxe", Data: []byte("resend " + id),
		Created: time.Now(), Expires: old.Expires}
	env.HeaderHash[0], env.HeaderHash[1] = byte(next), prev[0]+1
	return env, s.StoreResend(ctx, env, old.ID, nil, time.Time{})
}

// TestSpool_StoreResend re-sends the open requests of a due envelope in a
// new one: the requests move, answered ones included, the old envelope
// goes, the publication count carries over, and the channel advances. An
// envelope acknowledged meanwhile is not replaced and nothing is stored.
func TestSpool_StoreResend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s := openSpool(t, path)
	in := runIntake(t, s, IntakeConfig{})
	ctx := ctxT(t)
	old, ids := publishedEnvelope(t, s, in, 3, spoolT0)
	// One request is answered before the re-send.
	if _, err := s.ApplyResults(ctx, ReceivedEnvelope{ID: strings.Repeat("a", 32), Channel: "results", Seq: 1},
		&batch.Results{Results: []batch.Result{{RequestID: ids[1], Status: batch.StatusDone}}}, spoolT0); err != nil {
		t.Fatal(err)
	}
	open, err := s.OpenRequests(ctx, old.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 2 || open[0].ID != ids[0] || open[1].ID != ids[2] || string(open[0].Params) == "" {
		t.Fatalf("open requests %+v, want %s and %s with their parameters", open, ids[0], ids[2])
	}
	env, err := resealNext(t, s, old)
	if err != nil {
		t.Fatal(err)
	}
	got := envelopeAt(t, s, env.ID)
	if got.State != EnvSealed || got.Attempts != 1 || got.Requests != 2 || got.Seq != old.Seq+1 || !got.Expires.Equal(old.Expires.Truncate(time.Millisecond)) {
		t.Fatalf("re-send %+v: want sealed, attempts 1, 2 requests, seq %d", got, old.Seq+1)
	}
	if _, err := s.EnvelopeByID(ctx, old.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the replaced envelope is still there: %v", err)
	}
	for _, id := range ids {
		if st := statusOf(t, s, id); st.Status != batch.StatusDone && st.Status != batch.StatusSent {
			t.Fatalf("request %s is %s", id, st.Status)
		}
	}
	if n := countRows(t, path, `SELECT count(*) FROM requests WHERE envelope_id = ?`, env.ID); n != 3 {
		t.Fatalf("%d requests belong to the re-send, want all 3", n)
	}
	// Published, the backoff goes on: the second publication waits 2s.
	if err := s.MarkPublished(ctx, []string{env.ID}, spoolT0.Add(time.Second), testBackoff); err != nil {
		t.Fatal(err)
	}
	if e := envelopeAt(t, s, env.ID); e.Attempts != 2 || !e.ResendAt.Equal(spoolT0.Add(3*time.Second)) {
		t.Fatalf("after publishing the re-send: attempts %d, due %s", e.Attempts, e.ResendAt)
	}
	// Acknowledged meanwhile: nothing is stored and the channel stays.
	if _, err := s.ApplyResults(ctx, ReceivedEnvelope{ID: strings.Repeat("b", 32), Channel: "results", Seq: 2},
		&batch.Results{Acks: []string{env.ID}}, spoolT0); err != nil {
		t.Fatal(err)
	}
	next, _, _ := s.Channel(ctx, "requests")
	if _, err := resealNext(t, s, env); !errors.Is(err, ErrEnvelopeState) {
		t.Fatalf("re-send of an acknowledged envelope: %v, want ErrEnvelopeState", err)
	}
	if again, _, _ := s.Channel(ctx, "requests"); again != next {
		t.Fatalf("channel moved from %d to %d for a refused re-send", next, again)
	}
}

// TestSpool_Retire takes envelopes with nothing to re-send out of the
// cycle: a heartbeat goes, an envelope whose requests were all answered
// counts as acknowledged, and one with an unanswered request stays.
func TestSpool_Retire(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	in := runIntake(t, s, IntakeConfig{})
	ctx := ctxT(t)
	heartbeat := sealNext(t, s, 0)
	answered, ids := publishedEnvelope(t, s, in, 1, spoolT0)
	open, _ := publishedEnvelope(t, s, in, 1, spoolT0)
	if err := s.MarkPublished(ctx, []string{heartbeat.ID}, spoolT0, testBackoff); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyResults(ctx, ReceivedEnvelope{ID: strings.Repeat("a", 32), Channel: "results", Seq: 1},
		&batch.Results{Results: []batch.Result{{RequestID: ids[0], Status: batch.StatusDone}}}, spoolT0); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{heartbeat.ID, answered.ID} {
		if ok, err := s.Retire(ctx, id); err != nil || !ok {
			t.Fatalf("retire %s: %v %v", id, ok, err)
		}
	}
	if _, err := s.EnvelopeByID(ctx, heartbeat.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("retired heartbeat still there: %v", err)
	}
	if e := envelopeAt(t, s, answered.ID); e.State != EnvAcked {
		t.Fatalf("retired answered envelope is %s, want acked", e.State)
	}
	if _, err := s.Retire(ctx, open.ID); !errors.Is(err, ErrEnvelopeState) {
		t.Fatalf("retire with an unanswered request: %v, want ErrEnvelopeState", err)
	}
	if ok, err := s.Retire(ctx, answered.ID); err != nil || ok {
		t.Fatalf("retire twice: %v %v", ok, err)
	}
}

// TestSpool_ResendMissing makes due at once the envelopes the intranet
// reports missing, once each: published once, long enough ago, not the
// ones it received or that are already due or re-sent.
func TestSpool_ResendMissing(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	in := runIntake(t, s, IntakeConfig{})
	ctx := ctxT(t)
	var envs []*Envelope
	for range 5 {
		e, _ := publishedEnvelope(t, s, in, 1, spoolT0)
		envs = append(envs, e)
	}
	// envs[3] was published twice already; envs[4] just now.
	if err := s.MarkPublished(ctx, []string{envs[3].ID}, spoolT0, testBackoff); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkPublished(ctx, []string{envs[4].ID}, spoolT0.Add(time.Minute), testBackoff); err != nil {
		t.Fatal(err)
	}
	now := spoolT0.Add(100 * time.Millisecond)
	missing := [][2]uint64{{envs[0].Seq, envs[0].Seq}, {envs[2].Seq, envs[4].Seq}}
	n, err := s.ResendMissing(ctx, "requests", missing, now, now)
	if err != nil || n != 2 {
		t.Fatalf("ResendMissing = %d, %v; want envs 0 and 2", n, err)
	}
	select {
	case <-s.DueSignal():
	default:
		t.Fatal("no due signal")
	}
	if got := dueIDs(t, s, now); !slices.Equal(got, []string{envs[0].ID, envs[2].ID}) {
		t.Fatalf("due %v, want %s and %s", got, envs[0].ID, envs[2].ID)
	}
	// Reported again: nothing more.
	if n, err := s.ResendMissing(ctx, "requests", missing, now.Add(time.Second), now.Add(time.Second)); err != nil || n != 0 {
		t.Fatalf("ResendMissing again = %d, %v", n, err)
	}
	select {
	case <-s.DueSignal():
		t.Fatal("due signal without an envelope made due")
	default:
	}
	// Bad ranges are skipped.
	if n, err := s.ResendMissing(ctx, "requests", [][2]uint64{{5, 1}, {1 << 63, 1<<64 - 1}}, now, now); err != nil || n != 0 {
		t.Fatalf("ResendMissing with bad ranges = %d, %v", n, err)
	}
}
