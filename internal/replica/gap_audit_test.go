package replica

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/batch"
)

// TestDB_Apply_gapAudit: the gaps of a request channel are in the
// intranet's audit log, each staged with the envelope that opened,
// filled or abandoned it: seq 4 after 1 opens 2 to 3, a late 3 fills 3,
// 8 (with a jump bound of 5) opens 5 to 7 and gives up 2, and 9, a
// re-send replacing 6, fills 6 by withdrawing it. A late 2, its gap
// abandoned, and a re-send replacing an envelope that arrived record no
// gap; an envelope refused records nothing at all.
func TestDB_Apply_gapAudit(t *testing.T) {
	ctx := context.Background()
	db, _ := newTestReplica(t)
	db.SetMaxSeqJump(5)
	clock := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	db.now = func() time.Time { return clock }
	h, _ := audit.NewHasher(bytes.Repeat([]byte{3}, audit.HMACKeySize))
	if err := db.EnableAudit(ctx, "intranet", h); err != nil {
		t.Fatal(err)
	}
	c := newChain(t)
	envs := map[uint64]Envelope{}
	for _, s := range []uint64{1, 4, 3, 8, 9, 2, 10} {
		e := c.env(s)
		switch s {
		case 9:
			e.Replaces = 6
		case 10:
			e.Replaces = 8 // arrived: nothing withdrawn
		}
		envs[s] = e
		apply(t, db, e)
	}
	if _, err := db.Apply(ctx, c.env(30), nil, testChecker); !errors.Is(err, ErrSeqJump) {
		t.Fatalf("seq 30: %v, want ErrSeqJump", err)
	}
	if got := received(t, db); !reflect.DeepEqual(got, &batch.Received{Contiguous: 4, Through: 10, Missing: [][2]uint64{{5, 5}, {7, 7}}}) {
		t.Fatalf("received %+v", got)
	}

	entries := drainTo(t, db)
	var got []audit.Entry
	for i, e := range entries {
		if e.Event != audit.EventGap {
			continue
		}
		if e.Zone != "intranet" || !e.Time.Equal(clock) {
			t.Errorf("gap entry of zone %q at %v", e.Zone, e.Time)
		}
		if i == 0 || entries[i-1].Envelope != e.Envelope ||
			(entries[i-1].Event != audit.EventEnvelopeOpened && entries[i-1].Event != audit.EventGap) {
			t.Errorf("gap entry %d (%+v) does not follow its envelope's entries", i, e)
		}
		e.Zone, e.Time = "", time.Time{}
		got = append(got, e)
	}
	want := []audit.Entry{
		{Event: audit.EventGap, Envelope: envs[4].ID, Channel: "requests", Seq: 4, Decision: audit.GapOpened, Count: 2,
			Detail: "sequence numbers 2 to 3 not received"},
		{Event: audit.EventGap, Envelope: envs[3].ID, Channel: "requests", Seq: 3, Decision: audit.GapFilled, Count: 1,
			Detail: "sequence number 3 no longer missing: received late"},
		{Event: audit.EventGap, Envelope: envs[8].ID, Channel: "requests", Seq: 8, Decision: audit.GapOpened, Count: 3,
			Detail: "sequence numbers 5 to 7 not received"},
		{Event: audit.EventGap, Envelope: envs[8].ID, Channel: "requests", Seq: 8, Decision: audit.GapAbandoned, Count: 1,
			Detail: "sequence number 2 no longer awaited: more than 5 behind the highest received, 8"},
		{Event: audit.EventGap, Envelope: envs[9].ID, Channel: "requests", Seq: 9, Decision: audit.GapFilled, Count: 1,
			Detail: "sequence number 6 no longer missing: withdrawn by the re-send at seq 9"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("gap entries\n%+v\nwant\n%+v", got, want)
	}
}
