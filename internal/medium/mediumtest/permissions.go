package mediumtest

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
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

// The permission checks run a medium against a server (or a local file
// system) that refuses it for real: each takes a deny function that the
// medium's test implements with what its server offers (a mode change
// made as another user, a read-only server, a denied request type), and
// that undoes the refusal when called with false.

// Prompt bounds how long a refused Publish may take: a refusal is an
// answer, not a reason to retry until the caller gives up.
const Prompt = 10 * time.Second

// busy reports whether n log records about one file within window are
// more than a receiver that rescans every rescan writes: it tries a file
// it cannot claim at most once per scan, and each try logs at most one
// record (at debug level after the first). Tickers drop ticks under
// load, so the bound holds on a slow machine too.
func busy(n int, window, rescan time.Duration) bool {
	return n > int(window/rescan)+2
}

// Recorder keeps the log records of a medium for a test, and passes them
// on to the test's output like [Logger].
type Recorder struct {
	next slog.Handler

	mu   sync.Mutex
	recs []recorded
}

type recorded struct {
	level slog.Level
	msg   string
	vals  []string // every attribute value, as text
}

// NewRecorder returns a logger whose records r keeps.
func NewRecorder(t testing.TB) (*slog.Logger, *Recorder) {
	r := &Recorder{next: Logger(t).Handler()}
	return slog.New(&recordHandler{r: r}), r
}

// recordHandler is the slog.Handler of a Recorder, with the attributes
// of With calls.
type recordHandler struct {
	r     *Recorder
	attrs []slog.Attr
	group string
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordHandler) Handle(ctx context.Context, rec slog.Record) error {
	e := recorded{level: rec.Level, msg: rec.Message}
	for _, a := range h.attrs {
		e.vals = append(e.vals, a.Value.String())
	}
	rec.Attrs(func(a slog.Attr) bool {
		e.vals = append(e.vals, a.Value.String())
		return true
	})
	h.r.mu.Lock()
	h.r.recs = append(h.r.recs, e)
	h.r.mu.Unlock()
	next := h.r.next.WithAttrs(h.attrs)
	if h.group != "" {
		next = next.WithGroup(h.group)
	}
	return next.Handle(ctx, rec)
}

func (h *recordHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &recordHandler{r: h.r, attrs: append(slices.Clip(h.attrs), as...), group: h.group}
}

func (h *recordHandler) WithGroup(name string) slog.Handler {
	return &recordHandler{r: h.r, attrs: h.attrs, group: name}
}

// About returns how many records mention name as an attribute value
// (such as file=name), and how many of them are at warning level or
// above.
func (r *Recorder) About(name string) (all, warnings int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.recs {
		if slices.Contains(e.vals, name) {
			all++
			if e.level >= slog.LevelWarn {
				warnings++
			}
		}
	}
	return all, warnings
}

