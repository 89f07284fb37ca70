package intranet

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/envelope"
)

// TestAgent_settle plays a DMZ whose request envelope expired before its
// results came back: it asks about the envelope's request and about one
// that was applied and whose answer was lost. The applied one is answered
// with its stored result; the one that never arrived is settled
// "expired" (not_received), and when its envelope turns up late it is
// answered the same and not applied.
func TestAgent_settle(t *testing.T) {
	e := newTestEnv(t)
	e.start(t)
	before := e.replicaCount(t, countAppointments)
	reqs := e.bookings(t, 3)
	applied, lost, fresh := reqs[0], reqs[1], reqs[2]

	first := e.send(t, []batch.Request{applied})     // seq 1
	late := e.seal(t, []batch.Request{lost})         // seq 2: held up on the medium
	ask := e.sealWith(t, e.header(), batch.Requests{ // seq 3
		Requests: []batch.Request{fresh}, Query: []string{lost.ID, applied.ID}}, e.dmz.Signer, e.intra.Recipient)
	got := e.waitAcked(t, first.Header.ID)
	appliedResult := got.results[applied.ID]
	if len(appliedResult) != 1 || appliedResult[0].Status != batch.StatusDone || appliedResult[0].RowsAffected != 1 {
		t.Fatalf("booking: %+v", appliedResult)
	}

	e.drop(t, envelope.FileName(&ask.Header), ask.Data)
	got = e.waitAcked(t, ask.Header.ID)
	settled := batch.Result{RequestID: lost.ID, Status: batch.StatusExpired, Reason: batch.ReasonNotReceived,
		Message: "the intranet never received this request; it will not be applied"}
	if res := got.results[lost.ID]; len(res) != 1 || !reflect.DeepEqual(res[0], settled) {
		t.Fatalf("asked about a request never received: %+v, want %+v", res, settled)
	}
	if res := got.results[applied.ID]; len(res) != 2 || !reflect.DeepEqual(res[1], res[0]) {
		t.Fatalf("asked about an applied request: %+v, want its stored result again", res)
	}
	if res := got.results[fresh.ID]; len(res) != 1 || res[0].Status != batch.StatusDone {
		t.Fatalf("the asking envelope's own request: %+v", res)
	}
	if n := e.replicaCount(t, countAppointments); n != before+2 {
		t.Fatalf("%d appointments after asking, want %d", n, before+2)
	}

	// The settled request's own envelope arrives late: it is applied (its
	// place in the channel fills) but its request is answered from the
	// ledger and has no effect.
	e.drop(t, envelope.FileName(&late.Header), late.Data)
	got = e.waitAcked(t, late.Header.ID)
	if res := got.results[lost.ID]; len(res) != 2 || !reflect.DeepEqual(res[1], settled) {
		t.Fatalf("late envelope of a settled request: %+v, want %+v again", res, settled)
	}
	if n := e.replicaCount(t, countAppointments); n != before+2 {
		t.Fatalf("a settled request was applied: %d appointments, want %d", n, before+2)
	}
	if n := e.replicaCount(t, `SELECT count(*) FROM appointments WHERE slot_id = ? AND id_number = ?`,
		mustParam(t, lost, "slot_id"), mustParam(t, lost, "id_number")); n != 0 {
		t.Fatalf("the settled booking is in the replica")
	}
	e.waitEmpty(t)
}

// mustParam returns one parameter of a request.
func mustParam(t *testing.T, r batch.Request, name string) any {
	t.Helper()
	var p map[string]any
	if err := json.Unmarshal(r.Params, &p); err != nil {
		t.Fatal(err)
	}
	v, ok := p[name]
	if !ok {
		t.Fatalf("request has no parameter %s", name)
	}
	return v
}
