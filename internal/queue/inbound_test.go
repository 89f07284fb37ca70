package queue

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/batch"
)

// resultsChain hands out result envelopes of one channel whose prev and
// header hashes link up as the intranet's do.
type resultsChain struct {
	channel string
	hashes  map[uint64][32]byte
}

func newResultsChain(channel string) *resultsChain {
	return &resultsChain{channel: channel, hashes: map[uint64][32]byte{}}
}

func (c *resultsChain) hash(seq uint64) [32]byte {
	h, ok := c.hashes[seq]
	if !ok && seq > 0 {
		h = sha256.Sum256(fmt.Appendf(nil, "%s header %d", c.channel, seq))
		c.hashes[seq] = h
	}
	return h
}

// env returns envelope seq of the chain.
func (c *resultsChain) env(seq uint64) ReceivedEnvelope {
	return ReceivedEnvelope{
		ID:         fmt.Sprintf("%016x%016x", len(c.channel), seq),
		Channel:    c.channel,
		Seq:        seq,
		Prev:       c.hash(seq - 1),
		HeaderHash: c.hash(seq),
	}
}

// applyOK applies env with res (none when nil) and fails the test on an
// error.
func applyOK(t *testing.T, s *Spool, env ReceivedEnvelope, res *batch.Results) *Applied {
	t.Helper()
	if res == nil {
		res = &batch.Results{}
	}
	got, err := s.ApplyResults(ctxT(t), env, res, time.Now())
	if err != nil {
		t.Fatalf("apply seq %d: %v", env.Seq, err)
	}
	return got
}

