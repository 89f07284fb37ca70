package queue

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
)

// backlogBackoff is the re-send schedule of the backlog tests.
var backlogBackoff = Backoff{After: time.Minute, Max: time.Hour}

// naiveBacklog counts the backlog by scanning, as the definition says.
func naiveBacklog(t *testing.T, s *Spool) Backlog {
	t.Helper()
	var b Backlog
	if err := s.r.QueryRow(`SELECT count(*) FROM requests WHERE status IN ('queued', 'sent') AND orphaned = 0`).Scan(&b.Requests); err != nil {
		t.Fatal(err)
	}
	if err := s.r.QueryRow(`SELECT count(*) FROM envelopes WHERE state IN ('sealed', 'published')`).Scan(&b.Unacked); err != nil {
		t.Fatal(err)
	}
	return b
}

// naiveLastRow returns the highest row number of the requests table.
func naiveLastRow(t *testing.T, s *Spool) int64 {
	t.Helper()
	var last int64
	if err := s.r.QueryRow(`SELECT coalesce(max(rid), 0) FROM requests`).Scan(&last); err != nil {
		t.Fatal(err)
	}
	return last
}

// envelopeRequests returns the ids of the requests env carries.
func envelopeRequests(t *testing.T, s *Spool, env *Envelope) []string {
	t.Helper()
	rows, err := s.r.Query(`SELECT id FROM requests WHERE envelope_id = ? ORDER BY rid`, env.ID)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := scanStrings(rows)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestSpool_Backlog(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	in := runIntake(t, s, IntakeConfig{})
	ctx := ctxT(t)
	now := time.Now()
	check := func(step string, want Backlog) {
		t.Helper()
		got, err := s.Backlog(ctx)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if last := naiveLastRow(t, s); got.LastRow != last {
			t.Fatalf("%s: LastRow %d, want %d", step, got.LastRow, last)
		}
		got.LastRow = 0
		if got != want {
			t.Fatalf("%s: Backlog %+v, want %+v", step, got, want)
		}
		if naive := naiveBacklog(t, s); got != naive {
			t.Fatalf("%s: Backlog %+v, but counting every row gives %+v", step, got, naive)
		}
	}
	publish := func(env *Envelope) {
		t.Helper()
		if err := s.MarkPublished(ctx, []string{env.ID}, now, backlogBackoff); err != nil {
			t.Fatal(err)
		}
	}
	var seq uint64
	apply := func(res *batch.Results) {
		t.Helper()
		id, err := batch.NewID(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		seq++
		if _, err := s.ApplyResults(ctx, ReceivedEnvelope{ID: id, Channel: "results", Seq: seq}, res, now); err != nil {
			t.Fatal(err)
		}
	}

	check("empty", Backlog{})
	for i := range 10 {
		if _, err := in.Submit(ctx, Request{Client: "c", Operation: "op", Params: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}); err != nil {
			t.Fatal(err)
		}
	}
	check("10 queued", Backlog{Requests: 10})
	// A request stored after a count has a row above its LastRow.
	before, err := s.Backlog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	acc, err := in.Submit(ctx, Request{Client: "c", Operation: "op", Params: json.RawMessage(`{"i":10}`), IdempotencyKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if acc.Row <= before.LastRow {
		t.Fatalf("row %d of a request stored after a count that saw rows up to %d", acc.Row, before.LastRow)
	}
	after, err := s.Backlog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.LastRow != acc.Row {
		t.Fatalf("a count after it saw rows up to %d, want %d", after.LastRow, acc.Row)
	}
	// A repeat stores nothing and has no row; Existing finds it too.
	again, err := in.Submit(ctx, Request{Client: "c", Operation: "op", Params: json.RawMessage(`{"i":10}`), IdempotencyKey: "k"})
	if err != nil || !again.Existing || again.Row != 0 || again.ID != acc.ID {
		t.Fatalf("repeat: %+v %v", again, err)
	}
	check("11 queued", Backlog{Requests: 11})

	e1 := sealNext(t, s, 3) // stays sealed
	check("one envelope sealed", Backlog{Requests: 11, Unacked: 1})

	e2 := sealNext(t, s, 3)
	publish(e2)
	check("one published", Backlog{Requests: 11, Unacked: 2})

	e3 := sealNext(t, s, 2)
	publish(e3)
	r3 := envelopeRequests(t, s, e3)
	// A result before the acknowledgement: one done, one held; e3 stays
	// open.
	apply(&batch.Results{Results: []batch.Result{
		{RequestID: r3[0], Status: batch.StatusDone},
		heldResult(r3[1]),
	}})
	check("done and held in an open envelope", Backlog{Requests: 9, Unacked: 3})

	// e2 acknowledged with one result: the other two fail with no_result.
	r2 := envelopeRequests(t, s, e2)
	apply(&batch.Results{Results: []batch.Result{{RequestID: r2[0], Status: batch.StatusRejected, Reason: "bad_value"}},
		Acks: []string{e2.ID}})
	check("acknowledged", Backlog{Requests: 6, Unacked: 2})

	// e4 carries the last three and goes dead: its requests are still
	// waiting (counted), the envelope is no longer sent (not counted).
	e4 := sealNext(t, s, 10)
	publish(e4)
	check("four envelopes", Backlog{Requests: 6, Unacked: 3})
	dead, err := s.MarkDead(ctx, now.Add(2*time.Minute), 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 2 { // e3 and e4
		t.Fatalf("%d dead envelopes, want 2", len(dead))
	}
	check("dead", Backlog{Requests: 6, Unacked: 1})

	// Everything expires: the requests of e1 and e4 are orphaned, to be
	// asked about, and no longer backlog; the held one stays held and is
	// not backlog.
	if _, err := s.Expire(ctx, now.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	check("expired", Backlog{})
	_ = e1
}

// queryPlan returns the steps of SQLite's plan for query with args.
func queryPlan(t *testing.T, s *Spool, query string, args ...any) []string {
	t.Helper()
	rows, err := s.r.Query(`EXPLAIN QUERY PLAN `+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan
}

// TestSpool_BacklogUsesIndexes checks that counting the backlog reads
// indexes, never a whole table: the spool keeps every request and
// envelope, so a scan would grow with its age.
func TestSpool_BacklogUsesIndexes(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	plan := queryPlan(t, s, backlogQuery)
	for _, step := range plan {
		if strings.HasPrefix(step, "SCAN ") && !strings.Contains(step, " INDEX ") && step != "SCAN CONSTANT ROW" {
			t.Errorf("the backlog count scans a table: %q\nplan:\n%s", step, strings.Join(plan, "\n"))
		}
	}
	t.Logf("plan:\n%s", strings.Join(plan, "\n"))
}

// BenchmarkSpool_Backlog measures one count of the backlog in a spool of
// 51,200 requests of which 10,240 wait: 2,048 unsealed and 8,192 in 32
// open envelopes of 256 (the other 160 envelopes are acknowledged).
func BenchmarkSpool_Backlog(b *testing.B) {
	s, err := Open(b.Context(), filepath.Join(b.TempDir(), "spool.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const total, sealedWaiting, unsealed = 200 * 256, 32 * 256, 2048
	tx, err := s.w.Begin()
	if err != nil {
		b.Fatal(err)
	}
	envOf := func(i int) (string, string) {
		state := "acked"
		if i >= total-unsealed-sealedWaiting {
			state = "published"
		}
		return fmt.Sprintf("%032x", i/256), state
	}
	for i := range total - unsealed {
		id, state := envOf(i)
		if i%256 == 0 {
			resend := any(nil)
			if state == "published" {
				resend = int64(1)
			}
			if _, err := tx.Exec(`INSERT INTO envelopes (id, channel, seq, header_hash, name, data, requests, state,
				created, expires, published, attempts, resend_at) VALUES (?, 'requests', ?, X'00', ?, X'', 256, ?, 1, 2, 1, 1, ?)`,
				id, i/256+1, id+".fxe", state, resend); err != nil {
				b.Fatal(err)
			}
		}
	}
	for i := range total {
		status, env := "done", any(nil)
		if i < total-unsealed {
			id, state := envOf(i)
			env = id
			if state == "published" {
				status = "sent"
			}
		} else {
			status = "queued"
		}
		if _, err := tx.Exec(`INSERT INTO requests (id, client, body_hash, operation, params, received, status, envelope_id, updated)
			VALUES (?, 'c', X'00', 'op', ?, 1, ?, ?, 1)`, fmt.Sprintf("%032x", i), []byte(`{"plate":"京A12345"}`), status, env); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	got, err := s.Backlog(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	if got.Requests != sealedWaiting+unsealed {
		b.Fatalf("backlog %+v, want %d requests", got, sealedWaiting+unsealed)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Backlog(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
}
