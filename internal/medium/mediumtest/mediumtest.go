// Package mediumtest is the conformance suite every transfer medium runs:
// the directory medium, and later SFTP and FTPS.
//
// # Use
//
// A medium's test calls [Run] with a function that builds a fresh medium
// for each subtest: a Publisher and a Receiver over the same drop location,
// and the Inbox the Receiver claims into.
//
//	func TestConformance(t *testing.T) {
//		mediumtest.Run(t, func(t *testing.T) (medium.Publisher, medium.Receiver, *medium.Inbox) { ... })
//	}
//
// # What it checks
//
// Round trips keep bytes exact; publishing is idempotent for the same bytes,
// also when publishes of them race, and fails with [medium.ErrExists] for
// others; many files arrive exactly
// once and in name order when they were all there before Run; Run and
// Publish return when ctx ends; Run claims at most one file ahead of its
// consumer; and a second Run over the same inbox (a restart) sends the
// inbox leftovers first and loses nothing.
//
// [Large] sends a file of [LargeSize] (256 MiB) and watches the heap. It
// takes seconds, so a medium runs it once for each way it moves files,
// not for every variant of its configuration.
//
// Deadlines are generous (see [Deadline]) because polling media are slow;
// no check depends on how fast a medium is, only on what it eventually does.
package mediumtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/medium"
)

// Deadline bounds every wait in the suite.
const Deadline = 30 * time.Second

// Logger logs at debug level to the test's output, so that -v shows what
// a medium saw and did.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// NewPairFunc builds a fresh medium for one subtest.
type NewPairFunc func(t *testing.T) (medium.Publisher, medium.Receiver, *medium.Inbox)

// Run runs the conformance suite against the media newPair builds. Run
// relies on Receiver.Run being callable again on the same Receiver after
// an earlier call returned; that call plays a restart.
func Run(t *testing.T, newPair func(t *testing.T) (medium.Publisher, medium.Receiver, *medium.Inbox)) {
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, newPair) })
	t.Run("PublishIdempotent", func(t *testing.T) { testPublishIdempotent(t, newPair) })
	t.Run("PublishRaceSameBytes", func(t *testing.T) { testPublishRaceSameBytes(t, newPair) })
	t.Run("PublishInvalidName", func(t *testing.T) { testPublishInvalidName(t, newPair) })
	t.Run("PublishCanceled", func(t *testing.T) { testPublishCanceled(t, newPair) })
	t.Run("PublishShortSource", func(t *testing.T) { testPublishShortSource(t, newPair) })
	t.Run("ManyExactlyOnce", func(t *testing.T) { testManyExactlyOnce(t, newPair) })
	t.Run("CancelReturns", func(t *testing.T) { testCancelReturns(t, newPair) })
	t.Run("SlowConsumer", func(t *testing.T) { testSlowConsumer(t, newPair) })
	t.Run("Restart", func(t *testing.T) { testRestart(t, newPair) })
}

// RandomBytes returns n random bytes.
func RandomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// Running is a Receiver.Run in its own goroutine with its output channel.
type Running struct {
	Out    chan string
	cancel context.CancelFunc
	done   chan error
}

// Start runs recv with an unbuffered output channel until Stop or the end
// of the test.
func Start(t testing.TB, recv medium.Receiver) *Running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{Out: make(chan string), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- recv.Run(ctx, r.Out) }()
	t.Cleanup(func() { r.Stop(t) })
	return r
}

// Stop cancels Run and checks that it returns ctx.Err() within Deadline.
// Stopping twice is fine.
func (r *Running) Stop(t testing.TB) {
	t.Helper()
	if r.done == nil {
		return
	}
	r.cancel()
	select {
	case err := <-r.done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	case <-time.After(Deadline):
		t.Fatalf("Run did not return within %v of cancel", Deadline)
	}
	r.done = nil
}

// Next returns the next name Run sends, failing the test after Deadline.
func (r *Running) Next(t testing.TB) string {
	t.Helper()
	select {
	case name := <-r.Out:
		return name
	case err := <-r.done:
		t.Fatalf("Run returned early: %v", err)
	case <-time.After(Deadline):
		t.Fatalf("no file received within %v", Deadline)
	}
	return ""
}

// Quiet fails the test if Run sends a name within d. Use it only to look
// for extra deliveries after everything expected arrived.
func (r *Running) Quiet(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case name := <-r.Out:
		t.Fatalf("unexpected delivery of %s", name)
	case <-time.After(d):
	}
}

