package intranet

import (
	"reflect"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/envelope"
)

// TestAgent_Run_sequenceOrder: the agent reports the gaps of the requests
// channel in every result envelope, and quarantines an envelope that
// jumps too far ahead or breaks the hash chain, with nothing applied.
func TestAgent_Run_sequenceOrder(t *testing.T) {
	e := newTestEnv(t)
	e.cfg.MaxSeqJump = 5
	r := e.start(t)
	before := e.replicaCount(t, countAppointments)

	s1 := e.send(t, e.bookings(t, 1))
	s2 := e.seal(t, e.bookings(t, 1)) // lost, for now
	s3 := e.send(t, e.bookings(t, 1))
	a := e.waitAcked(t, s1.Header.ID, s3.Header.ID)
	want := &batch.Received{Contiguous: 1, Through: 3, Missing: [][2]uint64{{2, 2}}}
	if got := a.received[len(a.received)-1]; !reflect.DeepEqual(got, want) {
		t.Fatalf("after seqs 1 and 3: received %+v, want %+v", got, want)
	}
	e.drop(t, envelope.FileName(&s2.Header), s2.Data)
	a = e.waitAcked(t, s2.Header.ID)
	if got := a.received[len(a.received)-1]; !reflect.DeepEqual(got, &batch.Received{Contiguous: 3, Through: 3}) {
		t.Fatalf("after the gap was filled: received %+v", got)
	}

	// Envelopes signed by the DMZ's own key that do not fit its channel.
	forged := func(seq uint64, prev [32]byte) *envelope.Sealed {
		now := time.Now()
		h := envelope.Header{ID: envelope.NewID(), Kind: envelope.KindRequests, From: "dmz", To: "intranet",
			Channel: "requests", Seq: seq, Prev: prev, Created: now, Expires: now.Add(time.Hour)}
		return e.sealWith(t, h, batch.Requests{Requests: e.bookings(t, 1)}, e.dmz.Signer, e.intra.Recipient)
	}
	bad := map[string]string{}
	jump := forged(3+6, [32]byte{}) // the highest is 3, the bound 5
	e.drop(t, "jump.fxe", jump.Data)
	bad["jump.fxe"] = ReasonSeqJump
	fork := forged(4, [32]byte{1}) // seq 4 whose prev is not seq 3
	e.drop(t, "fork.fxe", fork.Data)
	bad["fork.fxe"] = ReasonChain
	waitQuarantined(t, e, bad)

	// The channel goes on: the real seq 4 is applied.
	s4 := e.send(t, e.bookings(t, 1))
	a = e.waitAcked(t, s4.Header.ID)
	r.stop(t)
	if n := e.replicaCount(t, countAppointments); n != before+4 {
		t.Errorf("%d appointments, want %d: a refused envelope took effect", n, before+4)
	}
	for _, s := range []*envelope.Sealed{jump, fork} {
		if a.acks[s.Header.ID] != 0 {
			t.Errorf("refused envelope %s was acknowledged", s.Header.ID)
		}
	}
}