func receivedOf(t *testing.T, s *Spool, channel string) *batch.Received {
	t.Helper()
	r, err := s.Received(ctxT(t), channel)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// sentRequest submits one request, seals it into a request envelope and
// publishes that, so a result for it and an acknowledgement of the
// envelope have something to change.
func sentRequest(t *testing.T, s *Spool, in *Intake) (reqID, envID string) {
	t.Helper()
	ctx := ctxT(t)
	acc, err := in.Submit(ctx, Request{Client: "c", Operation: "op", Params: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	env := sealNext(t, s, 10)
	if err := s.MarkPublished(ctx, []string{env.ID}, time.Now(), testBackoff); err != nil {
		t.Fatal(err)
	}
	return acc.ID, env.ID
}

// refusedLeavesNothing applies env, carrying a result for reqID and an
// acknowledgement of envID, expects it refused with want, and checks that
// nothing of it took effect: the request is still sent, the envelope
// unacknowledged and env not recorded.
func refusedLeavesNothing(t *testing.T, s *Spool, env ReceivedEnvelope, reqID, envID string, want error) {
	t.Helper()
	ctx := ctxT(t)
	res := &batch.Results{Acks: []string{envID},
		Results: []batch.Result{{RequestID: reqID, Status: batch.StatusDone, Rows: []map[string]any{}}}}
	_, err := s.ApplyResults(ctx, env, res, time.Now())
	if !errors.Is(err, want) {
		t.Fatalf("seq %d: %v, want %v", env.Seq, err, want)
	}
	for _, part := range []string{env.ID, fmt.Sprintf("seq %d ", env.Seq), fmt.Sprintf("%q", env.Channel)} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not name %s", err, part)
		}
	}
	if st, err := s.Get(ctx, reqID); err != nil || st.Status != batch.StatusSent {
		t.Fatalf("request after a refused envelope: %+v %v, want sent", st, err)
	}
	if e, err := s.EnvelopeByID(ctx, envID); err != nil || e.State != EnvPublished {
		t.Fatalf("request envelope after a refused envelope: %+v %v, want published", e, err)
	}
	var n int
	if err := s.r.QueryRow(`SELECT count(*) FROM received WHERE id = ?`, env.ID).Scan(&n); err != nil || n != 0 {
		t.Fatalf("refused envelope recorded: %d rows (%v)", n, err)
	}
}

func TestSpool_Received(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s := openSpool(t, path)
	c := newResultsChain("results")
	if got := receivedOf(t, s, "results"); !reflect.DeepEqual(got, &batch.Received{}) {
		t.Fatalf("nothing received: got %+v", got)
	}
	for _, seq := range []uint64{1, 2, 4, 7} {
		applyOK(t, s, c.env(seq), nil)
	}
	want := &batch.Received{Contiguous: 2, Through: 7, Missing: [][2]uint64{{3, 3}, {5, 6}}}
	if got := receivedOf(t, s, "results"); !reflect.DeepEqual(got, want) {
		t.Fatalf("gaps opened: got %+v, want %+v", got, want)
	}
	applyOK(t, s, c.env(3), nil)
	s.Close()
	s = openSpool(t, path)
	want = &batch.Received{Contiguous: 4, Through: 7, Missing: [][2]uint64{{5, 6}}}
	if got := receivedOf(t, s, "results"); !reflect.DeepEqual(got, want) {
		t.Fatalf("gap closed, after reopen: got %+v, want %+v", got, want)
	}
	applyOK(t, s, c.env(9), nil)
	applyOK(t, s, c.env(15), nil)
	// Filling the middle of a gap splits it.
	applyOK(t, s, c.env(12), nil)
	want = &batch.Received{Contiguous: 4, Through: 15, Missing: [][2]uint64{{5, 6}, {8, 8}, {10, 11}, {13, 14}}}
	if got := receivedOf(t, s, "results"); !reflect.DeepEqual(got, want) {
		t.Fatalf("gap split: got %+v, want %+v", got, want)
	}
	for _, seq := range []uint64{6, 5, 8, 10, 11, 14, 13} {
		applyOK(t, s, c.env(seq), nil)
	}
	if got := receivedOf(t, s, "results"); !reflect.DeepEqual(got, &batch.Received{Contiguous: 15, Through: 15}) {
		t.Fatalf("gaps filled: got %+v", got)
	}
	// Another channel is counted apart.
	applyOK(t, s, newResultsChain("bulk").env(3), nil)
	if got := receivedOf(t, s, "results"); got.Through != 15 || got.Contiguous != 15 {
		t.Fatalf("another channel moved this one: %+v", got)
	}
	if got := receivedOf(t, s, "bulk"); !reflect.DeepEqual(got, &batch.Received{Through: 3, Missing: [][2]uint64{{1, 2}}}) {
		t.Fatalf("other channel: %+v", got)
	}
}

func TestSpool_Received_manyGaps(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	c := newResultsChain("results")
	n := batch.MaxMissing + 6
	for i := range n + 1 {
		applyOK(t, s, c.env(uint64(2*i+1)), nil) // 1, 3, 5, …: every even seq is missing
	}
	got := receivedOf(t, s, "results")
	if len(got.Missing) != batch.MaxMissing || got.Contiguous != 1 || got.Through != uint64(2*n+1) {
		t.Fatalf("got contiguous %d, through %d, %d ranges", got.Contiguous, got.Through, len(got.Missing))
	}
	// The most recent gaps are listed, in increasing order.
	if first, last := got.Missing[0], got.Missing[len(got.Missing)-1]; first != [2]uint64{14, 14} || last != [2]uint64{uint64(2 * n), uint64(2 * n)} {
		t.Fatalf("ranges %v … %v, want the most recent gaps", first, last)
	}
	body, err := batch.Encode(batch.Requests{Requests: []batch.Request{}, Received: got})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := batch.DecodeRequests(body); err != nil {
		t.Fatalf("the report does not decode: %v", err)
	}
}

// TestSpool_Received_concurrent reads reports while envelopes arrive out
// of order: every report must be one a reader accepts, which a highest
// and gaps read apart would not always be.
func TestSpool_Received_concurrent(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	c := newResultsChain("results")
	ctx := ctxT(t)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		for i := uint64(0); i < 100; i++ {
			// 2, 1, 4, 3, …: a gap opens and closes at every step.
			for _, seq := range []uint64{2*i + 2, 2*i + 1} {
				if _, err := s.ApplyResults(ctx, c.env(seq), &batch.Results{}, time.Now()); err != nil {
					t.Errorf("apply seq %d: %v", seq, err)
					return
				}
			}
		}
	}()
	for reads := 0; ; reads++ {
		select {
		case <-done:
			wg.Wait()
			if got := receivedOf(t, s, "results"); !reflect.DeepEqual(got, &batch.Received{Contiguous: 200, Through: 200}) {
				t.Fatalf("at the end: %+v", got)
			}
			return
		default:
		}
		r, err := s.Received(ctx, "results")
		if err != nil {
			t.Fatal(err)
		}
		body, err := batch.Encode(batch.Requests{Requests: []batch.Request{}, Received: r})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := batch.DecodeRequests(body); err != nil {
			t.Fatalf("read %d: report %+v: %v", reads, r, err)
		}
	}
}

