package audit

import (
	"fmt"
	"math"
)

// Decisions of an [EventGap] entry: what became of a range of sequence
// numbers of a channel that have not arrived.
const (
	// GapOpened: an envelope arrived past sequence numbers that have not
	// arrived; the receiver waits for them.
	GapOpened = "opened"
	// GapFilled: a missing sequence number arrived late, or was withdrawn
	// by a re-send of its requests; the receiver no longer waits for it.
	GapFilled = "filled"
	// GapAbandoned: the gap fell more than the receiver's jump bound
	// behind the highest sequence number received and is no longer
	// awaited: its envelopes are given up as lost.
	GapAbandoned = "abandoned"
)

// GapEntry returns the [EventGap] entry recording that decision (one of
// the Gap* constants) was taken about sequence numbers first to last of
// channel, because of the envelope at seq (the one that opened, filled
// or, by moving the highest on, abandoned the gap). Count is how many
// sequence numbers the range holds; Detail says which they are and what
// became of them, followed by detail when it is not empty. The caller
// sets the time and, if it wants, the envelope id.
func GapEntry(channel string, seq uint64, decision string, first, last uint64, detail string) Entry {
	if last < first {
		first, last = last, first
	}
	var what string
	switch decision {
	case GapOpened:
		what = "not received"
	case GapFilled:
		what = "no longer missing"
	case GapAbandoned:
		what = "no longer awaited"
	default:
		what = decision
	}
	text := fmt.Sprintf("sequence numbers %d to %d %s", first, last, what)
	if first == last {
		text = fmt.Sprintf("sequence number %d %s", first, what)
	}
	if detail != "" {
		text += ": " + detail
	}
	count := int64(math.MaxInt64)
	if n := last - first; n < math.MaxInt64 {
		count = int64(n) + 1
	}
	return Entry{Event: EventGap, Channel: channel, Seq: seq, Decision: decision, Count: count, Detail: text}
}
