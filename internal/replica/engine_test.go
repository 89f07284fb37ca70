package replica

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/policy"
	"github.com/ferrybridge/ferry/internal/sample"
)

// applyTest applies one request in its own envelope and returns its result.
func (db *DB) applyTest(t testing.TB, pol Checker, r batch.Request) batch.Result {
	t.Helper()
	envSeq++
	a, err := db.Apply(context.Background(), testEnvelope(t, envSeq), []batch.Request{r}, pol)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return a.Results[0]
}

var envSeq uint64

func TestDB_Apply_subjectBinding(t *testing.T) {
	db, pol := newSampleReplica(t)
	cs := sample.Citizens()
	me, other := cs[0], cs[1]

	// My own violations, with or without my ID number in the params.
	for _, params := range []map[string]any{{"plate": me.Plate}, {"plate": me.Plate, "id_number": me.IDNumber}} {
		if r := db.applyTest(t, pol, sampleReq(t, "violations.query", me.IDNumber, params)); r.Status != batch.StatusDone || len(r.Rows) == 0 {
			t.Fatalf("own violations %v: %+v", params, r)
		}
	}
	// Another citizen's records, whatever the request names: refused
	// with forbidden_subject and no rows.
	for _, tc := range []struct {
		op     string
		params map[string]any
	}{
		{"violations.query", map[string]any{"plate": other.Plate, "id_number": other.IDNumber}},
		{"licence.status", map[string]any{"id_number": other.IDNumber}},
		{"exam.book", map[string]any{"id_number": other.IDNumber, "slot_id": 1}},
	} {
		r := db.applyTest(t, pol, sampleReq(t, tc.op, me.IDNumber, tc.params))
		if r.Status != batch.StatusRejected || r.Reason != policy.ReasonForbiddenSubject || len(r.Rows) != 0 {
			t.Errorf("%s for another citizen: %+v, want rejected forbidden_subject", tc.op, r)
		}
	}
	// The other citizen's plate under my subject: the statement binds the
	// owner to the subject, so nothing comes back.
	if r := db.applyTest(t, pol, sampleReq(t, "violations.query", me.IDNumber, map[string]any{"plate": other.Plate})); r.Status != batch.StatusDone || len(r.Rows) != 0 {
		t.Errorf("another citizen's plate under my subject: %+v, want done with no rows", r)
	}
	// No subject, and a client the policy does not trust to assert one.
	if r := db.applyTest(t, pol, sampleReq(t, "licence.status", "", map[string]any{"id_number": me.IDNumber})); r.Reason != policy.ReasonMissingSubject {
		t.Errorf("no subject: %+v", r)
	}
	untrusted := sampleReq(t, "licence.status", me.IDNumber, nil)
	untrusted.Client = "kiosk"
	if r := db.applyTest(t, pol, untrusted); r.Reason != policy.ReasonSubjectNotTrusted {
		t.Errorf("untrusted client: %+v", r)
	}
}

func TestDB_Apply_masking(t *testing.T) {
	db, pol := newSampleReplica(t)
	c := sample.Citizens()[0]
	r := db.applyTest(t, pol, sampleReq(t, "licence.status", c.IDNumber, nil))
	if r.Status != batch.StatusDone || len(r.Rows) != 1 {
		t.Fatalf("licence.status: %+v", r)
	}
	row := r.Rows[0]
	wantID := c.IDNumber[:6] + "********" + c.IDNumber[14:]
	if row["id_number"] != wantID {
		t.Errorf("id_number %q, want %q", row["id_number"], wantID)
	}
	if name, want := row["holder"], string([]rune(c.Name)[:1])+"*"; name != want {
		t.Errorf("holder %q, want %q", name, want)
	}
	if m, _ := row["mobile"].(string); len(m) != 11 || m[3:7] != "****" {
		t.Errorf("mobile %q, want its middle four digits masked", m)
	}
	for k, v := range row {
		if s, ok := v.(string); ok && (s == c.IDNumber || s == c.Name) {
			t.Errorf("column %s carries the unmasked value", k)
		}
	}
}