// PublishDenied checks Publish into a drop the publisher may not write
// to. With deny(true) in force, Publish returns within [Prompt] an error
// that is neither nil nor [medium.ErrExists] and says permission denied
// (errors.Is fs.ErrPermission, or at least the text), and drop (the
// local directory behind the drop) holds no file of it, temporary or
// final. After deny(false) the same Publish succeeds.
func PublishDenied(t *testing.T, p medium.Publisher, drop string, deny func(on bool)) {
	t.Helper()
	data := RandomBytes(t, 64<<10)
	deny(true)
	ctx, cancel := context.WithTimeout(context.Background(), Deadline)
	defer cancel()
	start := time.Now()
	err := p.Publish(ctx, "denied.fxe", data)
	took := time.Since(start)
	switch {
	case err == nil:
		t.Fatal("Publish into a drop it may not write succeeded")
	case errors.Is(err, context.DeadlineExceeded) || took > Prompt:
		t.Fatalf("Publish into a drop it may not write took %v (%v), want an answer within %v", took.Round(time.Millisecond), err, Prompt)
	case errors.Is(err, medium.ErrExists):
		t.Fatalf("Publish into a drop it may not write: %v, want a permission error, not ErrExists", err)
	case !SaysPermission(err):
		t.Errorf("Publish into a drop it may not write: %v, want fs.ErrPermission or at least \"permission denied\"", err)
	}
	t.Logf("refused publish: %v (in %v)", err, took.Round(time.Millisecond))
	if names := DropNames(t, drop); len(names) != 0 {
		t.Errorf("a refused publish left %v in the drop, want nothing", names)
	}
	deny(false)
	if err := p.Publish(context.Background(), "denied.fxe", data); err != nil {
		t.Fatalf("Publish once writing is allowed again: %v", err)
	}
	if names := DropNames(t, drop); !slices.Equal(names, []string{"denied.fxe"}) {
		t.Errorf("drop holds %v, want only denied.fxe", names)
	}
	if got, err := os.ReadFile(filepath.Join(drop, "denied.fxe")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("denied.fxe in the drop: %d bytes, %v; want the %d published", len(got), err, len(data))
	}
}

// SaysPermission reports whether err is a permission error: errors.Is
// fs.ErrPermission, or "permission denied" in its text.
func SaysPermission(err error) bool {
	return errors.Is(err, fs.ErrPermission) || strings.Contains(strings.ToLower(err.Error()), "permission denied")
}

// ReadDenied checks a receiver against a file on the drop it may not
// read. It publishes three files with p and calls deny("b.fxe", true)
// before it starts r (whose logger is rec's): the other two arrive, b.fxe
// does not, it is logged at warning level, tried at most once per
// rescan (r's rescan interval), not quarantined, and left in drop. After
// deny("b.fxe", false) it arrives intact, and drop ends empty.
func ReadDenied(t *testing.T, p medium.Publisher, r medium.Receiver, rescan time.Duration, in *medium.Inbox, rec *Recorder, drop string, deny func(name string, on bool)) {
	t.Helper()
	want := map[string][]byte{}
	for _, name := range []string{"a.fxe", "b.fxe", "c.fxe"} {
		want[name] = RandomBytes(t, 4096)
		mustPublish(t, p, name, want[name])
	}
	deny("b.fxe", true)
	run := Start(t, r)
	order, got := Consume(t, run, in, 2)
	if !slices.Equal(order, []string{"a.fxe", "c.fxe"}) {
		t.Fatalf("received %v, want a.fxe and c.fxe and not the unreadable b.fxe", order)
	}
	for _, name := range order {
		if !bytes.Equal(got[name], want[name]) {
			t.Errorf("%s: received bytes differ", name)
		}
	}
	before, _ := rec.About("b.fxe")
	const window = 500 * time.Millisecond
	run.Quiet(t, window)
	all, warnings := rec.About("b.fxe")
	if warnings == 0 {
		t.Error("nothing logged at warning level about the unreadable b.fxe")
	}
	if n := all - before; busy(n, window, rescan) {
		t.Errorf("%d log records about b.fxe in %v: a busy loop", n, window)
	}
	if !slices.Contains(DropNames(t, drop), "b.fxe") {
		t.Errorf("drop holds %v: the unreadable b.fxe was removed", DropNames(t, drop))
	}
	if q := DropNames(t, in.QuarantineDir()); len(q) != 0 {
		t.Errorf("quarantine holds %v, want nothing: an unreadable file may become readable", q)
	}
	deny("b.fxe", false)
	_, got = Consume(t, run, in, 1)
	if !bytes.Equal(got["b.fxe"], want["b.fxe"]) {
		t.Fatal("b.fxe did not arrive intact once readable")
	}
	run.Quiet(t, 200*time.Millisecond)
	waitEmpty(t, drop)
}

