package queue

import (
	"crypto/rand"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
)

// queryEnvelope stores an envelope asking about query, as the batcher
// would, created at created and expiring an hour later.
func queryEnvelope(t *testing.T, s *Spool, query []string, created time.Time) *Envelope {
	t.Helper()
	ctx := ctxT(t)
	next, _, err := s.Channel(ctx, "requests")
	if err != nil {
		t.Fatal(err)
	}
	id, _ := batch.NewID(rand.Reader)
	env := &Envelope{ID: id, Channel: "requests", Seq: next, Name: id + ".fxe", Data: []byte("query " + id),
		Created: created, Expires: created.Add(time.Hour)}
	env.HeaderHash[0] = byte(next)
	if err := s.StoreQuery(ctx, env, query, created); err != nil {
		t.Fatal(err)
	}
	return env
}

// orphanedAt returns when request id was orphaned (0 never).
func orphanedAt(t *testing.T, s *Spool, id string) int64 {
	t.Helper()
	var at int64
	if err := s.r.QueryRow(`SELECT orphaned FROM requests WHERE id = ?`, id).Scan(&at); err != nil {
		t.Fatal(err)
	}
	return at
}

// asked returns when request id was last asked about and by which envelope.
func asked(t *testing.T, s *Spool, id string) (int64, string) {
	t.Helper()
	var (
		at  int64
		env *string
	)
	if err := s.r.QueryRow(`SELECT queried, query_envelope FROM requests WHERE id = ?`, id).Scan(&at, &env); err != nil {
		t.Fatal(err)
	}
	if env == nil {
		return at, ""
	}
	return at, *env
}

