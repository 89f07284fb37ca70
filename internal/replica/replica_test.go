package replica

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/policy"
)

// checkFunc is a hand-written Checker for tests that need statements the
// sample policy does not have (a "read" that writes, a write that fails).
type checkFunc func(op string, params json.RawMessage) (*policy.Checked, error)

func (f checkFunc) Evaluate(r policy.Request) (*policy.Checked, error) {
	return f(r.Operation, r.Params)
}

func (f checkFunc) Check(op string, params json.RawMessage) (*policy.Checked, error) {
	return f(op, params)
}

// The declared access of the test operations.
var (
	readAppointments   = map[string][]string{"appointments": {"id", "slot", "note", "blob"}}
	insertAppointments = []string{"appointments"}
)

var testOps = map[string]*policy.Operation{
	"slot.book": {Name: "slot.book", Mode: policy.ModeWrite, Statement: `INSERT INTO appointments (slot, note) VALUES (:slot, :note)`,
		Inserts: insertAppointments},
	"slot.list": {Name: "slot.list", Mode: policy.ModeRead, Statement: `SELECT id, slot, note, blob FROM appointments ORDER BY id`, MaxRows: 3,
		Reads: readAppointments},
	// A "read" that writes, even with the access a write would need.
	"evil.read": {Name: "evil.read", Mode: policy.ModeRead, Statement: `INSERT INTO appointments (slot, note) VALUES (:slot, :note)`,
		Reads: readAppointments, Inserts: insertAppointments},
	"slot.clear": {Name: "slot.clear", Mode: policy.ModeWrite, Statement: `DELETE FROM appointments WHERE slot = :slot`,
		Reads: readAppointments, Inserts: insertAppointments},
	// A value JSON cannot carry: SQLite reads 9e999 as +Inf.
	"slot.inf": {Name: "slot.inf", Mode: policy.ModeRead, Statement: `SELECT 9e999 AS x WHERE :slot > 0`, MaxRows: 1},
	// Two statements: when the second fails, only the savepoint undoes
	// the first (SQLite's statement rollback covers one statement).
	"slot.logbook": {Name: "slot.logbook", Mode: policy.ModeWrite,
		Statement: `INSERT INTO booklog (slot) VALUES (0); INSERT INTO appointments (slot, note) VALUES (:slot, :note)`,
		Inserts:   []string{"booklog", "appointments"}},
}

// testChecker allows the operations in testOps with params {"slot": n}.
var testChecker = checkFunc(func(op string, params json.RawMessage) (*policy.Checked, error) {
	o, ok := testOps[op]
	if !ok {
		return nil, &policy.RejectError{Reason: "unknown_operation", Message: "operation is not allowed"}
	}
	var p struct {
		Slot int64 `json:"slot"`
	}
	if err := json.Unmarshal(params, &p); err != nil || p.Slot <= 0 {
		return nil, &policy.RejectError{Reason: "bad_param", Param: "slot", Message: "slot must be a positive integer"}
	}
	args := []any{sql.Named("slot", p.Slot)}
	if strings.Contains(o.Statement, ":note") {
		args = append(args, sql.Named("note", fmt.Sprintf("note %d", p.Slot)))
	}
	return &policy.Checked{Op: o, Args: args}, nil
})