// TestSpool_Received_forgetsOldGaps: a gap more than the jump bound below
// the highest sequence number is no longer waited for (the intranet gave
// up on its envelope, or it expired), so the contiguous mark moves on; an
// envelope from it that still arrives is applied.
func TestSpool_Received_forgetsOldGaps(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	s.SetMaxSeqJump(10)
	in := runIntake(t, s, IntakeConfig{})
	c := newResultsChain("results")
	applyOK(t, s, c.env(1), nil)
	for seq := uint64(3); seq <= 12; seq++ {
		applyOK(t, s, c.env(seq), nil)
	}
	if got := receivedOf(t, s, "results"); got.Contiguous != 1 {
		t.Fatalf("seq 2 forgotten too early: %+v", got)
	}
	applyOK(t, s, c.env(13), nil) // 2 is more than 10 below 13: forgotten
	if got := receivedOf(t, s, "results"); !reflect.DeepEqual(got, &batch.Received{Contiguous: 13, Through: 13}) {
		t.Fatalf("got %+v", got)
	}
	reqID, envID := sentRequest(t, s, in)
	got := applyOK(t, s, c.env(2), &batch.Results{Acks: []string{envID},
		Results: []batch.Result{{RequestID: reqID, Status: batch.StatusDone, Rows: []map[string]any{}}}})
	if len(got.Final) != 1 || got.Acked != 1 {
		t.Fatalf("the late envelope was not applied: %+v", got)
	}
}

func TestSpool_ApplyResults_seqJump(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s := openSpool(t, path)
	s.SetMaxSeqJump(10)
	in := runIntake(t, s, IntakeConfig{})
	c := newResultsChain("results")
	reqID, envID := sentRequest(t, s, in)
	applyOK(t, s, c.env(1), nil)
	refusedLeavesNothing(t, s, c.env(12), reqID, envID, ErrSeqJump)
	applyOK(t, s, c.env(11), nil) // exactly the bound
	// The bound counts from the highest seq, across a restart.
	s.Close()
	s = openSpool(t, path)
	s.SetMaxSeqJump(10)
	refusedLeavesNothing(t, s, c.env(22), reqID, envID, ErrSeqJump)
	applyOK(t, s, c.env(21), nil)
	// The gap 2–10 is forgotten, 12–20 still awaited.
	if got := receivedOf(t, s, "results"); !reflect.DeepEqual(got, &batch.Received{Contiguous: 11, Through: 21, Missing: [][2]uint64{{12, 20}}}) {
		t.Fatalf("got %+v", got)
	}
	// The refused seq 12 is not taken: it applies once it fits.
	applyOK(t, s, c.env(12), nil)
}

// TestSpool_ApplyResults_defaultJump: a spool never told its bound (Open
// leaves it unset) enforces DefaultMaxSeqJump.
func TestSpool_ApplyResults_defaultJump(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	c := newResultsChain("results")
	if _, err := s.ApplyResults(ctxT(t), c.env(DefaultMaxSeqJump+1), &batch.Results{}, time.Now()); !errors.Is(err, ErrSeqJump) {
		t.Fatalf("seq %d on a new channel: %v, want ErrSeqJump", DefaultMaxSeqJump+1, err)
	}
	applyOK(t, s, c.env(DefaultMaxSeqJump), nil)
}

func TestSpool_ApplyResults_chainBroken(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	in := runIntake(t, s, IntakeConfig{})
	c := newResultsChain("results")
	reqID, envID := sentRequest(t, s, in)
	first := c.env(1)
	first.Prev[0] = 1
	refusedLeavesNothing(t, s, first, reqID, envID, ErrChainBroken)
	applyOK(t, s, c.env(1), nil)
	applyOK(t, s, c.env(2), nil)
	// Seq 3 naming another seq 2 than the one received.
	forked := c.env(3)
	forked.Prev = sha256.Sum256([]byte("another seq 2"))
	refusedLeavesNothing(t, s, forked, reqID, envID, ErrChainBroken)
	// Seq 5 arrives before 4; a seq 4 that 5 does not name is refused,
	// the one it names is applied.
	applyOK(t, s, c.env(5), nil)
	impostor := c.env(4)
	impostor.ID = "4444444444444444444444444444444a"
	impostor.HeaderHash = sha256.Sum256([]byte("impostor"))
	refusedLeavesNothing(t, s, impostor, reqID, envID, ErrChainBroken)
	applyOK(t, s, c.env(3), nil)
	applyOK(t, s, c.env(4), nil)
	if got := receivedOf(t, s, "results"); !reflect.DeepEqual(got, &batch.Received{Contiguous: 5, Through: 5}) {
		t.Fatalf("got %+v", got)
	}
	var prev, hash []byte
	if err := s.r.QueryRow(`SELECT prev, header_hash FROM received WHERE channel = 'results' AND seq = 4`).Scan(&prev, &hash); err != nil {
		t.Fatal(err)
	}
	if want := c.env(4); string(prev) != string(want.Prev[:]) || string(hash) != string(want.HeaderHash[:]) {
		t.Fatalf("seq 4 recorded with prev %x, hash %x", prev, hash)
	}
}