// TestSpool_AskDue follows held requests through asking again: due once
// held longer than the age, oldest first and within the limit, not while
// the envelope that asked is open, again once it is acknowledged or
// expired and the age has passed since the asking, and never once final.
func TestSpool_AskDue(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	in := runIntake(t, s, IntakeConfig{})
	ctx := ctxT(t)
	ids := submitN(t, in, 4)
	a, b, c, d := ids[0], ids[1], ids[2], ids[3]
	env := sealNext(t, s, 10)
	t0 := time.UnixMilli(time.Now().UnixMilli())
	if err := s.MarkPublished(ctx, []string{env.ID}, t0, testBackoff); err != nil {
		t.Fatal(err)
	}
	seq := uint64(0)
	apply := func(now time.Time, res *batch.Results) *Applied {
		t.Helper()
		seq++
		got, err := s.ApplyResults(ctx, ReceivedEnvelope{ID: strings.Repeat(fmt.Sprintf("%x", seq%16), 32),
			Channel: "results", Seq: seq}, res, now)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	due := func(step string, before time.Time, limit int, want ...string) {
		t.Helper()
		got, err := s.AskDue(ctx, before, limit)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s: due %v, want %v (a %s b %s c %s)", step, got, want, a, b, c)
		}
	}
	// b is held a second after a, c with a and decided at once; d is
	// failed for want of a result when the envelope is acknowledged.
	apply(t0, &batch.Results{Results: []batch.Result{heldResult(a), heldResult(c)}})
	if got := apply(t0.Add(time.Second), &batch.Results{Acks: []string{env.ID}, Results: []batch.Result{heldResult(b)}}); !slices.Equal(got.NoResult, []string{d}) {
		t.Fatalf("ack: %+v", got)
	}
	apply(t0.Add(2*time.Second), &batch.Results{Results: []batch.Result{{RequestID: c, Status: batch.StatusRejected,
		Reason: "approval_denied"}}})

	due("not yet", t0, 10)
	due("a only", t0.Add(time.Millisecond), 10, a)
	due("both", t0.Add(time.Hour), 10, a, b)
	due("limit", t0.Add(time.Hour), 1, a)

	// Asking about a (and about the final c and d, which only a stale
	// caller would do) records the asking for a alone.
	t1 := t0.Add(10 * time.Second)
	q1 := queryEnvelope(t, s, []string{a, c, d}, t1)
	if at, by := asked(t, s, a); at != t1.UnixMilli() || by != q1.ID {
		t.Fatalf("a asked at %d by %q, want %d by %s", at, by, t1.UnixMilli(), q1.ID)
	}
	for _, id := range []string{b, c, d} {
		if at, by := asked(t, s, id); at != 0 || by != "" {
			t.Fatalf("%s asked at %d by %q, want never", id, at, by)
		}
	}
	if e, err := s.EnvelopeByID(ctx, q1.ID); err != nil || e.Requests != 0 || e.State != EnvSealed {
		t.Fatalf("query envelope %+v %v", e, err)
	}
	if next, _, err := s.Channel(ctx, "requests"); err != nil || next != q1.Seq+1 {
		t.Fatalf("channel at %d (%v) after the query envelope %d", next, err, q1.Seq)
	}
	// While q1 is open, a is not due: publishing q1 again asks again.
	due("asked, open", t1.Add(time.Hour), 10, b)
	if err := s.MarkPublished(ctx, []string{q1.ID}, t1, testBackoff); err != nil {
		t.Fatal(err)
	}
	due("asked, published", t1.Add(time.Hour), 10, b)

	// The intranet acknowledges q1 without an answer: a is still held,
	// and due again once the age has passed since t1. b waited longer.
	got := apply(t1.Add(time.Second), &batch.Results{Acks: []string{q1.ID}})
	if got.Acked != 1 || len(got.Final) != 0 || len(got.NoResult) != 0 {
		t.Fatalf("ack of a query envelope: %+v", got)
	}
	due("acked, too soon", t1, 10, b)
	due("acked", t1.Add(time.Millisecond), 10, b, a)

	// A query envelope with the wrong sequence number stores nothing and
	// records no asking.
	bad := &Envelope{ID: strings.Repeat("e", 32), Channel: "requests", Seq: q1.Seq, Name: "bad.fxe", Data: []byte("x"),
		Created: t1.Add(time.Minute), Expires: t1.Add(time.Hour)}
	if err := s.StoreQuery(ctx, bad, []string{b}, bad.Created); err == nil || !strings.Contains(err.Error(), ErrSeqConflict.Error()) {
		t.Fatalf("query envelope on a used sequence number: %v", err)
	}
	if at, _ := asked(t, s, b); at != 0 {
		t.Fatalf("b asked at %d by a refused envelope", at)
	}

	// q2 asks about both and expires unacknowledged: no request changes,
	// and both are due again.
	t2 := t1.Add(time.Minute)
	q2 := queryEnvelope(t, s, []string{b, a}, t2)
	due("asked both", t2.Add(30*time.Minute), 10)
	expired, err := s.Expire(ctx, q2.Expires)
	if err != nil || len(expired) != 0 {
		t.Fatalf("expiry of a query envelope: %v %v, want no request", expired, err)
	}
	if e, err := s.EnvelopeByID(ctx, q2.ID); err != nil || e.State != EnvExpired {
		t.Fatalf("query envelope after expiry: %+v %v", e, err)
	}
	for _, id := range []string{a, b} {
		if st, err := s.Get(ctx, id); err != nil || st.Status != batch.StatusHeld {
			t.Fatalf("%s after its query expired: %+v %v", id, st, err)
		}
	}
	due("expired", q2.Expires, 10, a, b) // same asking time: rid order

	// The answer to q3 is a's final result, in the envelope acking q3: a
	// is final and never due again.
	q3 := queryEnvelope(t, s, []string{a}, q2.Expires)
	got = apply(q2.Expires.Add(time.Second), &batch.Results{Acks: []string{q3.ID}, Results: []batch.Result{
		{RequestID: a, Status: batch.StatusDone, Rows: []map[string]any{}, RowsAffected: 1}}})
	if !slices.Equal(got.Final, []string{a}) || got.Acked != 1 {
		t.Fatalf("answer to a query: %+v", got)
	}
	due("a final", q2.Expires.Add(24*time.Hour), 10, b)
}