// newTestReplica creates a replica file with a small appointments table
// (one appointment per slot) and opens it.
func newTestReplica(t testing.TB) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "replica.db")
	raw, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`CREATE TABLE appointments (
		id   INTEGER PRIMARY KEY,
		slot INTEGER NOT NULL UNIQUE,
		note TEXT NOT NULL,
		blob BLOB DEFAULT x'6869'
	);
	CREATE TABLE booklog (slot INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	return openTest(t, path), path
}

func openTest(t testing.TB, path string) *DB {
	t.Helper()
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

var idCounter int

func newID(t testing.TB) string {
	t.Helper()
	idCounter++
	return fmt.Sprintf("%032x", idCounter)
}

func testEnvelope(t testing.TB, seq uint64) Envelope {
	t.Helper()
	id := newID(t)
	return Envelope{ID: id, From: "dmz", Channel: "requests", Seq: seq, File: "req-" + id + ".fxe"}
}

func req(t testing.TB, op string, slot int) batch.Request {
	t.Helper()
	return batch.Request{ID: newID(t), Client: "portal", Operation: op, Params: json.RawMessage(fmt.Sprintf(`{"slot":%d}`, slot))}
}

func countRows(t testing.TB, db *DB) int {
	t.Helper()
	var n int
	if err := db.ro.QueryRow(`SELECT count(*) FROM appointments`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func apply(t testing.TB, db *DB, env Envelope, reqs ...batch.Request) *Applied {
	t.Helper()
	a, err := db.Apply(context.Background(), env, reqs, testChecker)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if len(a.Results) != len(reqs) {
		t.Fatalf("Apply returned %d results for %d requests", len(a.Results), len(reqs))
	}
	for i, r := range a.Results {
		if r.RequestID != reqs[i].ID {
			t.Fatalf("result %d is for request %s, want %s", i, r.RequestID, reqs[i].ID)
		}
	}
	return a
}

func TestDB_Apply_exactlyOnce(t *testing.T) {
	db, _ := newTestReplica(t)
	env1 := testEnvelope(t, 1)
	r1, r2, r3 := req(t, "slot.book", 1), req(t, "slot.book", 2), req(t, "slot.book", 3)
	first := apply(t, db, env1, r1, r2, r3)
	if first.Duplicate || first.State != StateApplied {
		t.Fatalf("first apply: duplicate=%v state=%s", first.Duplicate, first.State)
	}
	for _, r := range first.Results {
		if r.Status != batch.StatusDone || r.RowsAffected != 1 {
			t.Fatalf("result %+v, want done with 1 row", r)
		}
	}
	if n := countRows(t, db); n != 3 {
		t.Fatalf("%d appointments after first apply, want 3", n)
	}

	// The same envelope again, under another file name.
	again := env1
	again.File = "other.fxe"
	second := apply(t, db, again, r1, r2, r3)
	if !second.Duplicate || second.File != env1.File {
		t.Fatalf("second apply: duplicate=%v file=%s, want duplicate of %s", second.Duplicate, second.File, env1.File)
	}
	if !reflect.DeepEqual(first.Results, second.Results) {
		t.Fatalf("duplicate results differ:\n%+v\n%+v", first.Results, second.Results)
	}

	// A request id already applied, re-sent inside a new envelope, beside
	// a new request.
	r4 := req(t, "slot.book", 4)
	third := apply(t, db, testEnvelope(t, 2), r2, r4)
	if third.Duplicate {
		t.Fatal("new envelope reported as duplicate")
	}
	if !reflect.DeepEqual(third.Results[0], first.Results[1]) {
		t.Fatalf("re-sent request: %+v, want stored %+v", third.Results[0], first.Results[1])
	}
	if third.Results[1].Status != batch.StatusDone {
		t.Fatalf("new request: %+v", third.Results[1])
	}
	if n := countRows(t, db); n != 4 {
		t.Fatalf("%d appointments, want 4: a request took effect twice", n)
	}
	st, err := db.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Envelopes != 2 || st.Requests != 4 || st.Unsealed != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDB_Apply_readResults(t *testing.T) {
	db, _ := newTestReplica(t)
	apply(t, db, testEnvelope(t, 1), req(t, "slot.book", 1), req(t, "slot.book", 2), req(t, "slot.book", 3), req(t, "slot.book", 4))
	env := testEnvelope(t, 2)
	list := req(t, "slot.list", 1)
	a := apply(t, db, env, list)
	r := a.Results[0]
	if r.Status != batch.StatusDone {
		t.Fatalf("read: %+v", r)
	}
	if len(r.Rows) != 3 {
		t.Fatalf("read returned %d rows, want MaxRows 3", len(r.Rows))
	}
	want := map[string]any{"id": float64(1), "slot": float64(1), "note": "note 1", "blob": "hi"}
	if !reflect.DeepEqual(r.Rows[0], want) {
		t.Fatalf("row 0 = %#v, want %#v", r.Rows[0], want)
	}
	dup := apply(t, db, env, list)
	if !dup.Duplicate || !reflect.DeepEqual(dup.Results, a.Results) {
		t.Fatalf("duplicate read results differ:\n%+v\n%+v", a.Results, dup.Results)
	}
}

func TestDB_Apply_readCannotWrite(t *testing.T) {
	db, _ := newTestReplica(t)
	a := apply(t, db, testEnvelope(t, 1), req(t, "evil.read", 7))
	if r := a.Results[0]; r.Status != batch.StatusFailed || r.Reason != ReasonApplyFailed {
		t.Fatalf("read operation running an INSERT: %+v, want failed/apply_failed", r)
	}
	if n := countRows(t, db); n != 0 {
		t.Fatalf("a read operation wrote %d rows", n)
	}
	// The read path itself refuses to write, whatever the statement.
	c, err := testChecker.Check("evil.read", json.RawMessage(`{"slot":8}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.read(context.Background(), c); err == nil {
		t.Fatal("INSERT on the read-only pool succeeded")
	}
	if n := countRows(t, db); n != 0 {
		t.Fatalf("the read-only pool wrote %d rows", n)
	}
}

