package alarm

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// maxBuckets bounds the buckets of a [Window]: a window of up to 10m has
// one bucket a second; a longer one has wider buckets.
const maxBuckets = 600

// Window counts events within a sliding window of time, for the burst
// alarms. It keeps a fixed ring of buckets (at most 600; one a second for
// a window of up to 10 minutes, wider for a longer one), so its memory is
// bounded whatever the rate. A count covers the bucket of now and the
// whole buckets before it within the window: an event is counted for
// between d and d minus one bucket width. Events older than that, or
// later than the time asked about, are not counted. It is safe for
// concurrent use.
type Window struct {
	width int64 // bucket width in nanoseconds, a whole number of seconds

	mu      sync.Mutex
	buckets []bucket
}

type bucket struct {
	idx   int64 // the bucket's time / width; 0 with n == 0 means empty
	count int
}

// NewWindow returns a Window over d (at least one second).
func NewWindow(d time.Duration) *Window {
	d = max(d, time.Second)
	width := (d + maxBuckets - 1) / maxBuckets
	// Round the width up to a whole second.
	width = (width + time.Second - 1) / time.Second * time.Second
	n := int((d + width - 1) / width)
	return &Window{width: int64(width), buckets: make([]bucket, n)}
}

// index returns the bucket index of t and its slot in the ring.
func (w *Window) index(t time.Time) (idx int64, slot int) {
	idx = floorDiv(t.UnixNano(), w.width)
	n := int64(len(w.buckets))
	return idx, int(((idx % n) + n) % n)
}

// Add counts n events at t. Events older than the window the Window has
// seen are ignored; n <= 0 counts nothing.
func (w *Window) Add(t time.Time, n int) {
	if n <= 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	idx, slot := w.index(t)
	b := &w.buckets[slot]
	switch {
	case b.count == 0 || idx > b.idx:
		b.idx, b.count = idx, n
	case idx == b.idx:
		b.count += n
	}
}

// Count returns the events counted within the window ending at now.
func (w *Window) Count(now time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	idx, _ := w.index(now)
	oldest := idx - int64(len(w.buckets)) + 1
	total := 0
	for _, b := range w.buckets {
		if b.count > 0 && b.idx >= oldest && b.idx <= idx {
			total += b.count
		}
	}
	return total
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// OverflowKey stands, in [Frequency.Over], for the keys a Frequency could
// not count one by one because it already held its maximum of keys that
// minute: it is listed when they made at least limit requests together.
const OverflowKey = "(other keys)"

// maxOver is the most keys [Frequency.Over] returns.
const maxOver = 10

// DefaultMaxKeys is the bound of a [Frequency] made with maxKeys <= 0.
const DefaultMaxKeys = 10000

// Frequency counts events per key within each minute, for the
// high-frequency alarm. A key is a client's name or an already keyed hash
// of a subject: a Frequency never sees personal data, and callers must not
// give it any.
//
// Its memory is bounded: it keeps the counts of the current minute and of
// the minute before, each for at most maxKeys keys. Once a minute holds
// maxKeys keys, events of new keys in that minute are added to one
// overflow count instead, which [Frequency.Over] reports as [OverflowKey]
// when it reaches the limit (a flood of distinct keys is itself worth an
// alarm). Keys already counted go on being counted. It is safe for
// concurrent use.
type Frequency struct {
	limit   int
	maxKeys int

	mu        sync.Mutex
	cur, prev minute
}

type minute struct {
	at       int64 // Unix minute
	counts   map[string]int
	overflow int
}

// NewFrequency returns a Frequency that reports keys with limit or more
// events a minute (limit < 1 counts as 1), keeping at most maxKeys keys a
// minute (DefaultMaxKeys if maxKeys <= 0).
func NewFrequency(limit int, maxKeys int) *Frequency {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	return &Frequency{limit: max(limit, 1), maxKeys: maxKeys}
}

// roll moves the minutes on to now's minute; f.mu is held. A clock that
// went back leaves them as they are.
func (f *Frequency) roll(now time.Time) {
	m := floorDiv(now.Unix(), 60)
	switch {
	case f.cur.counts != nil && m <= f.cur.at:
		return
	case f.cur.counts != nil && m == f.cur.at+1:
		f.prev = f.cur
	default:
		f.prev = minute{}
	}
	f.cur = minute{at: m, counts: map[string]int{}}
}

// Add counts one event of key at now.
func (f *Frequency) Add(now time.Time, key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.roll(now)
	if _, ok := f.cur.counts[key]; !ok && len(f.cur.counts) >= f.maxKeys {
		f.cur.overflow++
		return
	}
	f.cur.counts[key]++
}

// Over returns the keys with limit or more events in the current minute
// of now or in the full minute before it, sorted; at most 10, the busiest
// first chosen. [OverflowKey] is among them when the overflow count of
// either minute reached the limit.
func (f *Frequency) Over(now time.Time) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.roll(now)
	busiest := map[string]int{}
	for _, m := range []minute{f.prev, f.cur} {
		for k, n := range m.counts {
			if n >= f.limit && n > busiest[k] {
				busiest[k] = n
			}
		}
		if m.overflow >= f.limit && m.overflow > busiest[OverflowKey] {
			busiest[OverflowKey] = m.overflow
		}
	}
	keys := make([]string, 0, len(busiest))
	for k := range busiest {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		return cmp.Or(cmp.Compare(busiest[b], busiest[a]), cmp.Compare(a, b))
	})
	keys = keys[:min(len(keys), maxOver)]
	slices.Sort(keys)
	return keys
}
