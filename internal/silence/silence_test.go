package silence

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestWatch_Check(t *testing.T) {
	var buf syncBuffer
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	w := New("results", time.Minute, t0, slog.New(slog.NewTextHandler(&buf, nil)))
	if w.Check(t0.Add(59 * time.Second)) {
		t.Fatal("silent before the limit")
	}
	w.Heard(t0.Add(30 * time.Second))
	if w.Check(t0.Add(89 * time.Second)) {
		t.Fatal("silent less than a limit after it was heard")
	}
	if !w.Check(t0.Add(90 * time.Second)) {
		t.Fatal("not silent a limit after it was heard")
	}
	if !w.Check(t0.Add(2 * time.Hour)) {
		t.Fatal("no longer silent with nothing heard")
	}
	if n := strings.Count(buf.String(), "channel silent"); n != 1 {
		t.Fatalf("%d silence warnings, want 1 per spell:\n%s", n, buf.String())
	}
	last, silent := w.State()
	if !silent || !last.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("State = %v, %v", last, silent)
	}
	w.Heard(t0.Add(3 * time.Hour))
	if w.Check(t0.Add(3 * time.Hour)) {
		t.Fatal("silent right after it was heard")
	}
	if !strings.Contains(buf.String(), "channel heard again") {
		t.Fatalf("no recovery line:\n%s", buf.String())
	}
	// A second spell warns again.
	w.Check(t0.Add(5 * time.Hour))
	if n := strings.Count(buf.String(), "channel silent"); n != 2 {
		t.Fatalf("%d silence warnings after two spells, want 2", n)
	}
}

func TestWatch_Run(t *testing.T) {
	var buf syncBuffer
	w := New("requests", 40*time.Millisecond, time.Now(), slog.New(slog.NewTextHandler(&buf, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx, time.Now) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, silent := w.State(); silent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run never reported the silence")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
