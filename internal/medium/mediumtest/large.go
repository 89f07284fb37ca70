package mediumtest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"
)

// LargeSize is the size of the file the Large check sends through a
// medium: 256 MiB, four times the inbox's default size cap.
const LargeSize = 256 << 20

// LargeHeapGrowth bounds how much the Go heap may grow while the large
// file passes: a quarter of the file. A medium that holds the whole file
// in memory anywhere (publishing, comparing, claiming) exceeds it.
const LargeHeapGrowth = LargeSize / 4

// patternBlock is the unit a Pattern generates its bytes in.
const patternBlock = 64 << 10

// Pattern is Size pseudo-random bytes determined by Seed, readable at
// any offset without holding them: a source for files larger than
// memory should hold, and a way to check them after the trip.
type Pattern struct {
	Seed uint64
	N    int64
}

// Size returns the number of bytes in p.
func (p Pattern) Size() int64 { return p.N }

// ReadAt implements io.ReaderAt.
func (p Pattern) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, io.ErrUnexpectedEOF
	}
	if off >= p.N {
		return 0, io.EOF
	}
	n := len(b)
	if rest := p.N - off; int64(n) > rest {
		n = int(rest)
	}
	var scratch []byte
	for done := 0; done < n; {
		pos := off + int64(done)
		blk, in := pos/patternBlock, int(pos%patternBlock)
		m := min(patternBlock-in, n-done)
		if in == 0 && m == patternBlock {
			p.block(blk, b[done:done+m])
		} else {
			if scratch == nil {
				scratch = make([]byte, patternBlock)
			}
			p.block(blk, scratch)
			copy(b[done:done+m], scratch[in:])
		}
		done += m
	}
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

// block fills dst (patternBlock bytes) with block i.
func (p Pattern) block(i int64, dst []byte) {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[0:], p.Seed)
	binary.LittleEndian.PutUint64(seed[8:], uint64(i))
	_, _ = rand.NewChaCha8(seed).Read(dst)
}

// Sum returns the SHA-256 of r's first n bytes.
func Sum(t testing.TB, r io.Reader, n int64) [32]byte {
	t.Helper()
	h := sha256.New()
	got, err := io.CopyBuffer(h, io.LimitReader(r, n), make([]byte, 1<<20))
	if err != nil {
		t.Fatalf("hash: %v", err)
	}
	if got != n {
		t.Fatalf("hash: read %d bytes, want %d", got, n)
	}
	var s [32]byte
	h.Sum(s[:0])
	return s
}

// HeapWatch samples the size of the Go heap's objects until Stop and
// keeps the largest value.
type HeapWatch struct {
	base  uint64
	peak  uint64
	stop  chan struct{}
	wg    sync.WaitGroup
	mutex sync.Mutex
}

// heapMetric is live and not yet swept heap objects, in bytes: what a
// buffer of the whole file would add to.
const heapMetric = "/memory/classes/heap/objects:bytes"

// WatchHeap collects garbage, takes the heap's size as the base, and
// samples it every millisecond until Stop.
func WatchHeap() *HeapWatch {
	runtime.GC()
	w := &HeapWatch{stop: make(chan struct{})}
	w.base = heapObjects()
	w.peak = w.base
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
				if v := heapObjects(); v > w.peak {
					w.mutex.Lock()
					w.peak = v
					w.mutex.Unlock()
				}
			}
		}
	}()
	return w
}

// Stop ends the sampling and returns how far the heap grew above its base
// at its peak.
func (w *HeapWatch) Stop() uint64 {
	close(w.stop)
	w.wg.Wait()
	w.mutex.Lock()
	defer w.mutex.Unlock()
	if w.peak < w.base {
		return 0
	}
	return w.peak - w.base
}

func heapObjects() uint64 {
	s := []metrics.Sample{{Name: heapMetric}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// Large sends LargeSize bytes through the medium newPair builds with
// PublishFrom, publishes them again (the name exists: the second publish
// compares), claims them and reads them back from the inbox, and checks
// that the bytes arrive unchanged and that the heap never grew by
// LargeHeapGrowth or more on the way. newPair's inbox must allow files
// of LargeSize, and its drop must have room for one.
func Large(t *testing.T, newPair NewPairFunc) {
	t.Helper()
	pub, recv, in := newPair(t)
	if in.MaxFileSize() < LargeSize {
		t.Fatalf("the inbox's size cap is %d bytes; the suite sends %d: give newPair's inbox MaxFileSize >= mediumtest.LargeSize", in.MaxFileSize(), LargeSize)
	}
	src := Pattern{Seed: uint64(time.Now().UnixNano()), N: LargeSize}
	want := Sum(t, io.NewSectionReader(src, 0, src.N), src.N)

	heap := WatchHeap()
	start := time.Now()
	if err := pub.PublishFrom(context.Background(), "large.fxe", src, src.N); err != nil {
		heap.Stop()
		t.Fatalf("PublishFrom of %d bytes: %v", src.N, err)
	}
	published := time.Since(start)
	if err := pub.PublishFrom(context.Background(), "large.fxe", src, src.N); err != nil {
		heap.Stop()
		t.Fatalf("PublishFrom again of the same bytes: %v", err)
	}
	compared := time.Since(start) - published
	r := Start(t, recv)
	name := r.Next(t)
	claimed := time.Since(start) - published - compared
	grew := heap.Stop()
	if name != "large.fxe" {
		t.Fatalf("received %s, want large.fxe", name)
	}
	f, size, err := in.Open(name)
	if err != nil {
		t.Fatalf("Inbox.Open: %v", err)
	}
	defer f.Close()
	if size != src.N {
		t.Fatalf("the inbox holds %d bytes, want %d", size, src.N)
	}
	if Sum(t, f, size) != want {
		t.Fatal("the large file changed on the way")
	}
	t.Logf("%d MiB: publish %v, publish again (compare) %v, claim %v; heap grew by at most %.1f MiB",
		src.N>>20, published.Round(time.Millisecond), compared.Round(time.Millisecond), claimed.Round(time.Millisecond), float64(grew)/(1<<20))
	if grew >= LargeHeapGrowth {
		t.Errorf("the heap grew by %d MiB while %d MiB passed, want less than %d MiB: something holds the file in memory",
			grew>>20, src.N>>20, LargeHeapGrowth>>20)
	}
	if err := in.Remove(name); err != nil {
		t.Fatal(err)
	}
}