func TestDB_Apply_failedWriteIsolated(t *testing.T) {
	db, _ := newTestReplica(t)
	a := apply(t, db, testEnvelope(t, 1),
		req(t, "slot.book", 1),
		req(t, "slot.book", 1), // UNIQUE(slot) fails
		req(t, "slot.book", 2),
		req(t, "no.such", 1),
		req(t, "slot.book", 0),    // bad parameter
		req(t, "slot.logbook", 2), // its second statement fails
		req(t, "slot.logbook", 3),
	)
	want := []struct{ status, reason string }{
		{batch.StatusDone, ""},
		{batch.StatusFailed, ReasonApplyFailed},
		{batch.StatusDone, ""},
		{batch.StatusRejected, "unknown_operation"},
		{batch.StatusRejected, "bad_param"},
		{batch.StatusFailed, ReasonApplyFailed},
		{batch.StatusDone, ""},
	}
	for i, w := range want {
		r := a.Results[i]
		if r.Status != w.status || r.Reason != w.reason {
			t.Errorf("result %d = %s/%s, want %s/%s", i, r.Status, r.Reason, w.status, w.reason)
		}
	}
	if m := a.Results[1].Message; strings.Contains(strings.ToLower(m), "unique") || strings.Contains(m, "INSERT") || strings.Contains(m, "appointments") {
		t.Errorf("failure message leaks SQL details: %q", m)
	}
	if n := countRows(t, db); n != 3 {
		t.Fatalf("%d appointments, want 3", n)
	}
	var logged int
	if err := db.ro.QueryRow(`SELECT count(*) FROM booklog`).Scan(&logged); err != nil {
		t.Fatal(err)
	}
	if logged != 1 {
		t.Fatalf("%d booklog rows, want 1: a failed request's first statement was kept", logged)
	}
}

func TestDB_Apply_surviveReopen(t *testing.T) {
	db, path := newTestReplica(t)
	env := testEnvelope(t, 1)
	reqs := []batch.Request{req(t, "slot.book", 1), req(t, "slot.list", 1)}
	first := apply(t, db, env, reqs...)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db2 := openTest(t, path)
	second := apply(t, db2, env, reqs...)
	if !second.Duplicate || !reflect.DeepEqual(first.Results, second.Results) {
		t.Fatalf("after reopen: duplicate=%v\n%+v\n%+v", second.Duplicate, first.Results, second.Results)
	}
	if n := countRows(t, db2); n != 1 {
		t.Fatalf("%d appointments, want 1", n)
	}
}

func TestDB_Apply_badEnvelopes(t *testing.T) {
	db, _ := newTestReplica(t)
	apply(t, db, testEnvelope(t, 1), req(t, "slot.book", 1))
	r := req(t, "slot.book", 2)
	tests := []struct {
		name string
		env  Envelope
		reqs []batch.Request
		want error
	}{
		{"replayed seq", testEnvelope(t, 1), []batch.Request{req(t, "slot.book", 3)}, ErrReplay},
		{"malformed id", Envelope{ID: "nope", From: "dmz", Channel: "requests", Seq: 5}, nil, ErrInvalid},
		{"seq out of range", Envelope{ID: newID(t), From: "dmz", Channel: "requests", Seq: 1 << 63}, nil, ErrInvalid},
		{"repeated request", testEnvelope(t, 6), []batch.Request{r, r}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := db.Apply(context.Background(), tt.env, tt.reqs, testChecker)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Apply: %v, want %v", err, tt.want)
			}
		})
	}
	if n := countRows(t, db); n != 1 {
		t.Fatalf("%d appointments, want 1", n)
	}
}

func TestOpen_missing(t *testing.T) {
	_, err := Open(context.Background(), filepath.Join(t.TempDir(), "none.db"))
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Open of a missing replica: %v", err)
	}
}