// TestSpool_ApplyResults_seqZero: channels start at 1.
func TestSpool_ApplyResults_seqZero(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	in := runIntake(t, s, IntakeConfig{})
	reqID, envID := sentRequest(t, s, in)
	refusedLeavesNothing(t, s, ReceivedEnvelope{ID: "00000000000000000000000000000000", Channel: "results"},
		reqID, envID, ErrBadSeq)
	if got := receivedOf(t, s, "results"); !reflect.DeepEqual(got, &batch.Received{}) {
		t.Fatalf("got %+v", got)
	}
}

// TestSpool_MigrateFrom0007 opens a spool left at schema version 7 that
// received result envelopes 1, 2, 3 and 5 (with no hashes, which version
// 7 did not keep), and checks that 0008 starts the channel at 5 with no
// gaps: no jump is counted from 0, the chain is not checked against the
// old rows, and a late seq 4 still applies while a replay is refused.
func TestSpool_MigrateFrom0007(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	ctx := ctxT(t)
	db := openOldSpool(t, path, 7)
	if _, err := db.ExecContext(ctx, `INSERT INTO received (id, channel, seq, applied) VALUES
		('00000000000000000000000000000001', 'results', 1, 1),
		('00000000000000000000000000000002', 'results', 2, 2),
		('00000000000000000000000000000003', 'results', 3, 3),
		('00000000000000000000000000000005', 'results', 5, 5)`); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s := openSpool(t, path)
	if v, want := schemaVersion(t, s), latestVersion(t); v != want || v < 8 {
		t.Fatalf("schema version %d, want %d", v, want)
	}
	if got := receivedOf(t, s, "results"); !reflect.DeepEqual(got, &batch.Received{Contiguous: 5, Through: 5}) {
		t.Fatalf("after migration: %+v", got)
	}
	s.SetMaxSeqJump(10)
	c := newResultsChain("results")
	if _, err := s.ApplyResults(ctx, c.env(16), &batch.Results{}, time.Now()); !errors.Is(err, ErrSeqJump) {
		t.Fatalf("seq 16 after a migrated 5, bound 10: %v, want ErrSeqJump", err)
	}
	// c's hashes are not those of the old envelopes 3 and 5, which the
	// spool does not know: no chain check against them.
	applyOK(t, s, c.env(6), nil)
	applyOK(t, s, c.env(4), nil)
	if _, err := s.ApplyResults(ctx, c.env(2), &batch.Results{}, time.Now()); !errors.Is(err, ErrReplay) {
		t.Fatalf("seq 2 again with another id: %v, want ErrReplay", err)
	}
	// The chain is checked against envelopes received since.
	forked := c.env(7)
	forked.Prev = sha256.Sum256([]byte("another seq 6"))
	if _, err := s.ApplyResults(ctx, forked, &batch.Results{}, time.Now()); !errors.Is(err, ErrChainBroken) {
		t.Fatalf("seq 7 after another seq 6: %v, want ErrChainBroken", err)
	}
	if got := receivedOf(t, s, "results"); !reflect.DeepEqual(got, &batch.Received{Contiguous: 6, Through: 6}) {
		t.Fatalf("at the end: %+v", got)
	}
	var n int
	if err := s.r.QueryRowContext(context.Background(),
		`SELECT count(*) FROM received WHERE header_hash IS NULL AND prev IS NULL`).Scan(&n); err != nil || n != 4 {
		t.Fatalf("%d rows without hashes (%v), want the 4 old ones", n, err)
	}
}
