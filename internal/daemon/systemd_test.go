package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// notifyAgent is an agent that becomes ready when told and whose state
// answers while alive is set.
type notifyAgent struct {
	ready chan struct{}
	alive atomic.Bool
}

func (a *notifyAgent) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (a *notifyAgent) Close() error                  { return nil }
func (a *notifyAgent) Ready() <-chan struct{}        { return a.ready }
func (a *notifyAgent) Alive(context.Context) error {
	if !a.alive.Load() {
		return errors.New("the database does not answer")
	}
	return nil
}

// notifySocket listens where systemd would, and returns what arrives.
func notifySocket(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	out := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(out)
				return
			}
			out <- string(buf[:n])
		}
	}()
	return out
}

// next returns the next notification, or "" after d.
func next(msgs <-chan string, d time.Duration) string {
	select {
	case m := <-msgs:
		return m
	case <-time.After(d):
		return ""
	}
}

// TestNotifier: READY=1 only once the agent is ready; WATCHDOG=1 at half
// the unit's interval while the agent's state answers, none while it does
// not, and a line in the log saying so.
func TestNotifier(t *testing.T) {
	msgs := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "100000") // 100ms: fed every 50ms
	var logs bytes.Buffer
	n := notifier{logger: slog.New(slog.NewTextHandler(&logs, nil))}
	agent := &notifyAgent{ready: make(chan struct{})}
	agent.alive.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.run(ctx, agent); close(done) }()

	if m := next(msgs, 200*time.Millisecond); m != "" {
		t.Fatalf("before the agent is ready: %q", m)
	}
	close(agent.ready)
	if m := next(msgs, 2*time.Second); m != "READY=1\nSTATUS=serving" {
		t.Fatalf("when ready: %q, want READY=1", m)
	}
	for range 3 {
		if m := next(msgs, 2*time.Second); m != "WATCHDOG=1" {
			t.Fatalf("while alive: %q, want WATCHDOG=1", m)
		}
	}
	agent.alive.Store(false)
	next(msgs, 60*time.Millisecond) // one may have been on its way
	if m := next(msgs, 300*time.Millisecond); m != "" {
		t.Fatalf("while the state does not answer: %q, want nothing", m)
	}
	agent.alive.Store(true)
	if m := next(msgs, 2*time.Second); m != "WATCHDOG=1" {
		t.Fatalf("alive again: %q, want WATCHDOG=1", m)
	}
	cancel()
	<-done
	if !strings.Contains(logs.String(), "watchdog not fed") || !strings.Contains(logs.String(), "watchdog fed again") {
		t.Errorf("log:\n%s", logs.String())
	}
}

// TestNotifier_outsideSystemd: without $NOTIFY_SOCKET nothing is sent and
// nothing is logged.
func TestNotifier_outsideSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	var logs bytes.Buffer
	n := notifier{logger: slog.New(slog.NewTextHandler(&logs, nil))}
	agent := &notifyAgent{ready: make(chan struct{})}
	close(agent.ready)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.run(ctx, agent); close(done) }()
	n.send("STOPPING=1")
	cancel()
	<-done
	if logs.Len() != 0 {
		t.Errorf("log:\n%s", logs.String())
	}
}