// Consume reads want names from r, reads each from in and removes it, and
// returns the names in delivery order and their contents. It fails on a
// read error or a name delivered twice.
func Consume(t testing.TB, r *Running, in *medium.Inbox, want int) ([]string, map[string][]byte) {
	t.Helper()
	var order []string
	got := map[string][]byte{}
	for len(order) < want {
		name := r.Next(t)
		if _, dup := got[name]; dup {
			t.Fatalf("%s delivered twice", name)
		}
		data, err := in.Read(name)
		if err != nil {
			t.Fatalf("Inbox.Read(%s): %v", name, err)
		}
		if err := in.Remove(name); err != nil {
			t.Fatalf("Inbox.Remove(%s): %v", name, err)
		}
		order = append(order, name)
		got[name] = data
	}
	return order, got
}

// DropNames lists a drop directory through the local directory behind it,
// as the server's side sees it.
func DropNames(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// Restarter is a real server a remote medium's test runs: it can be
// stopped (its sessions killed) and started again on the same address.
type Restarter interface {
	Stop(t testing.TB)
	Restart(t testing.TB)
}

// ServerRestart checks that a remote medium survives its server dying
// during an upload. With r running a receiver into in, it publishes
// size random bytes (size should take the upload a while) and stops srv
// once the temporary upload shows in drop, the local directory behind
// the drop: the publish fails and leaves no final name. After the
// restart, the same publish succeeds, r delivers the bytes exactly once,
// and drop ends empty.
func ServerRestart(t *testing.T, srv Restarter, p medium.Publisher, r *Running, in *medium.Inbox, drop string, size int) {
	t.Helper()
	mustPublish(t, p, "a.fxe", []byte("before"))
	Consume(t, r, in, 1)

	big := RandomBytes(t, size)
	errc := make(chan error, 1)
	go func() { errc <- p.Publish(context.Background(), "big.fxe", big) }()
	deadline := time.Now().Add(Deadline)
	for !slices.ContainsFunc(DropNames(t, drop), func(n string) bool { return strings.HasPrefix(n, ".big.fxe.tmp-") }) {
		if time.Now().After(deadline) {
			t.Fatal("the upload never started")
		}
		time.Sleep(time.Millisecond)
	}
	srv.Stop(t)
	if err := <-errc; err == nil {
		t.Fatal("Publish succeeded although the server died during the upload")
	}
	if slices.Contains(DropNames(t, drop), "big.fxe") {
		t.Fatal("a final name appeared for the interrupted upload")
	}
	srv.Restart(t)
	if err := p.Publish(context.Background(), "big.fxe", big); err != nil {
		t.Fatalf("Publish after the restart: %v", err)
	}
	_, got := Consume(t, r, in, 1)
	if !bytes.Equal(got["big.fxe"], big) {
		t.Fatal("big.fxe lost or changed across the restart")
	}
	r.Quiet(t, 200*time.Millisecond)
	if names := DropNames(t, drop); len(names) != 0 {
		t.Errorf("drop holds %v after everything was received, want nothing", names)
	}
}

// ExistsOtherBytes checks Publish against a file planted in drop (the
// local directory behind p's drop) by someone else: other bytes under the
// name fail with [medium.ErrExists] and leave the file untouched, the
// same bytes succeed, a directory under the name is other bytes too, and
// no temporary file is left behind.
func ExistsOtherBytes(t *testing.T, p medium.Publisher, drop string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(drop, "x.fxe"), []byte("planted"), 0o666); err != nil {
		t.Fatal(err)
	}
	for _, data := range [][]byte{[]byte("mine!!!"), []byte("plante"), []byte("planted+")} {
		if err := p.Publish(context.Background(), "x.fxe", data); !errors.Is(err, medium.ErrExists) {
			t.Errorf("Publish(%q) over other bytes: %v, want ErrExists", data, err)
		}
	}
	if err := p.Publish(context.Background(), "x.fxe", []byte("planted")); err != nil {
		t.Errorf("Publish of the same bytes: %v", err)
	}
	got, _ := os.ReadFile(filepath.Join(drop, "x.fxe"))
	if string(got) != "planted" {
		t.Errorf("file now holds %q, want it untouched", got)
	}
	if err := os.Mkdir(filepath.Join(drop, "d.fxe"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(context.Background(), "d.fxe", nil); !errors.Is(err, medium.ErrExists) {
		t.Errorf("Publish over a directory: %v, want ErrExists", err)
	}
	if names := DropNames(t, drop); !slices.Equal(names, []string{"d.fxe", "x.fxe"}) {
		t.Errorf("drop holds %v, want no temporary files left", names)
	}
}

// Janitor checks a remote medium's janitor with TempMaxAge of an hour:
// of the files it plants in drop (the local directory behind the drop),
// a temporary file older than an hour is removed, while a fresh one and
// an old file of another pattern stay. Exactly one of p and r is the side
// under test: the sweep runs at a publish, or at r's first scan.
func Janitor(t *testing.T, drop string, p medium.Publisher, r medium.Receiver) {
	t.Helper()
	old := ".a.fxe.tmp-0123456789abcdef"
	fresh := ".b.fxe.tmp-fedcba9876543210"
	foreign := ".c.fxe.part" // not the temporary pattern: never touched
	for _, n := range []string{old, fresh, foreign} {
		if err := os.WriteFile(filepath.Join(drop, n), []byte("partial"), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-2 * time.Hour)
	for _, n := range []string{old, foreign} {
		if err := os.Chtimes(filepath.Join(drop, n), past, past); err != nil {
			t.Fatal(err)
		}
	}
	if p != nil {
		mustPublish(t, p, "z.fxe", []byte("z"))
	} else {
		run := Start(t, r)
		// The first scan sweeps; under load it may take a while.
		deadline := time.Now().Add(Deadline)
		for slices.Contains(DropNames(t, drop), old) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		run.Quiet(t, 100*time.Millisecond)
	}
	names := DropNames(t, drop)
	if slices.Contains(names, old) {
		t.Errorf("stale temporary file %s not removed: %v", old, names)
	}
	if !slices.Contains(names, fresh) || !slices.Contains(names, foreign) {
		t.Errorf("drop holds %v, want %s and %s kept", names, fresh, foreign)
	}
}

func mustPublish(t testing.TB, pub medium.Publisher, name string, data []byte) {
	t.Helper()
	if err := pub.Publish(context.Background(), name, data); err != nil {
		t.Fatalf("Publish(%s): %v", name, err)
	}
}

func testRoundTrip(t *testing.T, newPair NewPairFunc) {
	pub, recv, in := newPair(t)
	want := map[string][]byte{
		"a-small.fxe": RandomBytes(t, 100),
		"b-big.fxe":   RandomBytes(t, 3<<20+17),
		"c-empty.fxe": {},
	}
	for name, data := range want {
		mustPublish(t, pub, name, data)
	}
	r := Start(t, recv)
	_, got := Consume(t, r, in, len(want))
	for name, data := range want {
		if !bytes.Equal(got[name], data) {
			t.Errorf("%s: received %d bytes that differ from the %d published", name, len(got[name]), len(data))
		}
	}
	r.Quiet(t, 200*time.Millisecond)
}

func testPublishIdempotent(t *testing.T, newPair NewPairFunc) {
	pub, recv, in := newPair(t)
	data := RandomBytes(t, 4096)
	mustPublish(t, pub, "same.fxe", data)
	if err := pub.Publish(context.Background(), "same.fxe", slices.Clone(data)); err != nil {
		t.Fatalf("second Publish with the same bytes: %v, want nil", err)
	}
	other := slices.Clone(data)
	other[100] ^= 1
	if err := pub.Publish(context.Background(), "same.fxe", other); !errors.Is(err, medium.ErrExists) {
		t.Fatalf("Publish with other bytes of the same length: %v, want ErrExists", err)
	}
	if err := pub.Publish(context.Background(), "same.fxe", data[:100]); !errors.Is(err, medium.ErrExists) {
		t.Fatalf("Publish with a prefix: %v, want ErrExists", err)
	}
	if err := pub.Publish(context.Background(), "same.fxe", append(slices.Clone(data), 0)); !errors.Is(err, medium.ErrExists) {
		t.Fatalf("Publish with one byte more: %v, want ErrExists", err)
	}
	r := Start(t, recv)
	_, got := Consume(t, r, in, 1)
	if !bytes.Equal(got["same.fxe"], data) {
		t.Fatal("the file received is not the first one published")
	}
	r.Quiet(t, 200*time.Millisecond)
}

func testPublishRaceSameBytes(t *testing.T, newPair NewPairFunc) {
	pub, recv, in := newPair(t)
	data := RandomBytes(t, 300<<10)
	const n = 8
	errs := make(chan error, n)
	for range n {
		go func() { errs <- pub.Publish(context.Background(), "race.fxe", slices.Clone(data)) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("concurrent Publish of the same bytes: %v, want nil", err)
		}
	}
	r := Start(t, recv)
	_, got := Consume(t, r, in, 1)
	if !bytes.Equal(got["race.fxe"], data) {
		t.Fatal("the file received differs from the bytes published")
	}
	r.Quiet(t, 200*time.Millisecond)
}

func testPublishInvalidName(t *testing.T, newPair NewPairFunc) {
	pub, _, _ := newPair(t)
	for _, name := range []string{"", ".hidden.fxe", "../up.fxe", "a/b.fxe", "UPPER.fxe", "noext", "a.fxe.tmp", "x\x00.fxe"} {
		if err := pub.Publish(context.Background(), name, []byte("x")); !errors.Is(err, medium.ErrInvalidName) {
			t.Errorf("Publish(%q): %v, want ErrInvalidName", name, err)
		}
	}
}

func testPublishCanceled(t *testing.T, newPair NewPairFunc) {
	pub, recv, in := newPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := pub.Publish(ctx, "canceled.fxe", RandomBytes(t, 1<<20)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish with a canceled ctx: %v, want context.Canceled", err)
	}
	// Nothing of it may arrive: the next file is the only one.
	mustPublish(t, pub, "later.fxe", []byte("later"))
	r := Start(t, recv)
	order, _ := Consume(t, r, in, 1)
	if order[0] != "later.fxe" {
		t.Fatalf("received %s, want only later.fxe", order[0])
	}
	r.Quiet(t, 200*time.Millisecond)
}

// testPublishShortSource: a PublishFrom whose source ends before the size
// it announced fails and publishes nothing; the same name then publishes
// and arrives whole.
func testPublishShortSource(t *testing.T, newPair NewPairFunc) {
	pub, recv, in := newPair(t)
	data := RandomBytes(t, 3<<20)
	if err := pub.PublishFrom(context.Background(), "short.fxe", bytes.NewReader(data[:1<<20+5]), int64(len(data))); err == nil {
		t.Fatal("PublishFrom of a source shorter than its size succeeded")
	}
	r := Start(t, recv)
	r.Quiet(t, 300*time.Millisecond)
	if err := pub.PublishFrom(context.Background(), "short.fxe", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("PublishFrom of the whole source: %v", err)
	}
	_, got := Consume(t, r, in, 1)
	if !bytes.Equal(got["short.fxe"], data) {
		t.Fatal("short.fxe arrived changed")
	}
}

func testManyExactlyOnce(t *testing.T, newPair NewPairFunc) {
	pub, recv, in := newPair(t)
	const before, during = 100, 100
	want := map[string][]byte{}
	var mu sync.Mutex
	// publishAll publishes n files from 8 goroutines; it reports failures
	// with t.Errorf, as it may run off the test goroutine.
	publishAll := func(prefix string, n int) {
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := w; i < n; i += 8 {
					name := fmt.Sprintf("%s-%04d.fxe", prefix, i)
					data := []byte(name + " " + string(RandomBytes(t, 64)))
					if err := pub.Publish(context.Background(), name, data); err != nil {
						t.Errorf("Publish(%s): %v", name, err)
						return
					}
					mu.Lock()
					want[name] = data
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	publishAll("m", before)
	if t.Failed() {
		return
	}
	r := Start(t, recv)
	// Files there before Run are sent in name order.
	first, got := Consume(t, r, in, before)
	if !slices.IsSorted(first) {
		t.Errorf("files present at start were not sent in name order: %v", first)
	}
	// Files published while Run runs all arrive too.
	published := make(chan struct{})
	go func() {
		defer close(published)
		publishAll("n", during)
	}()
	_, consumed := Consume(t, r, in, during)
	<-published
	for name, data := range consumed {
		if _, dup := got[name]; dup {
			t.Fatalf("%s delivered twice", name)
		}
		got[name] = data
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("received %d files, want %d", len(got), len(want))
	}
	for name, data := range want {
		if !bytes.Equal(got[name], data) {
			t.Errorf("%s: received bytes differ", name)
		}
	}
	r.Quiet(t, 200*time.Millisecond)
}

func testCancelReturns(t *testing.T, newPair NewPairFunc) {
	_, recv, _ := newPair(t)
	// Cancel while idle.
	r := Start(t, recv)
	time.Sleep(50 * time.Millisecond)
	r.Stop(t)

	// Cancel while blocked sending to a consumer that does not read.
	pub, recv, _ := newPair(t)
	for i := range 3 {
		mustPublish(t, pub, fmt.Sprintf("blocked-%d.fxe", i), []byte("x"))
	}
	r = Start(t, recv)
	time.Sleep(100 * time.Millisecond)
	r.Stop(t)

	// A canceled ctx before Run returns at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	errc := make(chan error, 1)
	go func() { errc <- recv.Run(ctx, make(chan string)) }()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run with a canceled ctx: %v, want context.Canceled", err)
		}
	case <-time.After(Deadline):
		t.Fatal("Run with a canceled ctx did not return")
	}
}

func testSlowConsumer(t *testing.T, newPair NewPairFunc) {
	pub, recv, in := newPair(t)
	const n = 20
	for i := range n {
		mustPublish(t, pub, fmt.Sprintf("s-%02d.fxe", i), []byte{byte(i)})
	}
	r := Start(t, recv)
	first := r.Next(t)
	if first != "s-00.fxe" {
		t.Fatalf("first file %s, want s-00.fxe", first)
	}
	// Give Run every chance to claim too much.
	time.Sleep(300 * time.Millisecond)
	names, err := in.List()
	if err != nil {
		t.Fatal(err)
	}
	// One sent and at most one claimed ahead.
	if len(names) > 2 {
		t.Fatalf("inbox holds %d files after 1 was sent, want at most 2: Run claims ahead of its consumer", len(names))
	}
	r.Stop(t)
}

func testRestart(t *testing.T, newPair NewPairFunc) {
	pub, recv, in := newPair(t)
	want := map[string][]byte{}
	publish := func(name string) {
		data := RandomBytes(t, 512)
		mustPublish(t, pub, name, data)
		want[name] = data
	}
	for i := range 6 {
		publish(fmt.Sprintf("r-%02d.fxe", i))
	}
	// First run: two files are sent but never processed (the consumer
	// "crashes" before removing them); then the receiver stops.
	r := Start(t, recv)
	r.Next(t)
	r.Next(t)
	r.Stop(t)
	left, err := in.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(left) < 2 {
		t.Fatalf("inbox holds %v after 2 unprocessed deliveries, want at least those 2", left)
	}
	publish("r-10.fxe")
	publish("a-late.fxe") // sorts before every leftover: must still come after them

	// Second run over the same inbox and medium.
	r = Start(t, recv)
	order, got := Consume(t, r, in, len(want))
	if !slices.Equal(order[:len(left)], left) {
		t.Fatalf("after restart the first files were %v, want the inbox leftovers %v first", order[:len(left)], left)
	}
	for name, data := range want {
		if !bytes.Equal(got[name], data) {
			t.Errorf("%s lost or changed across the restart", name)
		}
	}
	r.Quiet(t, 200*time.Millisecond)
	if rest, err := in.List(); err != nil || len(rest) != 0 {
		t.Fatalf("inbox after consuming everything: %v, %v", rest, err)
	}
}

// FullDiskRoom is the free space FullDisk expects in the drop: the
// caller mounts a file system of this size over it (see
// daemontest.MountTmpfs).
const FullDiskRoom = 2 << 20

// FullDisk checks a medium whose drop (drop, the local directory behind
// it) has a file system of FullDiskRoom bytes: a publish that does not
// fit fails and leaves no final name and no temporary file, and one that
// fits still goes through and arrives through recv into in.
func FullDisk(t *testing.T, p medium.Publisher, recv medium.Receiver, in *medium.Inbox, drop string) {
	t.Helper()
	err := p.Publish(context.Background(), "big.fxe", RandomBytes(t, FullDiskRoom+1<<20))
	if err == nil {
		t.Fatalf("a %d MiB publish into a %d MiB file system succeeded", (FullDiskRoom+1<<20)>>20, FullDiskRoom>>20)
	}
	t.Logf("publish into a full drop: %v", err)
	if names := DropNames(t, drop); len(names) != 0 {
		t.Fatalf("a failed publish left %v in the drop", names)
	}
	small := RandomBytes(t, 64<<10)
	if err := p.Publish(context.Background(), "small.fxe", small); err != nil {
		t.Fatalf("a publish that fits, after the full one: %v", err)
	}
	r := Start(t, recv)
	_, got := Consume(t, r, in, 1)
	if !bytes.Equal(got["small.fxe"], small) {
		t.Fatal("small.fxe lost or changed")
	}
}