func TestDB_ledger(t *testing.T) {
	ctx := context.Background()
	db, path := newTestReplica(t)
	e1, e2 := testEnvelope(t, 1), testEnvelope(t, 2)
	a1 := apply(t, db, e1, req(t, "slot.book", 1))
	apply(t, db, e2, req(t, "slot.book", 2))

	pend, err := db.Pending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(pend) != 2 || pend[0].ID != e1.ID || pend[1].ID != e2.ID || pend[0].File != e1.File ||
		!reflect.DeepEqual(pend[0].Results, a1.Results) {
		t.Fatalf("Pending = %+v", pend)
	}

	seq, prev, err := db.Channel(ctx, "results")
	if err != nil || seq != 1 || prev != ([32]byte{}) {
		t.Fatalf("Channel of a new channel = %d, %x, %v", seq, prev, err)
	}
	out := &Outgoing{ID: newID(t), Channel: "results", Seq: 1, HeaderHash: [32]byte{7}, Name: "r1.fxe", Data: []byte("sealed"), Covers: []string{e1.ID, e2.ID}}
	if err := db.StoreSealed(ctx, out); err != nil {
		t.Fatal(err)
	}
	stale := *out
	stale.ID = newID(t)
	if err := db.StoreSealed(ctx, &stale); !errors.Is(err, ErrSeqConflict) {
		t.Fatalf("StoreSealed with a used seq: %v, want ErrSeqConflict", err)
	}
	seq, prev, err = db.Channel(ctx, "results")
	if err != nil || seq != 2 || prev != out.HeaderHash {
		t.Fatalf("Channel after one envelope = %d, %x, %v", seq, prev, err)
	}

	// A duplicate of a sealed envelope reports its state and stored results,
	// whatever requests the copy claims to hold.
	a, err := db.Apply(ctx, e1, []batch.Request{req(t, "slot.book", 9)}, testChecker)
	if err != nil || !a.Duplicate || a.State != StateSealed || !reflect.DeepEqual(a.Results, a1.Results) {
		t.Fatalf("duplicate of sealed envelope: %+v, %v", a, err)
	}
	// Survives a restart.
	db.Close()
	db = openTest(t, path)
	unpub, err := db.Unpublished(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(unpub) != 1 || unpub[0].ID != out.ID || string(unpub[0].Data) != "sealed" || unpub[0].HeaderHash != out.HeaderHash ||
		!reflect.DeepEqual(unpub[0].Covers, []string{e1.ID, e2.ID}) || !reflect.DeepEqual(unpub[0].Files, []string{e1.File, e2.File}) {
		t.Fatalf("Unpublished = %+v", unpub)
	}
	files, err := db.MarkPublished(ctx, out.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(files, []string{e1.File, e2.File}) {
		t.Fatalf("MarkPublished files = %v", files)
	}
	if unpub, err := db.Unpublished(ctx); err != nil || len(unpub) != 0 {
		t.Fatalf("Unpublished after publish = %v, %v", unpub, err)
	}
	if pend, err := db.Pending(ctx); err != nil || len(pend) != 0 {
		t.Fatalf("Pending after publish = %v, %v", pend, err)
	}

	// A re-delivered, already answered envelope is a duplicate in the
	// published state, and takes no second effect.
	a, err = db.Apply(ctx, e1, nil, testChecker)
	if err != nil || !a.Duplicate || a.State != StatePublished {
		t.Fatalf("duplicate of a published envelope: %+v, %v", a, err)
	}
	if n := countRows(t, db); n != 2 {
		t.Fatalf("%d appointments, want 2", n)
	}
}

// BenchmarkApply applies envelopes of 256 write requests each.
func BenchmarkApply(b *testing.B) {
	db, _ := newTestReplica(b)
	ctx := context.Background()
	const perEnvelope = 256
	slot := 0
	envs := make([]Envelope, b.N)
	reqs := make([][]batch.Request, b.N)
	for i := range envs {
		envs[i] = testEnvelope(b, uint64(i+1))
		reqs[i] = make([]batch.Request, perEnvelope)
		for j := range reqs[i] {
			slot++
			reqs[i][j] = req(b, "slot.book", slot)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := db.Apply(ctx, envs[i], reqs[i], testChecker); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*perEnvelope)/b.Elapsed().Seconds(), "req/s")
}

// TestDB_Apply_unencodableRows checks that a row JSON cannot carry fails
// its own request and nothing else: the envelope is applied and recorded.
func TestDB_Apply_unencodableRows(t *testing.T) {
	db, _ := newTestReplica(t)
	a := apply(t, db, testEnvelope(t, 1), req(t, "slot.inf", 1), req(t, "slot.book", 1))
	if r := a.Results[0]; r.Status != batch.StatusFailed || r.Reason != ReasonApplyFailed || r.Rows != nil {
		t.Fatalf("unencodable read: %+v, want failed %s", r, ReasonApplyFailed)
	}
	if r := a.Results[1]; r.Status != batch.StatusDone || r.RowsAffected != 1 {
		t.Fatalf("booking beside it: %+v, want done", r)
	}
	if n := countRows(t, db); n != 1 {
		t.Fatalf("%d appointments, want 1", n)
	}
}