func TestDB_Apply_rateLimitAcrossRestart(t *testing.T) {
	path := sampleReplicaFile(t)
	pol := parsePolicy(t, sample.Policy())
	op, _ := pol.Operation("licence.status")
	limit := op.Limits.PerSubject
	if limit.N == 0 {
		t.Fatal("the sample's licence.status has no per-subject limit")
	}
	clock := time.Date(2026, 7, 1, 9, 0, 0, 0, time.UTC)
	open := func() *DB {
		db, err := Open(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		db.now = func() time.Time { return clock }
		return db
	}
	cs := sample.Citizens()
	me, other := cs[0].IDNumber, cs[1].IDNumber
	db := open()
	for i := 0; i < limit.N; i++ {
		if r := db.applyTest(t, pol, sampleReq(t, "licence.status", me, nil)); r.Status != batch.StatusDone {
			t.Fatalf("request %d of %d: %+v", i+1, limit.N, r)
		}
	}
	r := db.applyTest(t, pol, sampleReq(t, "licence.status", me, nil))
	if r.Status != batch.StatusRejected || r.Reason != policy.ReasonRateLimited || r.RetryAfter != 6 || !strings.Contains(r.Message, "retry in 6s") {
		t.Fatalf("request %d: %+v, want rate_limited with retry in 6s", limit.N+1, r)
	}
	// Across a restart (the agent's process ends; the file stays).
	db.Close()
	db = open()
	defer db.Close()
	if r := db.applyTest(t, pol, sampleReq(t, "licence.status", me, nil)); r.Reason != policy.ReasonRateLimited {
		t.Fatalf("after a restart: %+v, want rate_limited", r)
	}
	// Another subject has its own bucket.
	if r := db.applyTest(t, pol, sampleReq(t, "licence.status", other, nil)); r.Status != batch.StatusDone {
		t.Fatalf("another subject: %+v", r)
	}
	// One interval later, one more request may go.
	clock = clock.Add(limit.Per / time.Duration(limit.N))
	if r := db.applyTest(t, pol, sampleReq(t, "licence.status", me, nil)); r.Status != batch.StatusDone {
		t.Fatalf("after the interval: %+v", r)
	}
	if r := db.applyTest(t, pol, sampleReq(t, "licence.status", me, nil)); r.Reason != policy.ReasonRateLimited {
		t.Fatalf("the interval's one request was already used: %+v", r)
	}
	// Refused requests are not counted: a full period later the bucket is
	// full again.
	clock = clock.Add(limit.Per)
	for i := 0; i < limit.N; i++ {
		if r := db.applyTest(t, pol, sampleReq(t, "licence.status", me, nil)); r.Status != batch.StatusDone {
			t.Fatalf("after a full period, request %d: %+v", i+1, r)
		}
	}
}

// dataDigest hashes every row of the replica's own tables (not ferry's
// ledger), in a fixed order.
func dataDigest(t testing.TB, db *DB) [32]byte {
	t.Helper()
	h := sha256.New()
	tables, err := db.ro.Query(`SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'ferry_%' AND name NOT LIKE 'sqlite_%' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for tables.Next() {
		var n string
		if err := tables.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	tables.Close()
	for _, n := range names {
		rows, err := db.ro.Query(`SELECT * FROM "` + n + `" ORDER BY rowid`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(h, "%s|%q\n", n, vals)
		}
		rows.Close()
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// TestDB_Apply_injection sends SQL injection attempts in every parameter of
// every sample operation, as the subject too, and checks that the
// replica's data is exactly as before: hostile values are refused by
// their types or reach SQLite only as bound values.
func TestDB_Apply_injection(t *testing.T) {
	db, pol := newSampleReplica(t)
	c := sample.Citizens()[0]
	before := dataDigest(t, db)
	hostile := []any{
		`' OR '1'='1`, `'; DROP TABLE drivers; --`, `1; DELETE FROM appointments`, `1 OR 1=1`,
		`" OR ""="`, `京A12345' --`, `110101198001010010' OR 1=1 --`, `1) UNION SELECT name, id_number FROM drivers --`,
		`%' AND 1=0 UNION SELECT sql FROM sqlite_schema --`, "\x00'; DROP TABLE licences", `1e999`, `-1`,
		`2026-07-01' OR 1=1 --`, `'||(SELECT group_concat(id_number) FROM drivers)||'`, `X'00'`, `:id_number`, `?1`,
		map[string]any{"from": `2026-01-01'--`, "to": `x`}, []any{`1`, `2`}, 1 << 62, -9223372036854775808,
	}
	ops := map[string][]string{
		"violations.query": {"id_number", "plate"},
		"licence.status":   {"id_number"},
		"exam.slots":       {"subject", "date_from", "date_to"},
		"exam.book":        {"id_number", "slot_id"},
	}
	valid := map[string]any{"id_number": c.IDNumber, "plate": c.Plate, "subject": 1, "date_from": "2026-07-01", "date_to": "2026-07-31", "slot_id": 1}
	n := 0
	for op, params := range ops {
		for _, p := range params {
			for _, v := range hostile {
				ps := map[string]any{}
				for _, q := range params {
					ps[q] = valid[q]
				}
				ps[p] = v
				r := db.applyTest(t, pol, sampleReq(t, op, c.IDNumber, ps))
				if r.Status == batch.StatusFailed {
					t.Errorf("%s with hostile %s: %+v", op, p, r)
				}
				n++
			}
		}
		for _, v := range hostile {
			s, ok := v.(string)
			if !ok {
				continue
			}
			r := db.applyTest(t, pol, sampleReq(t, op, s, map[string]any{}))
			if r.Status != batch.StatusRejected {
				t.Errorf("%s with a hostile subject: %+v, want rejected", op, r)
			}
			n++
		}
	}
	if after := dataDigest(t, db); after != before {
		t.Fatalf("the replica's data changed after %d hostile requests", n)
	}
}

// TestDB_Apply_guardAtRunTime adds a trigger after the sample policy was
// proven: a booking now also writes a table the operation never declared,
// and the guard refuses the booking rather than let the trigger write.
func TestDB_Apply_guardAtRunTime(t *testing.T) {
	db, pol := newSampleReplica(t)
	if err := db.ProvePolicy(context.Background(), pol); err != nil {
		t.Fatalf("the sample policy does not prove: %v", err)
	}
	raw, err := sql.Open("sqlite3", "file:"+db.Path()+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`CREATE TABLE leak (id_number TEXT);
		CREATE TRIGGER leak_bookings AFTER INSERT ON appointments BEGIN INSERT INTO leak VALUES (new.id_number); END`); err != nil {
		t.Fatal(err)
	}
	c := sample.Citizens()[0]
	before := appointments(t, db)
	r := db.applyTest(t, pol, sampleReq(t, "exam.book", c.IDNumber, map[string]any{"slot_id": freeSlot(t, db, c.IDNumber)}))
	if r.Status != batch.StatusFailed || r.Reason != ReasonApplyFailed {
		t.Fatalf("booking through a trigger that writes elsewhere: %+v, want failed apply_failed", r)
	}
	var leaked int
	if err := raw.QueryRow(`SELECT count(*) FROM leak`).Scan(&leaked); err != nil || leaked != 0 || appointments(t, db) != before {
		t.Fatalf("the trigger wrote: %d leaked rows (%v), %d appointments, want %d", leaked, err, appointments(t, db), before)
	}
	if err := db.ProvePolicy(context.Background(), pol); err == nil || !strings.Contains(err.Error(), "exam.book") {
		t.Fatalf("ProvePolicy after the trigger: %v, want exam.book refused", err)
	}
}

// TestDB_Apply_rateLimitBothScopes checks that a request refused by the
// client limit does not count against the subject limit.
func TestDB_Apply_rateLimitBothScopes(t *testing.T) {
	src := sample.Policy()
	old := []byte("      per_subject: 10/1m\n")
	if !bytes.Contains(src, old) {
		t.Fatal("the sample's licence.status limit changed")
	}
	pol := parsePolicy(t, bytes.Replace(src, old, []byte("      per_subject: 2/1h\n      per_client: 1/1m\n"), 1))
	db := openTest(t, sampleReplicaFile(t))
	clock := time.Date(2026, 7, 1, 9, 0, 0, 0, time.UTC)
	db.now = func() time.Time { return clock }
	me := sample.Citizens()[0].IDNumber
	ask := func(want string) {
		t.Helper()
		r := db.applyTest(t, pol, sampleReq(t, "licence.status", me, nil))
		got := r.Status
		if r.Reason != "" {
			got += " " + r.Reason + ": " + r.Message
		}
		if !strings.HasPrefix(got, want) {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	ask(batch.StatusDone)
	ask("rejected rate_limited: operation licence.status is limited to 1/1m requests per client")
	clock = clock.Add(time.Minute)
	ask(batch.StatusDone) // the subject's second, had the refused one not counted
	clock = clock.Add(time.Minute)
	ask("rejected rate_limited: operation licence.status is limited to 2/1h requests per subject")
}
