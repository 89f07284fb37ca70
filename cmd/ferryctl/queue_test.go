package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/dmz"
	"github.com/ferrybridge/ferry/internal/envelope"
	"github.com/ferrybridge/ferry/internal/queue"
	"github.com/ferrybridge/ferry/internal/sqlitedb"
)

// queueSpool is a DMZ deployment made by `ferryctl init` whose spool the
// test holds open, as the running agent would, with three envelopes: a
// dead one carrying two requests, a published one carrying one, and an
// acknowledged one.
type queueSpool struct {
	cfg               string // dmz.yaml
	path              string // the spool
	spool             *queue.Spool
	dead, pub, acked  string // envelope ids
	deadReqs, pubReqs []string
	publishedAt       time.Time
}

func newQueueSpool(t *testing.T) *queueSpool {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "dep")
	mustFerryctl(t, 0, "init", dir)
	q := &queueSpool{cfg: filepath.Join(dir, "dmz", "dmz.yaml")}
	cfg, err := dmz.LoadConfig(q.cfg)
	if err != nil {
		t.Fatal(err)
	}
	q.path = cfg.Spool
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := queue.Open(ctx, q.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	q.spool = s

	in := queue.NewIntake(s, queue.IntakeConfig{})
	ictx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- in.Run(ictx) }()
	var ids []string
	for range 4 {
		acc, err := in.Submit(ctx, queue.Request{Client: "portal", Operation: "exam.slots", Params: json.RawMessage(`{"subject":1}`)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, acc.ID)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	b := queue.Backoff{After: time.Minute, Max: time.Hour}
	q.publishedAt = time.Now().Truncate(time.Second).Add(-time.Hour)
	seal := func(reqs []string) *queue.Envelope {
		next, prev, err := s.Channel(ctx, dmz.RequestsChannel)
		if err != nil {
			t.Fatal(err)
		}
		id := envelope.NewID()
		env := &queue.Envelope{ID: id, Channel: dmz.RequestsChannel, Seq: next, Name: id + envelope.FileExt,
			Data: []byte("sealed " + id), Created: q.publishedAt, Expires: q.publishedAt.Add(24 * time.Hour)}
		env.HeaderHash[0] = byte(next) + prev[0]
		if err := s.StoreSealed(ctx, env, reqs); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkPublished(ctx, []string{id}, q.publishedAt, b); err != nil {
			t.Fatal(err)
		}
		return env
	}
	dead := seal(ids[:2])
	// Published once, unacknowledged past its re-send time: dead with
	// max_resends 1.
	if got, err := s.MarkDead(ctx, q.publishedAt.Add(time.Minute), 1); err != nil || len(got) != 1 {
		t.Fatalf("mark dead: %+v %v", got, err)
	}
	pub, acked := seal(ids[2:3]), seal(ids[3:])
	if _, err := s.ApplyResults(ctx, queue.ReceivedEnvelope{ID: envelope.NewID(), Channel: dmz.ResultsChannel, Seq: 1},
		&batch.Results{Results: []batch.Result{{RequestID: ids[3], Status: batch.StatusDone}}, Acks: []string{acked.ID}},
		q.publishedAt); err != nil {
		t.Fatal(err)
	}
	q.dead, q.pub, q.acked = dead.ID, pub.ID, acked.ID
	q.deadReqs, q.pubReqs = ids[:2], ids[2:3]
	return q
}

func (q *queueSpool) envelope(t *testing.T, id string) *queue.Envelope {
	t.Helper()
	e, err := q.spool.EnvelopeByID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (q *queueSpool) status(t *testing.T, id string) *queue.Status {
	t.Helper()
	st, err := q.spool.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestQueue runs list, retry, drop and log against a spool the test holds
// open as the running agent would.
func TestQueue(t *testing.T) {
	// $USER does not name the actor: the account ferryctl runs as does.
	t.Setenv("USER", "bob")
	me := operator()
	q := newQueueSpool(t)

	out, _ := mustFerryctl(t, 0, "queue", "list", "--config", q.cfg)
	matches(t, "list", out, `(?m)^ENVELOPE +SEQ +STATE +REQUESTS +ATTEMPTS +PUBLISHED +NEXT RESEND +EXPIRES$`)
	matches(t, "list", out, `(?m)^`+q.dead+` +1 +dead +2 +1 +`+q.publishedAt.UTC().Format(time.RFC3339)+` +- +\S+$`)
	matches(t, "list", out, `(?m)^`+q.pub+` +2 +published +1 +1 +\S+ +`+q.publishedAt.Add(time.Minute).UTC().Format(time.RFC3339)+` +\S+$`)
	if strings.Contains(out, q.acked) {
		t.Errorf("list shows the acknowledged envelope by default:\n%s", out)
	}
	matches(t, "list", out, `(?m)^requests: 0 queued, 3 sent, 0 held, 1 done, 0 rejected, 0 failed, 0 expired$`)

	out, _ = mustFerryctl(t, 0, "queue", "list", "--config", q.cfg, "--state", "dead", "--json")
	var list queueListJSON
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	if len(list.Envelopes) != 1 || list.Envelopes[0].ID != q.dead || list.Envelopes[0].Attempts != 1 ||
		list.Envelopes[0].NextResend != nil || list.Envelopes[0].Published == nil || list.Requests[batch.StatusSent] != 3 {
		t.Fatalf("list --state dead --json: %s", out)
	}
	out, _ = mustFerryctl(t, 0, "queue", "list", "--config", q.cfg, "--state", "all")
	matches(t, "list --state all", out, `(?m)^`+q.acked+` +3 +acked +1 +1 `)
	_, errOut := mustFerryctl(t, 2, "queue", "list", "--config", q.cfg, "--state", "lost")
	matches(t, "bad state", errOut, `unknown --state "lost"`)

	// Refusals, and nothing recorded for them.
	_, errOut = mustFerryctl(t, 1, "queue", "retry", "--config", q.cfg, q.acked)
	matches(t, "retry acked", errOut, `(?m)^ferryctl: error: retry envelope `+q.acked+`: it is acked, .*\nhint: `)
	_, errOut = mustFerryctl(t, 1, "queue", "drop", "--config", q.cfg, "--reason", "x", q.acked)
	matches(t, "drop acked", errOut, `drop envelope `+q.acked+`: it is acked`)
	_, errOut = mustFerryctl(t, 1, "queue", "retry", "--config", q.cfg, strings.Repeat("e", 32))
	matches(t, "retry unknown", errOut, `no such envelope`)
	mustFerryctl(t, 2, "queue", "drop", "--config", q.cfg, q.pub)
	mustFerryctl(t, 2, "queue", "retry", "--config", q.cfg)
	mustFerryctl(t, 2, "queue", "retry", "--config", q.cfg, "--all-dead", q.dead)
	mustFerryctl(t, 2, "queue", "retry", "--config", q.cfg, "not-an-id")
	out, _ = mustFerryctl(t, 0, "queue", "log", "--config", q.cfg)
	matches(t, "empty log", out, `^no retry or drop recorded\n$`)

	// Retry the dead letter; it is due at once with no attempts, and its
	// requests are still sent.
	before := time.Now()
	out, _ = mustFerryctl(t, 0, "queue", "retry", "--config", q.cfg, "--actor", "alice", q.dead)
	matches(t, "retry", out, `(?m)^retry `+q.dead+` \(2 requests\): due for publication now$`)
	if e := q.envelope(t, q.dead); e.State != queue.EnvPublished || e.Attempts != 0 || e.ResendAt.Before(before.Truncate(time.Millisecond)) {
		t.Fatalf("retried envelope %+v", e)
	}
	if st := q.status(t, q.deadReqs[0]); st.Status != batch.StatusSent {
		t.Fatalf("request of the retried envelope: %s", st.Status)
	}
	out, _ = mustFerryctl(t, 0, "queue", "retry", "--config", q.cfg, "--all-dead")
	matches(t, "retry --all-dead", out, `^no dead request envelope\n$`)

	// Drop the published one, as $USER.
	out, _ = mustFerryctl(t, 0, "queue", "drop", "--config", q.cfg, "--reason", "intranet restored from backup; ticket 7", q.pub)
	matches(t, "drop", out, `(?m)^drop `+q.pub+`: no longer sent; the agent asks the intranet about its 1 unanswered requests$`)
	// Not final: the intranet may have applied it, and says so when asked.
	st := q.status(t, q.pubReqs[0])
	if st.Status != batch.StatusSent || st.Reason != "" {
		t.Fatalf("request of the dropped envelope %+v", st)
	}
	out, _ = mustFerryctl(t, 0, "queue", "list", "--config", q.cfg)
	matches(t, "list after the drop", out, `(?m)^1 queued or sent requests are orphaned \(their envelope expired or was dropped\)`)
	out, _ = mustFerryctl(t, 0, "queue", "list", "--config", q.cfg, "--json")
	var listed queueListJSON
	if err := json.Unmarshal([]byte(out), &listed); err != nil || listed.Orphaned != 1 {
		t.Fatalf("list --json after the drop: %v\n%s", err, out)
	}
	if e := q.envelope(t, q.pub); e.State != queue.EnvDropped {
		t.Fatalf("dropped envelope is %s", e.State)
	}
	_, errOut = mustFerryctl(t, 1, "queue", "drop", "--config", q.cfg, "--reason", "again", q.pub)
	matches(t, "drop twice", errOut, `it is dropped`)

	out, _ = mustFerryctl(t, 0, "queue", "log", "--config", q.cfg)
	matches(t, "log", out, `(?m)^TIME +ACTOR +ACTION +ENVELOPE +REQUESTS +REASON$`)
	matches(t, "log", out, `(?m)^\S+ +alice \(by [^)]+\) +retry +`+q.dead+` +2 +-$`)
	matches(t, "log", out, `(?m)^\S+ +`+regexp.QuoteMeta(me)+` +drop +`+q.pub+` +1 +"intranet restored from backup; ticket 7"$`)
	out, _ = mustFerryctl(t, 0, "queue", "log", "--config", q.cfg, "--json", "--limit", "1")
	var actions []queueActionJSON
	if err := json.Unmarshal([]byte(out), &actions); err != nil || len(actions) != 1 || actions[0].Action != queue.ActionDrop ||
		actions[0].Actor != me || me == "bob" || actions[0].Envelope != q.pub || actions[0].Requests != 1 {
		t.Fatalf("log --json --limit 1: %v\n%s", err, out)
	}
}

// TestQueue_WaitsForTheAgent holds the spool's write lock, as the agent
// does while it commits, and checks that retry waits for it (busy
// timeout) instead of failing with "database is locked".
func TestQueue_WaitsForTheAgent(t *testing.T) {
	q := newQueueSpool(t)
	ctx := context.Background()
	db, err := sqlitedb.Open(ctx, q.path, sqlitedb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil) // BEGIN IMMEDIATE: the write lock
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE channels SET next_seq = next_seq`); err != nil {
		t.Fatal(err)
	}
	const hold = 500 * time.Millisecond
	released := make(chan error, 1)
	go func() {
		time.Sleep(hold)
		released <- tx.Commit()
	}()
	start := time.Now()
	out, _ := mustFerryctl(t, 0, "queue", "retry", "--config", q.cfg, "--actor", "alice", q.dead)
	if waited := time.Since(start); waited < hold-50*time.Millisecond {
		t.Fatalf("retry done in %s while the write lock was held for %s", waited, hold)
	}
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	matches(t, "retry", out, `due for publication now`)
	if e := q.envelope(t, q.dead); e.State != queue.EnvPublished {
		t.Fatalf("retried envelope is %s", e.State)
	}
}

// TestQueue_NoSpool refuses a deployment whose agent never ran, and
// creates no spool.
func TestQueue_NoSpool(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dep")
	mustFerryctl(t, 0, "init", dir)
	cfg := filepath.Join(dir, "dmz", "dmz.yaml")
	_, errOut := mustFerryctl(t, 1, "queue", "list", "--config", cfg)
	matches(t, "no spool", errOut, `spool .* does not exist\nhint: the DMZ agent creates it`)
	_, errOut = mustFerryctl(t, 1, "queue", "list", "--config", cfg)
	matches(t, "no spool, twice", errOut, `does not exist`)
	mustFerryctl(t, 2, "queue", "list")
}

// TestQueue_Show prints one envelope and its requests' statuses, never
// their content.
func TestQueue_Show(t *testing.T) {
	q := newQueueSpool(t)
	out, _ := mustFerryctl(t, 0, "queue", "show", "--config", q.cfg, q.dead)
	matches(t, "show", out, `(?m)^envelope +`+q.dead+`$`)
	matches(t, "show", out, `(?m)^state +dead$`)
	matches(t, "show", out, `(?m)^requests +2$`)
	for _, id := range q.deadReqs {
		matches(t, "show", out, `(?m)^  `+id+` +\S+ +\S+ +sent +-$`)
	}
	out, _ = mustFerryctl(t, 0, "queue", "show", "--config", q.cfg, "--json", q.dead)
	var got queueShowJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.State != queue.EnvDead || len(got.RequestList) != 2 {
		t.Fatalf("show --json: %v\n%s", err, out)
	}
	_, errOut := mustFerryctl(t, 1, "queue", "show", "--config", q.cfg, strings.Repeat("0", 32))
	matches(t, "unknown envelope", errOut, `not found`)
	mustFerryctl(t, 2, "queue", "show", "--config", q.cfg)
}