// TestSpool_AskDueMaxQuery holds one request more than batch.MaxQuery
// and checks that one asking takes batch.MaxQuery of them, the longest
// held first, and the next takes the rest.
func TestSpool_AskDueMaxQuery(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	ctx := ctxT(t)
	n := batch.MaxQuery + 1
	// Request i became held at millisecond n-i: the last inserted waited
	// longest.
	if _, err := s.w.ExecContext(ctx, `WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < ?)
		INSERT INTO requests (id, client, body_hash, operation, received, status, updated)
		SELECT printf('%032x', i), 'portal', X'00', 'licence.renew', 1, 'held', ? - i FROM k`, n, n); err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(int64(n) + 1)
	first, err := s.AskDue(ctx, now, batch.MaxQuery)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != batch.MaxQuery || first[0] != fmt.Sprintf("%032x", n-1) || slices.Contains(first, fmt.Sprintf("%032x", 0)) {
		t.Fatalf("first asking: %d ids from %s, want %d from the longest held", len(first), first[0], batch.MaxQuery)
	}
	queryEnvelope(t, s, first, now)
	rest, err := s.AskDue(ctx, now.Add(time.Hour), batch.MaxQuery)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rest, []string{fmt.Sprintf("%032x", 0)}) {
		t.Fatalf("second asking: %v, want the one left", rest)
	}
}

// withAskIndex returns the index list of a spool's requests table
// (schemaOf) after migrations 0010 (requests_held replaced by
// requests_ask) and 0011 (requests_callback).
func withAskIndex(indexes []string) []string {
	out := slices.DeleteFunc(slices.Clone(indexes), func(s string) bool { return strings.HasPrefix(s, "requests_held:") })
	out = append(out, "requests_ask: CREATE INDEX requests_ask ON requests (rid) WHERE "+askable,
		"requests_callback: CREATE INDEX requests_callback ON requests (callback_due) WHERE callback_due IS NOT NULL")
	slices.Sort(out)
	return out
}

// latestVersion is the schema version the embedded migrations reach.
func latestVersion(t *testing.T) int {
	t.Helper()
	entries, err := fs.ReadDir(migrations, "sql")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// TestSpool_MigrateFrom0005 opens a spool left at schema version 5 with a
// held request, a final one and an open one, and checks that 0006 keeps
// every row, adds the asking columns (never asked) and the partial index,
// and that the held request is due at once.
func TestSpool_MigrateFrom0005(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	ctx := ctxT(t)
	db := openOldSpool(t, path, 5)
	const env = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	if _, err := db.ExecContext(ctx, `INSERT INTO envelopes
		(id, channel, seq, header_hash, name, data, requests, state, created, expires, published) VALUES
		(?, 'requests', 1, zeroblob(32), 'a.fxe', X'', 3, 'acked', 1, 3600001, 1)`, env); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO requests
		(id, client, idem_key, body_hash, operation, params, received, status, envelope_id, result,
		 rows_affected, reason, message, updated, subject, retry_after) VALUES
		('00000000000000000000000000000001', 'portal', 'k1', X'01', 'licence.renew', NULL, 1, 'held', ?, NULL, 0, 'approval_required', 'waits', 2, '', 0),
		('00000000000000000000000000000002', 'portal', NULL, X'02', 'violations.query', NULL, 3, 'done', ?, CAST('[]' AS BLOB), 0, '', '', 4, '', 0),
		('00000000000000000000000000000003', 'portal', 'k3', X'03', 'exam.slots', CAST('{}' AS BLOB), 5, 'queued', NULL, NULL, 0, '', '', 6, '', 0)`,
		env, env); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `SELECT queried FROM requests`); err == nil {
		t.Fatal("version 5 has a queried column")
	}
	wantRows, wantIndexes := dumpRequests(t, db), schemaOf(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s := openSpool(t, path)
	if v, want := schemaVersion(t, s), latestVersion(t); v != want {
		t.Fatalf("schema version %d, want %d", v, want)
	}
	if got := dumpRequests(t, s.r); !slices.Equal(got, wantRows) {
		t.Fatalf("rows after migration:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantRows, "\n"))
	}
	wantIndexes = withAskIndex(wantIndexes)
	if got := schemaOf(t, s.r); !slices.Equal(got, wantIndexes) {
		t.Fatalf("indexes after migration:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantIndexes, "\n"))
	}
	for _, id := range []string{"00000000000000000000000000000001", "00000000000000000000000000000002", "00000000000000000000000000000003"} {
		if at, by := asked(t, s, id); at != 0 || by != "" {
			t.Fatalf("%s asked at %d by %q after migration, want never", id, at, by)
		}
	}
	due, err := s.AskDue(ctx, time.UnixMilli(3), batch.MaxQuery)
	if err != nil || !slices.Equal(due, []string{"00000000000000000000000000000001"}) {
		t.Fatalf("due after migration: %v %v", due, err)
	}
}
