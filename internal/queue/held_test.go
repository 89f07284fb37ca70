package queue

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/sqlitedb"
)

// reasonApprovalRequired is policy.ReasonApprovalRequired, spelled out: the
// spool stores whatever reason a held result carries.
const reasonApprovalRequired = "approval_required"

// submitN submits n requests with subjects and returns their ids.
func submitN(t *testing.T, in *Intake, n int) []string {
	t.Helper()
	ctx := ctxT(t)
	var ids []string
	for i := range n {
		acc, err := in.Submit(ctx, Request{Client: "c", Operation: "exam.book",
			Params: json.RawMessage(fmt.Sprintf(`{"slot_id":%d}`, i+1)), Subject: subjectA})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, acc.ID)
	}
	return ids
}

// heldResult is the result the intranet sends for a write it holds.
func heldResult(id string) batch.Result {
	return batch.Result{RequestID: id, Status: batch.StatusHeld, Reason: reasonApprovalRequired,
		Message: "operation exam.book waits for an admin's approval"}
}

// personal returns the params and subject the spool still holds for id.
func personal(t *testing.T, s *Spool, id string) (params []byte, subject string) {
	t.Helper()
	if err := s.r.QueryRow(`SELECT params, subject FROM requests WHERE id = ?`, id).Scan(&params, &subject); err != nil {
		t.Fatal(err)
	}
	return params, subject
}

func TestSpool_ApplyResultsHeld(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	in := runIntake(t, s, IntakeConfig{})
	ctx := ctxT(t)
	ids := submitN(t, in, 4)
	env := sealNext(t, s, 10)
	if err := s.MarkPublished(ctx, []string{env.ID}, time.Now(), testBackoff); err != nil {
		t.Fatal(err)
	}
	unknown := "0123456789abcdef0123456789abcdef"
	apply := func(seq uint64, res *batch.Results) *Applied {
		t.Helper()
		id := strings.Repeat(fmt.Sprintf("%x", seq), 32)
		got, err := s.ApplyResults(ctx, ReceivedEnvelope{ID: id, Channel: "results", Seq: seq}, res, time.Now())
		if err != nil {
			t.Fatalf("envelope %d: %v", seq, err)
		}
		return got
	}
	check := func(step string, got *Applied, final, held, noResult, unk []string, stale int) {
		t.Helper()
		if !slices.Equal(got.Final, final) || !slices.Equal(got.Held, held) || !slices.Equal(got.NoResult, noResult) ||
			!slices.Equal(got.Unknown, unk) || got.Stale != stale {
			t.Fatalf("%s: applied %+v, want final %v held %v no_result %v unknown %v stale %d",
				step, got, final, held, noResult, unk, stale)
		}
	}
	status := func(id, want, reason string) *Status {
		t.Helper()
		st, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status != want || st.Reason != reason {
			t.Fatalf("request %s: %s/%s, want %s/%s", id, st.Status, st.Reason, want, reason)
		}
		return st
	}

	// 1. Two writes held, one read done, no ack yet (the intranet may split
	// one envelope's results over several).
	got := apply(1, &batch.Results{Results: []batch.Result{
		heldResult(ids[0]), heldResult(ids[1]), {RequestID: ids[2], Status: batch.StatusDone}}})
	check("held", got, []string{ids[2]}, []string{ids[0], ids[1]}, nil, nil, 0)
	st := status(ids[0], batch.StatusHeld, reasonApprovalRequired)
	if st.Message == "" || st.Result != nil || st.RowsAffected != 0 || st.EnvelopeID != env.ID || Final(st.Status) {
		t.Fatalf("held request %+v", st)
	}
	// The intranet holds the request now: the spool drops its personal data.
	if params, subject := personal(t, s, ids[0]); params != nil || subject != "" {
		t.Fatalf("held request keeps params %q subject %q", params, subject)
	}
	if params, subject := personal(t, s, ids[3]); params == nil || subject != subjectA {
		t.Fatalf("open request lost params %q subject %q", params, subject)
	}

	// 2. The ack comes with the final result of ids[0]; the held ids[1]
	// is not failed for want of a result, the unanswered ids[3] is. A
	// second held result for the held ids[1] is stale.
	got = apply(2, &batch.Results{Acks: []string{env.ID}, Results: []batch.Result{
		{RequestID: ids[0], Status: batch.StatusDone, Rows: []map[string]any{}, RowsAffected: 1}, heldResult(ids[1])}})
	check("ack", got, []string{ids[0], ids[3]}, nil, []string{ids[3]}, nil, 1)
	if got.Acked != 1 {
		t.Fatalf("ack: %d envelopes acked, want 1", got.Acked)
	}
	if st := status(ids[0], batch.StatusDone, ""); st.RowsAffected != 1 || string(st.Result) != "[]" {
		t.Fatalf("approved request %+v", st)
	}
	status(ids[1], batch.StatusHeld, reasonApprovalRequired)
	status(ids[3], batch.StatusFailed, ReasonNoResult)

	// 3. An envelope that acknowledges nothing carries the denial of
	// ids[1]; a held result for the final ids[0] (a late copy) is stale,
	// and one for a request the spool does not hold is unknown.
	got = apply(3, &batch.Results{Acks: []string{}, Results: []batch.Result{
		{RequestID: ids[1], Status: batch.StatusRejected, Reason: "approval_denied", Message: "denied by an admin"},
		heldResult(ids[0]), heldResult(unknown)}})
	check("final without ack", got, []string{ids[1]}, nil, nil, []string{unknown}, 1)
	status(ids[1], batch.StatusRejected, "approval_denied")
	if st := status(ids[0], batch.StatusDone, ""); st.RowsAffected != 1 {
		t.Fatalf("done request changed by a late held result: %+v", st)
	}
	// 4. An expiry of an approval, for a request held in the envelope
	// that acked it.
	more := submitN(t, in, 1)
	env2 := sealNext(t, s, 10)
	got = apply(4, &batch.Results{Acks: []string{env2.ID}, Results: []batch.Result{heldResult(more[0])}})
	// The envelope was never marked published: held applies to queued too.
	check("held while queued", got, nil, []string{more[0]}, nil, nil, 0)
	got = apply(5, &batch.Results{Results: []batch.Result{
		{RequestID: more[0], Status: batch.StatusRejected, Reason: "approval_expired"}}})
	check("approval expired", got, []string{more[0]}, nil, nil, nil, 0)
	status(more[0], batch.StatusRejected, "approval_expired")
}

