package mediumtest

import (
	"bytes"
	"io"
	"testing"
)

// TestPattern_ReadAt: reads at any offset and of any length agree with
// one read of the whole, the end reports io.EOF, and another seed gives
// other bytes.
func TestPattern_ReadAt(t *testing.T) {
	p := Pattern{Seed: 7, N: 3*patternBlock + 123}
	whole := make([]byte, p.N)
	if n, err := p.ReadAt(whole, 0); n != len(whole) || err != nil {
		t.Fatalf("ReadAt of the whole: %d, %v", n, err)
	}
	for _, c := range []struct{ off, n int64 }{
		{0, 1}, {1, patternBlock}, {patternBlock - 1, 2}, {patternBlock, patternBlock},
		{5000, 2*patternBlock + 17}, {p.N - 10, 10},
	} {
		got := make([]byte, c.n)
		if n, err := p.ReadAt(got, c.off); int64(n) != c.n || err != nil {
			t.Fatalf("ReadAt(%d bytes at %d): %d, %v", c.n, c.off, n, err)
		}
		if !bytes.Equal(got, whole[c.off:c.off+c.n]) {
			t.Errorf("ReadAt(%d bytes at %d) differs from the whole", c.n, c.off)
		}
	}
	tail := make([]byte, 20)
	if n, err := p.ReadAt(tail, p.N-10); n != 10 || err != io.EOF || !bytes.Equal(tail[:10], whole[p.N-10:]) {
		t.Errorf("ReadAt past the end: %d, %v; want 10, io.EOF", n, err)
	}
	if n, err := p.ReadAt(tail, p.N); n != 0 || err != io.EOF {
		t.Errorf("ReadAt at the end: %d, %v; want 0, io.EOF", n, err)
	}
	other := make([]byte, 64)
	_, _ = Pattern{Seed: 8, N: 64}.ReadAt(other, 0)
	if bytes.Equal(other, whole[:64]) {
		t.Error("seeds 7 and 8 give the same bytes")
	}
}

// TestHeapWatch sees a buffer of LargeHeapGrowth held while it watches:
// the Large check can fail.
func TestHeapWatch(t *testing.T) {
	w := WatchHeap()
	buf := make([]byte, LargeHeapGrowth)
	Sum(t, bytes.NewReader(buf), int64(len(buf))) // keeps buf alive while the watch samples
	if grew := w.Stop(); grew < LargeHeapGrowth {
		t.Fatalf("heap grew by %d bytes while %d were held, want at least that", grew, len(buf))
	}
}
