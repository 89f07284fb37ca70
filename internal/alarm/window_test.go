package alarm

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func TestWindow_Count(t *testing.T) {
	w := NewWindow(10 * time.Minute)
	if len(w.buckets) != 600 || w.width != int64(time.Second) {
		t.Fatalf("10m window: %d buckets of %v", len(w.buckets), time.Duration(w.width))
	}
	w.Add(t0, 3)
	w.Add(t0.Add(500*time.Millisecond), 1) // same bucket
	w.Add(t0.Add(5*time.Minute), 2)
	w.Add(t0, 0)  // nothing
	w.Add(t0, -5) // nothing

	tests := []struct {
		at   time.Duration
		want int
	}{
		{-time.Second, 0},                 // before every event
		{0, 4},                            // the first bucket
		{5 * time.Minute, 6},              // both
		{10*time.Minute - time.Second, 6}, // the first bucket is the oldest in the window
		{10 * time.Minute, 2},             // the first bucket has left the window
		{15*time.Minute - time.Second, 2}, // the second is about to leave
		{15 * time.Minute, 0},             // gone
		{48 * time.Hour, 0},               // long after
	}
	for _, tt := range tests {
		t.Run(tt.at.String(), func(t *testing.T) {
			if got := w.Count(t0.Add(tt.at)); got != tt.want {
				t.Fatalf("Count(t0+%v) = %d, want %d", tt.at, got, tt.want)
			}
		})
	}
}

func TestWindow_Reuse(t *testing.T) {
	w := NewWindow(time.Minute)
	w.Add(t0, 5)
	// The same slot of the ring, one window later: the old count goes.
	w.Add(t0.Add(time.Minute), 1)
	if got := w.Count(t0.Add(time.Minute)); got != 1 {
		t.Fatalf("Count = %d, want 1 (the old bucket reused)", got)
	}
	// An event older than the bucket in its slot is not counted.
	w.Add(t0, 7)
	if got := w.Count(t0.Add(time.Minute)); got != 1 {
		t.Fatalf("Count after a stale Add = %d, want 1", got)
	}
}

func TestWindow_Bounded(t *testing.T) {
	tests := []struct {
		d       time.Duration
		buckets int
		width   time.Duration
	}{
		{0, 1, time.Second},
		{time.Minute, 60, time.Second},
		{24 * time.Hour, 600, 144 * time.Second},
		{90 * time.Minute, 600, 9 * time.Second},
		{11 * time.Minute, 330, 2 * time.Second},
	}
	for _, tt := range tests {
		w := NewWindow(tt.d)
		if len(w.buckets) != tt.buckets || time.Duration(w.width) != tt.width {
			t.Errorf("NewWindow(%v): %d buckets of %v, want %d of %v",
				tt.d, len(w.buckets), time.Duration(w.width), tt.buckets, tt.width)
		}
	}
	w := NewWindow(24 * time.Hour)
	for i := range 24 * 60 {
		w.Add(t0.Add(time.Duration(i)*time.Minute), 1)
	}
	if got := w.Count(t0.Add(24*time.Hour - time.Minute)); got < 24*60-3 || got > 24*60 {
		t.Fatalf("24h window: Count = %d, want about %d", got, 24*60)
	}
}

func TestFrequency_Over(t *testing.T) {
	f := NewFrequency(3, 100)
	for range 3 {
		f.Add(t0, "client-b")
	}
	for range 2 {
		f.Add(t0.Add(time.Second), "client-a")
	}
	if got := f.Over(t0.Add(time.Second)); !slices.Equal(got, []string{"client-b"}) {
		t.Fatalf("Over = %v, want [client-b]", got)
	}
	// client-a's third event in the same minute.
	f.Add(t0.Add(59*time.Second), "client-a")
	if got := f.Over(t0.Add(59 * time.Second)); !slices.Equal(got, []string{"client-a", "client-b"}) {
		t.Fatalf("Over = %v, want both", got)
	}
	// The next minute still reports the last full minute.
	next := t0.Add(time.Minute)
	if got := f.Over(next); !slices.Equal(got, []string{"client-a", "client-b"}) {
		t.Fatalf("Over in the next minute = %v, want both", got)
	}
	// Two minutes on, it is forgotten.
	if got := f.Over(t0.Add(2 * time.Minute)); len(got) != 0 {
		t.Fatalf("Over two minutes later = %v, want none", got)
	}
	// Events split across two minutes are not added up.
	f.Add(t0.Add(3*time.Minute), "client-c")
	f.Add(t0.Add(3*time.Minute), "client-c")
	f.Add(t0.Add(4*time.Minute), "client-c")
	if got := f.Over(t0.Add(4 * time.Minute)); len(got) != 0 {
		t.Fatalf("Over = %v, want none (2 + 1 in two minutes)", got)
	}
}

func TestFrequency_Bounded(t *testing.T) {
	f := NewFrequency(2, 3)
	for _, k := range []string{"a", "b", "c"} {
		f.Add(t0, k)
	}
	// The map is full: new keys go to the overflow count.
	f.Add(t0, "d")
	if len(f.cur.counts) != 3 || f.cur.overflow != 1 {
		t.Fatalf("%d keys, overflow %d; want 3 and 1", len(f.cur.counts), f.cur.overflow)
	}
	// Keys already there are still counted.
	f.Add(t0, "a")
	if got := f.Over(t0); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("Over = %v, want [a]", got)
	}
	f.Add(t0, "e")
	if got := f.Over(t0); !slices.Equal(got, []string{OverflowKey, "a"}) {
		t.Fatalf("Over = %v, want [%s a]", got, OverflowKey)
	}
	// A new minute starts with room again.
	f.Add(t0.Add(time.Minute), "d")
	if _, ok := f.cur.counts["d"]; !ok {
		t.Fatal("the new minute did not count a new key")
	}
}

func TestFrequency_AtMostTen(t *testing.T) {
	f := NewFrequency(1, 0)
	if f.maxKeys != DefaultMaxKeys {
		t.Fatalf("maxKeys = %d, want DefaultMaxKeys", f.maxKeys)
	}
	for i := range 20 {
		for range i + 1 {
			f.Add(t0, fmt.Sprintf("k%02d", i))
		}
	}
	got := f.Over(t0)
	var want []string
	for i := 10; i < 20; i++ {
		want = append(want, fmt.Sprintf("k%02d", i))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Over = %v, want the 10 busiest sorted: %v", got, want)
	}
}

func TestFrequency_ClockBack(t *testing.T) {
	f := NewFrequency(2, 10)
	f.Add(t0.Add(time.Minute), "a")
	f.Add(t0, "a") // the clock went back: counted in the current minute
	if got := f.Over(t0.Add(time.Minute)); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("Over = %v, want [a]", got)
	}
}
