package audit

import (
	"cmp"
	"database/sql"
	"fmt"
	"math"
	"slices"
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

// AbandonedGaps reads the ranges of the gaps a receiver gave up (rows of
// its DELETE ... RETURNING first, last), closes rows, and returns their
// GapAbandoned entries, lowest range first: seq is the envelope whose
// arrival moved the highest received past them, bound the receiver's
// jump bound.
func AbandonedGaps(rows *sql.Rows, channel string, seq, bound uint64) ([]Entry, error) {
	defer rows.Close()
	var gone [][2]uint64
	for rows.Next() {
		var first, last int64
		if err := rows.Scan(&first, &last); err != nil {
			return nil, err
		}
		gone = append(gone, [2]uint64{uint64(first), uint64(last)})
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(gone, func(a, b [2]uint64) int { return cmp.Compare(a[0], b[0]) })
	out := make([]Entry, len(gone))
	for i, r := range gone {
		out[i] = GapEntry(channel, seq, GapAbandoned, r[0], r[1], fmt.Sprintf("more than %d behind the highest received, %d", bound, seq))
	}
	return out, nil
}

// CountGaps counts the gap entries among entries with the given decision.
func CountGaps(entries []Entry, decision string) int {
	n := 0
	for _, e := range entries {
		if e.Event == EventGap && e.Decision == decision {
			n++
		}
	}
	return n
}