// RemoveDenied checks a receiver against a file it may read but not
// remove from the drop. It publishes one file with p and calls
// deny(true) before it starts r (whose logger is rec's): while that Run
// runs, the file arrives at most once (the medium may also leave it on
// the drop untaken), it is logged at warning level, it is tried at most
// once per rescan (r's rescan interval), and it stays in drop. After deny(false) a
// new Run (a restart) delivers it, and drop ends empty.
func RemoveDenied(t *testing.T, p medium.Publisher, r medium.Receiver, rescan time.Duration, in *medium.Inbox, rec *Recorder, drop string, deny func(on bool)) {
	t.Helper()
	data := RandomBytes(t, 4096)
	mustPublish(t, p, "s.fxe", data)
	deny(true)
	run := Start(t, r)
	// Wait for a delivery or a warning, whichever comes first, then
	// watch for a while: the warning may come just before the delivery.
	delivered := 0
	take := func(name string) {
		if name != "s.fxe" {
			t.Fatalf("received %s, want s.fxe", name)
		}
		if delivered++; delivered > 1 {
			t.Fatalf("s.fxe delivered %d times while Run runs, want at most once", delivered)
		}
		consumeOne(t, in, name, data)
	}
	deadline := time.Now().Add(Deadline)
	for _, w := rec.About("s.fxe"); w == 0 && delivered == 0; _, w = rec.About("s.fxe") {
		if time.Now().After(deadline) {
			t.Fatalf("s.fxe neither delivered nor logged within %v", Deadline)
		}
		select {
		case name := <-run.Out:
			take(name)
		case <-time.After(10 * time.Millisecond):
		}
	}
	before, _ := rec.About("s.fxe")
	const window = 500 * time.Millisecond
	end := time.After(window)
watch:
	for {
		select {
		case name := <-run.Out:
			take(name)
		case <-end:
			break watch
		}
	}
	all, warnings := rec.About("s.fxe")
	if warnings == 0 {
		t.Error("nothing logged at warning level about s.fxe, which the receiver may not remove")
	}
	if n := all - before; busy(n, window, rescan) {
		t.Errorf("%d log records about s.fxe in %v: a busy loop", n, window)
	}
	if !slices.Contains(DropNames(t, drop), "s.fxe") {
		t.Fatalf("drop holds %v: s.fxe was removed although removing it was refused", DropNames(t, drop))
	}
	t.Logf("delivered %d time(s) while removal was refused", delivered)
	run.Stop(t)

	deny(false)
	run = Start(t, r)
	name := run.Next(t)
	if name != "s.fxe" {
		t.Fatalf("after the restart received %s, want s.fxe", name)
	}
	consumeOne(t, in, name, data)
	run.Quiet(t, 200*time.Millisecond)
	waitEmpty(t, drop)
}

// consumeOne reads name from in, checks it holds want, and removes it.
func consumeOne(t testing.TB, in *medium.Inbox, name string, want []byte) {
	t.Helper()
	got, err := in.Read(name)
	if err != nil {
		t.Fatalf("Inbox.Read(%s): %v", name, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: received bytes differ", name)
	}
	if err := in.Remove(name); err != nil {
		t.Fatalf("Inbox.Remove(%s): %v", name, err)
	}
}

// waitEmpty waits until drop holds nothing: a receiver removes a file
// from the server after it sent its name.
func waitEmpty(t testing.TB, drop string) {
	t.Helper()
	deadline := time.Now().Add(Deadline)
	for names := DropNames(t, drop); len(names) != 0; names = DropNames(t, drop) {
		if time.Now().After(deadline) {
			t.Fatalf("drop still holds %v after everything was received", names)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Chmod returns a deny function for the permission checks that gives
// path the mode deny while on and allow otherwise: a refusal for a
// server or receiver that mode bits stop (not root).
func Chmod(t *testing.T, path string, allow, deny os.FileMode) func(on bool) {
	return func(on bool) {
		t.Helper()
		mode := allow
		if on {
			mode = deny
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
}
