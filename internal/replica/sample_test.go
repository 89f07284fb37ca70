package replica

import (
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/policy"
	"github.com/ferrybridge/ferry/internal/sample"
)

// newSampleReplica creates the sample replica and opens it with the
// sample policy.
func newSampleReplica(t *testing.T) (*DB, *policy.Policy) {
	t.Helper()
	return openTest(t, sampleReplicaFile(t)), parsePolicy(t, sample.Policy())
}

// sampleReplicaFile creates the sample replica in a temporary directory and
// returns its path.
func sampleReplicaFile(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "replica.db")
	if err := sample.WriteReplica(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	return path
}

// parsePolicy parses a policy text or fails the test.
func parsePolicy(t testing.TB, text []byte) *policy.Policy {
	t.Helper()
	pol, err := policy.Parse("policy.yaml", text)
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

// sampleReq is a request of the portal (which the sample policy trusts to
// assert subjects) on behalf of subject ("" for none).
func sampleReq(t testing.TB, op, subject string, params map[string]any) batch.Request {
	t.Helper()
	if params == nil {
		params = map[string]any{}
	}
	p, err := json.Marshal(params)
	if err != nil {
		t.Fatal(err)
	}
	return batch.Request{ID: newID(t), Client: "portal", Subject: subject, Operation: op, Params: p}
}

func appointments(t *testing.T, db *DB) int {
	t.Helper()
	var n int
	if err := db.ro.QueryRow(`SELECT count(*) FROM appointments`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// freeSlot returns an exam slot with a place left that the citizen has not
// booked.
func freeSlot(t *testing.T, db *DB, idNumber string) int64 {
	t.Helper()
	var slot int64
	err := db.ro.QueryRow(`SELECT s.id FROM exam_slots s
		WHERE s.capacity > (SELECT count(*) FROM appointments a WHERE a.slot_id = s.id)
		  AND NOT EXISTS (SELECT 1 FROM appointments a WHERE a.slot_id = s.id AND a.id_number = ?)
		ORDER BY s.id LIMIT 1`, idNumber).Scan(&slot)
	if err != nil {
		t.Fatal(err)
	}
	return slot
}

func TestDB_Apply_sample(t *testing.T) {
	ctx := context.Background()
	db, pol := newSampleReplica(t)
	c := sample.Citizens()[0]
	before := appointments(t, db)
	book := sampleReq(t, "exam.book", c.IDNumber, map[string]any{"id_number": c.IDNumber, "slot_id": freeSlot(t, db, c.IDNumber)})
	query := sampleReq(t, "violations.query", c.IDNumber, map[string]any{"plate": c.Plate})
	bad := sampleReq(t, "violations.query", c.IDNumber, map[string]any{"id_number": "not-an-id", "plate": c.Plate})
	env := testEnvelope(t, 1)
	reqs := []batch.Request{book, query, bad}

	first, err := db.Apply(ctx, env, reqs, pol)
	if err != nil {
		t.Fatal(err)
	}
	if r := first.Results[0]; r.Status != batch.StatusDone || r.RowsAffected != 1 {
		t.Fatalf("exam.book: %+v", r)
	}
	if r := first.Results[1]; r.Status != batch.StatusDone || len(r.Rows) == 0 {
		t.Fatalf("violations.query of a citizen with a violation: %+v", r)
	}
	if r := first.Results[2]; r.Status != batch.StatusRejected || r.Reason == "" {
		t.Fatalf("malformed id number: %+v, want rejected with a reason", r)
	}
	again, err := db.Apply(ctx, env, reqs, pol)
	if err != nil || !again.Duplicate || !reflect.DeepEqual(again.Results, first.Results) {
		t.Fatalf("same envelope again: %v, %+v", err, again)
	}
	// The booking's request id inside another envelope.
	other, err := db.Apply(ctx, testEnvelope(t, 2), []batch.Request{book}, pol)
	if err != nil || other.Duplicate || !reflect.DeepEqual(other.Results[0], first.Results[0]) {
		t.Fatalf("same request in a new envelope: %v, %+v", err, other)
	}
	if n := appointments(t, db); n != before+1 {
		t.Fatalf("%d appointments, want %d: a booking took effect twice", n, before+1)
	}
}

// A statement that starts with WITH passes the policy's read check but
// may still write; the read-only pool is what stops it.
func TestDB_Apply_readOnlyPoolSample(t *testing.T) {
	db, _ := newSampleReplica(t)
	pol, err := policy.Parse("evil", []byte(`version: 1
operations:
  - name: exam.sneak
    description: a "read" that books
    mode: read
    params:
      id_number:
        type: string
        max_len: 18
      slot_id:
        type: int
        min: 1
        max: 999
    statement: |
      WITH s AS (SELECT :slot_id AS id)
      INSERT INTO appointments (slot_id, id_number) SELECT id, :id_number FROM s
    max_rows: 1
`))
	if err != nil {
		t.Logf("the policy loader refuses the statement: %v", err)
		return
	}
	c := sample.Citizens()[0]
	before := appointments(t, db)
	r := sampleReq(t, "exam.sneak", "", map[string]any{"id_number": c.IDNumber, "slot_id": freeSlot(t, db, c.IDNumber)})
	a, err := db.Apply(context.Background(), testEnvelope(t, 1), []batch.Request{r}, pol)
	if err != nil {
		t.Fatal(err)
	}
	if res := a.Results[0]; res.Status != batch.StatusFailed || res.Reason != ReasonApplyFailed {
		t.Fatalf("read operation that writes: %+v, want failed/apply_failed", res)
	}
	if n := appointments(t, db); n != before {
		t.Fatalf("a read operation wrote: %d appointments, want %d", n, before)
	}
}
