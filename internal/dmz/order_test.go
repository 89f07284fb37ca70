package dmz

import (
	"crypto/sha256"
	"encoding/json"
	"testing"

	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/envelope"
)

// resultsChain seals results envelopes whose prev names the header hash
// of the envelope sealed before them, as the intranet's sender does.
type resultsChain struct {
	e      *env
	hashes map[uint64][32]byte // header hash of each seq sealed
}

// seal seals body as envelope seq of the results channel, with prev the
// header hash of seq-1 as sealed by this chain (zero for seq 1), and
// remembers its header hash for seq+1.
func (c *resultsChain) seal(t *testing.T, seq uint64, body batch.Results) (string, []byte) {
	t.Helper()
	h := c.e.headerSeq(seq)
	h.Prev = c.hashes[seq-1]
	name, data, hash := c.sealHeader(t, h, body)
	c.hashes[seq] = hash
	return name, data
}

// sealHeader seals body under h and returns the file name, the bytes and
// the header hash.
func (c *resultsChain) sealHeader(t *testing.T, h envelope.Header, body batch.Results) (string, []byte, [32]byte) {
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	s, err := envelope.Seal(h, data, c.e.intra.Signer, c.e.dmz.Recipient)
	if err != nil {
		t.Fatal(err)
	}
	return envelope.FileName(&s.Header), s.Data, s.HeaderHash
}

// send seals body as envelope seq, as seal does, and drops it into the
// result medium.
func (c *resultsChain) send(t *testing.T, seq uint64, body batch.Results) {
	t.Helper()
	name, data := c.seal(t, seq, body)
	c.e.drop(t, name, data)
}

// doneResult is a results body answering request id.
func doneResult(id string) batch.Results {
	return batch.Results{Acks: []string{}, Results: []batch.Result{{RequestID: id, Status: batch.StatusDone, Rows: []map[string]any{}}}}
}

// TestAgent_ResultsOrder drops results envelopes that are signed by the
// intranet and well formed but out of the channel's order: one too far
// ahead of the highest received (seq_jump, also after a restart), one
// naming another envelope as the one before it, and one that the
// envelope after it does not name (chain_broken). Each is quarantined
// with its reason and its result does not apply; the legitimate
// envelopes around them still do.
func TestAgent_ResultsOrder(t *testing.T) {
	e := startEnvWith(t, envOptions{extra: "max_seq_jump: 10\n"})
	ids := make([]string, 6)
	for i := range ids {
		ids[i] = e.submit(t)
	}
	e.takeRequests(t, len(ids))
	for _, id := range ids {
		e.waitStatus(t, id, batch.StatusSent)
	}
	c := &resultsChain{e: e, hashes: map[uint64][32]byte{}}
	drop := func(name string, data []byte) string { e.drop(t, name, data); return name }

	c.send(t, 1, doneResult(ids[0]))
	e.waitStatus(t, ids[0], batch.StatusDone)

	// 12 is 11 above the highest, 1: one more than the bound.
	jump := e.headerSeq(12)
	jname, jdata, _ := c.sealHeader(t, jump, doneResult(ids[1]))
	e.waitReason(t, drop(jname, jdata), ReasonSeqJump)

	// Seq 2 naming another seq 1 than the one received.
	forked := e.headerSeq(2)
	forked.Prev = sha256.Sum256([]byte("another seq 1"))
	fname, fdata, _ := c.sealHeader(t, forked, doneResult(ids[1]))
	e.waitReason(t, drop(fname, fdata), ReasonChain)

	// The real seq 2 still applies, and so does the request the refused
	// ones tried to answer.
	c.send(t, 2, doneResult(ids[1]))
	e.waitStatus(t, ids[1], batch.StatusDone)

	// Seq 4 arrives before 3; a seq 3 that 4 does not name is refused,
	// the one it names applies.
	n3, d3 := c.seal(t, 3, doneResult(ids[2]))
	c.send(t, 4, doneResult(ids[3]))
	e.waitStatus(t, ids[3], batch.StatusDone)
	impostor := e.headerSeq(3)
	impostor.Prev = c.hashes[2]
	iname, idata, _ := c.sealHeader(t, impostor, doneResult(ids[2]))
	e.waitReason(t, drop(iname, idata), ReasonChain)
	e.drop(t, n3, d3)
	e.waitStatus(t, ids[2], batch.StatusDone)

	// After a restart the bound still counts from the highest, 4.
	e.restart(t)
	jname, jdata, _ = c.sealHeader(t, e.headerSeq(15), doneResult(ids[4]))
	e.waitReason(t, drop(jname, jdata), ReasonSeqJump)
	for s := uint64(5); s < 14; s++ {
		c.hashes[s] = sha256.Sum256([]byte{byte(s)}) // lost on the medium
	}
	c.send(t, 14, doneResult(ids[4]))
	e.waitStatus(t, ids[4], batch.StatusDone)
	// The chain is checked across the restart too.
	forked = e.headerSeq(15)
	forked.Prev = sha256.Sum256([]byte("another seq 14"))
	fname, fdata, _ = c.sealHeader(t, forked, doneResult(ids[5]))
	e.waitReason(t, drop(fname, fdata), ReasonChain)
	c.send(t, 15, doneResult(ids[5]))
	e.waitStatus(t, ids[5], batch.StatusDone)

	// What the spool reports of the channel: 5–13 missing.
	r, err := e.agent.spool.Received(t.Context(), ResultsChannel)
	if err != nil {
		t.Fatal(err)
	}
	if r.Through != 15 || r.Contiguous != 4 || len(r.Missing) != 1 || r.Missing[0] != [2]uint64{5, 13} {
		t.Fatalf("received report %+v", r)
	}
}
