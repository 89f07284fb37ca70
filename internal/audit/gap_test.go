package audit

import (
	"math"
	"testing"
)

func TestGapEntry(t *testing.T) {
	tests := []struct {
		name        string
		seq         uint64
		decision    string
		first, last uint64
		detail      string
		want        Entry
	}{
		{
			name: "opened", seq: 8, decision: GapOpened, first: 5, last: 7,
			want: Entry{Event: EventGap, Channel: "results", Seq: 8, Decision: GapOpened, Count: 3,
				Detail: "sequence numbers 5 to 7 not received"},
		},
		{
			name: "filled with detail", seq: 9, decision: GapFilled, first: 7, last: 7, detail: "withdrawn by the re-send at seq 9",
			want: Entry{Event: EventGap, Channel: "results", Seq: 9, Decision: GapFilled, Count: 1,
				Detail: "sequence number 7 no longer missing: withdrawn by the re-send at seq 9"},
		},
		{
			name: "abandoned", seq: 20, decision: GapAbandoned, first: 2, last: 3,
			want: Entry{Event: EventGap, Channel: "results", Seq: 20, Decision: GapAbandoned, Count: 2,
				Detail: "sequence numbers 2 to 3 no longer awaited"},
		},
		{
			name: "reversed range", seq: 4, decision: GapOpened, first: 3, last: 2,
			want: Entry{Event: EventGap, Channel: "results", Seq: 4, Decision: GapOpened, Count: 2,
				Detail: "sequence numbers 2 to 3 not received"},
		},
		{
			name: "whole range", seq: math.MaxUint64, decision: GapOpened, first: 0, last: math.MaxUint64,
			want: Entry{Event: EventGap, Channel: "results", Seq: math.MaxUint64, Decision: GapOpened, Count: math.MaxInt64,
				Detail: "sequence numbers 0 to 18446744073709551615 not received"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := GapEntry("results", tt.seq, tt.decision, tt.first, tt.last, tt.detail)
			if got != tt.want {
				t.Errorf("GapEntry\n got %+v\nwant %+v", got, tt.want)
			}
			got.Zone = "dmz"
			if _, err := got.Encode(); err != nil {
				t.Errorf("Encode: %v", err)
			}
		})
	}
}
