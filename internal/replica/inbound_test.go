package replica

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/ferrybridge/ferry/internal/batch"
)

// chain hands out envelopes of one channel whose prev and header hashes
// link up as a real sender's do.
type chain struct {
	t      testing.TB
	hashes map[uint64][32]byte
}

func newChain(t testing.TB) *chain { return &chain{t: t, hashes: map[uint64][32]byte{}} }

func (c *chain) hash(seq uint64) [32]byte {
	h, ok := c.hashes[seq]
	if !ok && seq > 0 {
		h = sha256.Sum256(fmt.Appendf(nil, "header %d", seq))
		c.hashes[seq] = h
	}
	return h
}

// env returns envelope seq of the chain.
func (c *chain) env(seq uint64) Envelope {
	e := testEnvelope(c.t, seq)
	e.HeaderHash, e.Prev = c.hash(seq), c.hash(seq-1)
	return e
}

func received(t testing.TB, db *DB) *batch.Received {
	t.Helper()
	r, err := db.Received(context.Background(), "dmz", "requests")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDB_Received(t *testing.T) {
	db, path := newTestReplica(t)
	c := newChain(t)
	if got := received(t, db); !reflect.DeepEqual(got, &batch.Received{}) {
		t.Fatalf("nothing applied: got %+v", got)
	}
	for _, s := range []uint64{1, 2, 4, 7} {
		apply(t, db, c.env(s))
	}
	want := &batch.Received{Contiguous: 2, Through: 7, Missing: [][2]uint64{{3, 3}, {5, 6}}}
	if got := received(t, db); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	apply(t, db, c.env(3))
	db.Close()
	db = openTest(t, path)
	want = &batch.Received{Contiguous: 4, Through: 7, Missing: [][2]uint64{{5, 6}}}
	if got := received(t, db); !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopen: got %+v, want %+v", got, want)
	}
	apply(t, db, c.env(6))
	if got := received(t, db); !reflect.DeepEqual(got, &batch.Received{Contiguous: 4, Through: 7, Missing: [][2]uint64{{5, 5}}}) {
		t.Fatalf("a gap's end filled: got %+v", got)
	}
	apply(t, db, c.env(5))
	if got := received(t, db); !reflect.DeepEqual(got, &batch.Received{Contiguous: 7, Through: 7}) {
		t.Fatalf("gaps filled: got %+v", got)
	}
	// Another channel and another sender are counted apart.
	other := testEnvelope(t, 3)
	other.Channel = "bulk"
	apply(t, db, other)
	if got := received(t, db); got.Through != 7 || got.Contiguous != 7 {
		t.Fatalf("another channel moved this one: %+v", got)
	}
}

func TestDB_Received_manyGaps(t *testing.T) {
	db, _ := newTestReplica(t)
	c := newChain(t)
	n := batch.MaxMissing + 6
	for i := range n + 1 {
		apply(t, db, c.env(uint64(2*i+1))) // 1, 3, 5, …: every even seq is missing
	}
	got := received(t, db)
	if len(got.Missing) != batch.MaxMissing || got.Contiguous != 1 || got.Through != uint64(2*n+1) {
		t.Fatalf("got contiguous %d, through %d, %d ranges", got.Contiguous, got.Through, len(got.Missing))
	}
	// The most recent gaps are listed.
	if last := got.Missing[len(got.Missing)-1]; last != [2]uint64{uint64(2 * n), uint64(2 * n)} {
		t.Fatalf("last range %v, want the most recent gap", last)
	}
	if _, err := batch.DecodeResults(mustJSON(t, batch.Results{Acks: []string{}, Results: []batch.Result{}, Received: got})); err != nil {
		t.Fatalf("the report does not decode: %v", err)
	}
}

// TestDB_Received_forgetsOldGaps: a gap more than the jump bound behind
// the highest sequence number is no longer waited for (its envelope was
// dropped by the sender or expired), so the channel's contiguous mark
// moves on; an envelope from it that still arrives is applied.
func TestDB_Received_forgetsOldGaps(t *testing.T) {
	db, _ := newTestReplica(t)
	db.SetMaxSeqJump(10)
	c := newChain(t)
	apply(t, db, c.env(1))
	apply(t, db, c.env(3))
	for s := uint64(4); s <= 12; s++ {
		apply(t, db, c.env(s))
	}
	if got := received(t, db); got.Contiguous != 1 {
		t.Fatalf("seq 2 forgotten too early: %+v", got)
	}
	apply(t, db, c.env(13)) // 2 is more than 10 below 13: forgotten
	if got := received(t, db); !reflect.DeepEqual(got, &batch.Received{Contiguous: 13, Through: 13}) {
		t.Fatalf("got %+v", got)
	}
	apply(t, db, c.env(2), req(t, "slot.book", 1))
	if n := countRows(t, db); n != 1 {
		t.Fatalf("the late envelope was not applied: %d appointments", n)
	}
}