// TestSpool_ExpireSkipsHeld checks that a held request outlives its
// envelope's expiry, acknowledged or not, and still takes its final result.
func TestSpool_ExpireSkipsHeld(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	in := runIntake(t, s, IntakeConfig{})
	ctx := ctxT(t)
	a := submitN(t, in, 1)[0]
	envA := sealNext(t, s, 10)
	b := submitN(t, in, 1)[0]
	envB := sealNext(t, s, 10)
	c := submitN(t, in, 1)[0]
	envC := sealNext(t, s, 10)
	if err := s.MarkPublished(ctx, []string{envA.ID, envB.ID, envC.ID}, time.Now(), testBackoff); err != nil {
		t.Fatal(err)
	}
	// a is held in the envelope that acks its envelope; b is held, but
	// its envelope's ack never came; c has no result.
	if _, err := s.ApplyResults(ctx, ReceivedEnvelope{ID: strings.Repeat("1", 32), Channel: "results", Seq: 1},
		&batch.Results{Acks: []string{envA.ID}, Results: []batch.Result{heldResult(a), heldResult(b)}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	late := envC.Expires.Add(30 * 24 * time.Hour)
	expired, err := s.Expire(ctx, late)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(expired, []string{c}) {
		t.Fatalf("expired %v, want only %s", expired, c)
	}
	for _, id := range []string{a, b} {
		if st, err := s.Get(ctx, id); err != nil || st.Status != batch.StatusHeld {
			t.Fatalf("held request %s after expiry: %+v %v", id, st, err)
		}
	}
	if e, err := s.EnvelopeByID(ctx, envB.ID); err != nil || e.State != EnvExpired {
		t.Fatalf("unacked envelope of a held request: %+v %v, want expired", e, err)
	}
	// The final results still apply, in an envelope with no acks.
	got, err := s.ApplyResults(ctx, ReceivedEnvelope{ID: strings.Repeat("2", 32), Channel: "results", Seq: 2},
		&batch.Results{Results: []batch.Result{
			{RequestID: a, Status: batch.StatusDone, Rows: []map[string]any{}, RowsAffected: 1},
			{RequestID: b, Status: batch.StatusRejected, Reason: "approval_expired"},
		}}, late)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Final, []string{a, b}) {
		t.Fatalf("final results after expiry: %+v", got)
	}
}

// dumpRequests renders every column of every request, in rid order.
func dumpRequests(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT rid, id, client, quote(idem_key), hex(body_hash), operation, quote(params), received,
		status, quote(envelope_id), quote(result), rows_affected, reason, message, updated, subject, retry_after
		FROM requests ORDER BY rid`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals := make([]any, 17)
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		cols := make([]string, len(vals))
		for i, v := range vals {
			cols[i] = fmt.Sprint(v)
		}
		out = append(out, strings.Join(cols, "|"))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// schemaOf lists the indexes on requests (autoindexes included) with
// their SQL.
func schemaOf(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT name, ifnull(sql, '') FROM sqlite_master
		WHERE type = 'index' AND tbl_name = 'requests' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name, q string
		if err := rows.Scan(&name, &q); err != nil {
			t.Fatal(err)
		}
		out = append(out, name+": "+q)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// openOldSpool creates a spool at path with only the first n migrations,
// as a release that had only those left it, and returns the writer.
func openOldSpool(t *testing.T, path string, n int) *sql.DB {
	t.Helper()
	entries, err := fs.ReadDir(migrations, "sql")
	if err != nil {
		t.Fatal(err)
	}
	old := fstest.MapFS{}
	for _, e := range entries[:n] { // ReadDir sorts by name: NNNN_ order
		data, err := fs.ReadFile(migrations, "sql/"+e.Name())
		if err != nil {
			t.Fatal(err)
		}
		old[e.Name()] = &fstest.MapFile{Data: data}
	}
	db, err := sqlitedb.Open(ctxT(t), path, sqlitedb.Options{ApplicationID: ApplicationID, Component: Component, Migrations: old})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// schemaVersion returns the spool's schema version.
func schemaVersion(t *testing.T, s *Spool) int {
	t.Helper()
	var v int
	if err := s.r.QueryRow(`SELECT version FROM ferry_schema WHERE component = ?`, Component).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSpool_MigrateFrom0004 opens a spool left at schema version 4 (the
// release before held results) with rows in it, and checks that 0005's
// table rebuild keeps every row, every index and the rid counter.
func TestSpool_MigrateFrom0004(t *testing.T) {
	tests := []struct {
		name   string
		delete string // rows removed at version 4, after the inserts
		rows   int    // rows left
	}{
		{"highest rid deleted", `DELETE FROM requests WHERE rid = (SELECT max(rid) FROM requests)`, 4},
		{"every row deleted", `DELETE FROM requests`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "spool.db")
			ctx := ctxT(t)
			db := openOldSpool(t, path, 4)
			const (
				envAcked = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
				envOpen  = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
			)
			now := time.Now().UnixMilli()
			if _, err := db.ExecContext(ctx, `INSERT INTO envelopes
				(id, channel, seq, header_hash, name, data, requests, state, created, expires, published) VALUES
				(?, 'requests', 1, zeroblob(32), 'a.fxe', X'', 3, 'acked', ?, ?, ?),
				(?, 'requests', 2, zeroblob(32), 'b.fxe', X'0102', 1, 'published', ?, ?, ?)`,
				envAcked, now, now+3600e3, now, envOpen, now, now+3600e3, now); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, `INSERT INTO channels (channel, next_seq, prev) VALUES ('requests', 3, zeroblob(32))`); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, `INSERT INTO requests
				(id, client, idem_key, body_hash, operation, params, received, status, envelope_id, result,
				 rows_affected, reason, message, updated, subject, retry_after) VALUES
				('00000000000000000000000000000001', 'portal', 'k1', X'01', 'violations.query', NULL, 1, 'done', ?, CAST('[{"n":1}]' AS BLOB), 0, '', '', 2, '', 0),
				('00000000000000000000000000000002', 'portal', NULL, X'02', 'exam.book', NULL, 3, 'rejected', ?, NULL, 0, 'rate_limited', 'slow down', 4, '', 6),
				('00000000000000000000000000000003', 'kiosk', 'k1', X'03', 'exam.book', NULL, 5, 'done', ?, CAST('[]' AS BLOB), 1, '', '', 6, '', 0),
				('00000000000000000000000000000004', 'portal', 'k2', X'04', 'exam.book', CAST('{"slot_id":1}' AS BLOB), 7, 'sent', ?, NULL, 0, '', '', 8, ?, 0),
				('00000000000000000000000000000005', 'portal', 'k3', X'05', 'exam.slots', CAST('{}' AS BLOB), 9, 'queued', NULL, NULL, 0, '', '', 10, '', 0)`,
				envAcked, envAcked, envAcked, envOpen, subjectA); err != nil {
				t.Fatal(err)
			}
			var oldSeq int64
			if err := db.QueryRow(`SELECT seq FROM sqlite_sequence WHERE name = 'requests'`).Scan(&oldSeq); err != nil || oldSeq != 5 {
				t.Fatalf("version 4 rid counter %d (%v), want 5", oldSeq, err)
			}
			if _, err := db.ExecContext(ctx, tt.delete); err != nil {
				t.Fatal(err)
			}
			// 'held' is what version 4 cannot store.
			if _, err := db.ExecContext(ctx, `UPDATE requests SET status = 'held' WHERE rid = 1`); tt.rows > 0 &&
				(err == nil || !strings.Contains(err.Error(), "CHECK constraint failed")) {
				t.Fatalf("held at version 4: %v, want a CHECK failure", err)
			}
			wantRows, wantIndexes := dumpRequests(t, db), schemaOf(t, db)
			if len(wantRows) != tt.rows {
				t.Fatalf("%d rows at version 4, want %d", len(wantRows), tt.rows)
			}
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
			// Later migrations add their own indexes (0006: requests_held,
			// which 0010 replaces with requests_ask; 0011:
			// requests_callback).
			indexes := slices.DeleteFunc(schemaOf(t, s.r), func(ix string) bool {
				return strings.HasPrefix(ix, "requests_ask:") || strings.HasPrefix(ix, "requests_callback:")
			})
			if !slices.Equal(indexes, wantIndexes) {
				t.Fatalf("indexes after migration:\n%s\nwant:\n%s", strings.Join(indexes, "\n"), strings.Join(wantIndexes, "\n"))
			}
			var seqs []string
			rows, err := s.r.Query(`SELECT name || '=' || seq FROM sqlite_sequence ORDER BY name`)
			if err != nil {
				t.Fatal(err)
			}
			if seqs, err = scanStrings(rows); err != nil || !slices.Equal(seqs, []string{"requests=5"}) {
				t.Fatalf("sqlite_sequence after migration %v (%v), want [requests=5]", seqs, err)
			}
			for _, pragma := range []string{"integrity_check", "foreign_key_check"} {
				rows, err := s.r.Query("PRAGMA " + pragma)
				if err != nil {
					t.Fatal(err)
				}
				out, err := scanStrings(rows)
				if err != nil || (pragma == "integrity_check" && !slices.Equal(out, []string{"ok"})) ||
					(pragma == "foreign_key_check" && len(out) != 0) {
					t.Fatalf("%s: %v %v", pragma, out, err)
				}
			}

			// The spool works on the migrated table: idempotency keys still
			// find their requests, a new request gets a rid above every
			// rid ever used, and a held result can be stored.
			in := runIntake(t, s, IntakeConfig{})
			if tt.rows > 0 {
				acc, err := in.Submit(ctx, Request{Client: "portal", IdempotencyKey: "k1", Operation: "violations.query",
					Params: json.RawMessage(`{}`)})
				if !errors.Is(err, ErrIdempotencyConflict) {
					// The stored body hash is X'01', which no body has.
					t.Fatalf("retry of k1 with another body: %+v %v, want a conflict", acc, err)
				}
			}
			acc, err := in.Submit(ctx, Request{Client: "portal", Operation: "exam.book", Params: json.RawMessage(`{}`)})
			if err != nil {
				t.Fatal(err)
			}
			var rid int64
			if err := s.r.QueryRow(`SELECT rid FROM requests WHERE id = ?`, acc.ID).Scan(&rid); err != nil || rid != 6 {
				t.Fatalf("new request's rid %d (%v), want 6: a rid was reused", rid, err)
			}
			sealNext(t, s, 10)
			got, err := s.ApplyResults(ctx, ReceivedEnvelope{ID: strings.Repeat("c", 32), Channel: "results", Seq: 1},
				&batch.Results{Results: []batch.Result{heldResult(acc.ID)}}, time.Now())
			if err != nil || !slices.Equal(got.Held, []string{acc.ID}) {
				t.Fatalf("held result after migration: %+v %v", got, err)
			}
		})
	}
}
