package remote

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// testLink is a connection without a protocol: closing it only records
// that it was closed.
type testLink struct {
	*Lifetime
	released atomic.Int32
}

func (l *testLink) Abort(reason error)   { l.End(reason, func() {}) }
func (l *testLink) Release(reason error) { l.Abort(reason); l.released.Add(1) }

var (
	errTestClosed = errors.New("test: closed")
	errRefused    = errors.New("refused") // the server's answer
	errBroken     = errors.New("broken")  // a failure of the connection
)

// newTestReconnector returns a Reconnector whose dials fail while *fail
// is set, and counts them in *dials.
func newTestReconnector(t *testing.T, fail *atomic.Bool, dials *atomic.Int32, probe func(context.Context, *testLink) error) *Reconnector[*testLink] {
	t.Helper()
	r := NewReconnector(ReconnectorConfig[*testLink]{
		Address:   "test:1",
		Protocol:  "test",
		OpTimeout: 200 * time.Millisecond,
		Dial: func(context.Context) (*testLink, error) {
			dials.Add(1)
			if fail.Load() {
				return nil, errBroken
			}
			return &testLink{Lifetime: NewLifetime()}, nil
		},
		Probe:    probe,
		IsAnswer: func(err error) bool { return errors.Is(err, errRefused) },
		Closed:   errTestClosed,
	})
	t.Cleanup(func() { r.Close(nil) })
	return r
}

func TestReconnector_Get(t *testing.T) {
	var fail atomic.Bool
	var dials atomic.Int32
	r := newTestReconnector(t, &fail, &dials, nil)
	r.SetBackoff(100*time.Millisecond, 100*time.Millisecond)
	ctx := context.Background()

	cn, err := r.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := r.Get(ctx); err != nil || again != cn || dials.Load() != 1 {
		t.Fatalf("second Get: %p, %v after %d dials, want the live connection after 1", again, err, dials.Load())
	}
	// A failed operation drops the connection and counts a failure: the
	// next dial waits the backoff (jitter: 50ms to 100ms).
	if err := r.Run(ctx, cn, "op", false, func() error { return errBroken }); !errors.Is(err, errBroken) || IsAnswer(err) {
		t.Fatalf("Run with a broken connection: %v, want errBroken unmarked", err)
	}
	if !cn.Dead() || cn.released.Load() != 1 {
		t.Fatal("a failed connection was not released")
	}
	start := time.Now()
	cn2, err := r.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("dial after a failure waited %v, want the backoff (at least 50ms)", d)
	}
	if cn2 == cn {
		t.Fatal("Get returned the dropped connection")
	}
	// An answer keeps the connection, and a success resets the backoff.
	if err := r.Run(ctx, cn2, "op", false, func() error { return errRefused }); !IsAnswer(err) || cn2.Dead() {
		t.Fatalf("Run with an answer: %v (dead %v), want an answer on a live connection", err, cn2.Dead())
	}
	if err := r.Run(ctx, cn2, "op", false, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	// A connection found dead is one failure since the success.
	cn2.Abort(errBroken)
	start = time.Now()
	if _, err := r.Get(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("dial after a dead connection waited %v, want the backoff (at least 50ms)", d)
	}
}

func TestReconnector_RunTimeout(t *testing.T) {
	var fail atomic.Bool
	var dials atomic.Int32
	r := newTestReconnector(t, &fail, &dials, nil)
	cn, err := r.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	err = r.Run(context.Background(), cn, "stall", false, func() error {
		<-cn.Done() // an operation that only the closing connection ends
		return errBroken
	})
	if err == nil || !cn.Dead() {
		t.Fatalf("a stalled operation: %v (dead %v), want it failed by the op timeout", err, cn.Dead())
	}
	if reason := cn.Reason(); reason == nil || errors.Is(reason, ErrDropped) {
		t.Errorf("reason %v, want the op timeout", reason)
	}
}

// TestReconnector_RunProgress: an operation that keeps reporting progress
// outlives the op timeout (200ms) many times over; one that stops
// reporting is closed one op timeout after its last progress.
func TestReconnector_RunProgress(t *testing.T) {
	var fail atomic.Bool
	var dials atomic.Int32
	r := newTestReconnector(t, &fail, &dials, nil)
	cn, err := r.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	err = r.RunProgress(context.Background(), cn, "long", false, func(progress func()) error {
		for range 20 { // 1s in all, 50ms apart
			time.Sleep(50 * time.Millisecond)
			if cn.Dead() {
				return errBroken
			}
			progress()
		}
		return nil
	})
	if err != nil || cn.Dead() {
		t.Fatalf("a long operation with progress: %v (dead %v), want success", err, cn.Dead())
	}
	err = r.RunProgress(context.Background(), cn, "stall", false, func(progress func()) error {
		progress()
		<-cn.Done()
		return errBroken
	})
	if err == nil || !cn.Dead() {
		t.Fatalf("an operation that stopped reporting progress: %v (dead %v), want it failed by the op timeout", err, cn.Dead())
	}
}

func TestReconnector_Probe(t *testing.T) {
	var fail atomic.Bool
	var dials atomic.Int32
	var refuse atomic.Bool
	r := newTestReconnector(t, &fail, &dials, func(context.Context, *testLink) error {
		if refuse.Load() {
			return errBroken
		}
		return nil
	})
	r.SetBackoff(time.Hour, time.Hour)
	cn, err := r.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	refuse.Store(true)
	// A failed probe drops the connection without counting a failure:
	// the dial does not wait the (hour-long) backoff.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cn2, err := r.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cn2 == cn || !cn.Dead() || dials.Load() != 2 {
		t.Fatalf("after a failed probe: new %v, old dead %v, %d dials; want a new connection", cn2 != cn, cn.Dead(), dials.Load())
	}
}

func TestReconnector_Close(t *testing.T) {
	var fail atomic.Bool
	var dials atomic.Int32
	r := newTestReconnector(t, &fail, &dials, nil)
	r.SetBackoff(time.Hour, time.Hour)
	fail.Store(true)
	if _, err := r.Get(context.Background()); !errors.Is(err, errBroken) {
		t.Fatalf("Get with a failing dial: %v, want errBroken", err)
	}
	// The next Get waits an hour; Close ends the wait.
	errc := make(chan error, 1)
	go func() {
		_, err := r.Get(context.Background())
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := r.Close(nil); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, errTestClosed) {
			t.Fatalf("Get during Close: %v, want Closed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the backoff wait")
	}
	if _, err := r.Get(context.Background()); !errors.Is(err, errTestClosed) {
		t.Fatalf("Get after Close: %v, want Closed", err)
	}
}