func TestDB_Apply_seqJump(t *testing.T) {
	db, path := newTestReplica(t)
	db.SetMaxSeqJump(10)
	c := newChain(t)
	apply(t, db, c.env(1))
	if _, err := db.Apply(context.Background(), c.env(12), []batch.Request{req(t, "slot.book", 1)}, testChecker); !errors.Is(err, ErrSeqJump) {
		t.Fatalf("seq 12 after 1, bound 10: %v, want ErrSeqJump", err)
	}
	apply(t, db, c.env(11)) // exactly the bound
	// The bound counts from the highest seq, across a restart.
	db.Close()
	db = openTest(t, path)
	db.SetMaxSeqJump(10)
	if _, err := db.Apply(context.Background(), c.env(22), nil, testChecker); !errors.Is(err, ErrSeqJump) {
		t.Fatalf("seq 22 after reopen: %v, want ErrSeqJump", err)
	}
	apply(t, db, c.env(21))
	if n := countRows(t, db); n != 0 {
		t.Fatalf("a refused envelope took effect: %d appointments", n)
	}
	// The gap 2–10 is forgotten, 12–20 still awaited.
	if got := received(t, db); !reflect.DeepEqual(got, &batch.Received{Contiguous: 11, Through: 21, Missing: [][2]uint64{{12, 20}}}) {
		t.Fatalf("got %+v", got)
	}
}

func TestDB_Apply_chainBroken(t *testing.T) {
	db, _ := newTestReplica(t)
	c := newChain(t)
	first := c.env(1)
	first.Prev[0] = 1
	if _, err := db.Apply(context.Background(), first, nil, testChecker); !errors.Is(err, ErrChainBroken) {
		t.Fatalf("seq 1 naming a previous envelope: %v", err)
	}
	apply(t, db, c.env(1))
	apply(t, db, c.env(2))
	forked := c.env(3)
	forked.Prev = sha256.Sum256([]byte("another seq 2"))
	if _, err := db.Apply(context.Background(), forked, []batch.Request{req(t, "slot.book", 1)}, testChecker); !errors.Is(err, ErrChainBroken) {
		t.Fatalf("seq 3 after another seq 2: %v, want ErrChainBroken", err)
	}
	// Seq 4 arrives before 3; a seq 3 that 4 does not name is refused,
	// the one it names is applied.
	apply(t, db, c.env(4))
	impostor := c.env(3)
	impostor.HeaderHash = sha256.Sum256([]byte("impostor"))
	if _, err := db.Apply(context.Background(), impostor, []batch.Request{req(t, "slot.book", 2)}, testChecker); !errors.Is(err, ErrChainBroken) {
		t.Fatalf("seq 3 that seq 4 does not name: %v, want ErrChainBroken", err)
	}
	apply(t, db, c.env(3))
	if n := countRows(t, db); n != 0 {
		t.Fatalf("a refused envelope took effect: %d appointments", n)
	}
	if got := received(t, db); !reflect.DeepEqual(got, &batch.Received{Contiguous: 4, Through: 4}) {
		t.Fatalf("got %+v", got)
	}
}

// TestDB_Apply_seqZero: channels start at 1.
func TestDB_Apply_seqZero(t *testing.T) {
	db, _ := newTestReplica(t)
	if _, err := db.Apply(context.Background(), testEnvelope(t, 0), nil, testChecker); !errors.Is(err, ErrInvalid) {
		t.Fatalf("seq 0: %v, want ErrInvalid", err)
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := batch.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDB_Apply_withdraw re-sends lost envelopes as new ones that name the
// envelope they replace: the replaced place counts as filled, a late copy
// of the replaced envelope is refused as a replay, and a replacement of
// an envelope that did arrive withdraws nothing. It survives a restart.
func TestDB_Apply_withdraw(t *testing.T) {
	db, path := newTestReplica(t)
	c := newChain(t)
	for _, s := range []uint64{1, 2, 4} {
		apply(t, db, c.env(s))
	}
	e5 := c.env(5)
	e5.Replaces = 3
	apply(t, db, e5)
	if got := received(t, db); !reflect.DeepEqual(got, &batch.Received{Contiguous: 5, Through: 5}) {
		t.Fatalf("seq 3 replaced by 5: got %+v, want nothing missing", got)
	}
	db.Close()
	db = openTest(t, path)
	if _, err := db.Apply(context.Background(), c.env(3), nil, testChecker); !errors.Is(err, ErrReplay) {
		t.Fatalf("late copy of the withdrawn seq 3: %v, want ErrReplay", err)
	}
	// 6 replaces 4, which arrived: nothing is withdrawn.
	e6 := c.env(6)
	e6.Replaces = 4
	apply(t, db, e6)
	var n int
	if err := db.w.QueryRow(`SELECT count(*) FROM ferry_withdrawn`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d withdrawn seqs (%v), want only 3", n, err)
	}
	// 9 replaces 7 while 8 is still missing: only 7 is filled.
	e9 := c.env(9)
	e9.Replaces = 7
	apply(t, db, e9)
	if got := received(t, db); !reflect.DeepEqual(got, &batch.Received{Contiguous: 7, Through: 9, Missing: [][2]uint64{{8, 8}}}) {
		t.Fatalf("seq 7 replaced by 9: got %+v", got)
	}
	// A replacement must name an earlier envelope.
	bad := c.env(10)
	bad.Replaces = 10
	if _, err := db.Apply(context.Background(), bad, nil, testChecker); !errors.Is(err, ErrInvalid) {
		t.Fatalf("envelope replacing itself: %v, want ErrInvalid", err)
	}
}
