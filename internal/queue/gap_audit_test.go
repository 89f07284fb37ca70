package queue

import (
	"bytes"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/audit/audittest"
	"github.com/ferrybridge/ferry/internal/batch"
)

// drainSpool drains s's audit outbox into a fresh audit log of zone dmz,
// checks that the log verifies, and returns its entries.
func drainSpool(t *testing.T, s *Spool) []audit.Entry {
	t.Helper()
	_, entries := audittest.Drain(t, "dmz", s.AuditSource())
	return entries
}

// gapEntries returns the gap entries of entries, in order, with the time
// and zone checked and cleared.
func gapEntries(t *testing.T, entries []audit.Entry, zone string, at time.Time) []audit.Entry {
	t.Helper()
	var out []audit.Entry
	for _, e := range entries {
		if e.Event != audit.EventGap {
			continue
		}
		if e.Zone != zone || !e.Time.Equal(at.UTC().Truncate(time.Millisecond)) {
			t.Errorf("gap entry of zone %q at %v, want %q at %v", e.Zone, e.Time, zone, at)
		}
		e.Zone, e.Time = "", time.Time{}
		out = append(out, e)
	}
	return out
}

// TestSpool_ApplyResults_gapAudit: the gaps of a results channel are in
// the DMZ's audit log, each staged with the envelope that opened, filled
// or abandoned it: seq 4 after 1 opens 2 to 3, a late 3 fills 3, and 8
// (with a jump bound of 5) opens 5 to 7 and gives up 2. A late 2, its gap
// abandoned, records nothing more, and an envelope refused records
// nothing at all.
func TestSpool_ApplyResults_gapAudit(t *testing.T) {
	s := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	s.SetMaxSeqJump(5)
	ctx := ctxT(t)
	h, _ := audit.NewHasher(bytes.Repeat([]byte{7}, audit.HMACKeySize))
	if err := s.EnableAudit(ctx, "dmz", h); err != nil {
		t.Fatal(err)
	}
	c := newResultsChain("results")
	at := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	for _, seq := range []uint64{1, 4, 3, 8, 2} {
		if _, err := s.ApplyResults(ctx, c.env(seq), &batch.Results{}, at); err != nil {
			t.Fatalf("apply seq %d: %v", seq, err)
		}
	}
	if _, err := s.ApplyResults(ctx, c.env(20), &batch.Results{}, at); !errors.Is(err, ErrSeqJump) {
		t.Fatalf("seq 20: %v, want ErrSeqJump", err)
	}
	if got := receivedOf(t, s, "results"); !reflect.DeepEqual(got, &batch.Received{Contiguous: 4, Through: 8, Missing: [][2]uint64{{5, 7}}}) {
		t.Fatalf("received %+v", got)
	}

	entries := drainSpool(t, s)
	got := gapEntries(t, entries, "dmz", at)
	want := []audit.Entry{
		{Event: audit.EventGap, Envelope: c.env(4).ID, Channel: "results", Seq: 4, Decision: audit.GapOpened, Count: 2,
			Detail: "sequence numbers 2 to 3 not received"},
		{Event: audit.EventGap, Envelope: c.env(3).ID, Channel: "results", Seq: 3, Decision: audit.GapFilled, Count: 1,
			Detail: "sequence number 3 no longer missing: received late"},
		{Event: audit.EventGap, Envelope: c.env(8).ID, Channel: "results", Seq: 8, Decision: audit.GapOpened, Count: 3,
			Detail: "sequence numbers 5 to 7 not received"},
		{Event: audit.EventGap, Envelope: c.env(8).ID, Channel: "results", Seq: 8, Decision: audit.GapAbandoned, Count: 1,
			Detail: "sequence number 2 no longer awaited: more than 5 behind the highest received, 8"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("gap entries\n%+v\nwant\n%+v", got, want)
	}
	// Each gap entry follows the envelope.opened entry of its envelope.
	for i, e := range entries {
		if e.Event == audit.EventGap && (i == 0 || entries[i-1].Envelope != e.Envelope ||
			(entries[i-1].Event != audit.EventEnvelopeOpened && entries[i-1].Event != audit.EventGap)) {
			t.Errorf("gap entry %d (%+v) does not follow its envelope's entries", i, e)
		}
	}
}
