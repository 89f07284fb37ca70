package alarm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrybridge/ferry/internal/config"
	"github.com/ferrybridge/ferry/internal/keys"
)

// syncBuffer is a log sink safe for the Run goroutine and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// attempt is one request a receiver saw.
type attempt struct {
	id, ts, contentType string
	verify              error
	event               Event
}

// receiver is a webhook endpoint on 127.0.0.1 that verifies each
// request's signature and answers with the statuses in order (the last
// one for every further request).
type receiver struct {
	srv      *httptest.Server
	secret   []byte
	statuses []int
	hang     chan struct{} // when not nil, requests wait for it or their end

	mu       sync.Mutex
	attempts []attempt
}

func newReceiver(t *testing.T, secret []byte, statuses ...int) *receiver {
	t.Helper()
	r := &receiver{secret: secret, statuses: statuses}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	a := attempt{
		id:          req.Header.Get(HeaderID),
		ts:          req.Header.Get(HeaderTimestamp),
		contentType: req.Header.Get("Content-Type"),
		// The test clocks start at the real time and move a second a call.
		verify: Verify(r.secret, req.Header, body, time.Now(), time.Hour),
	}
	if err := json.Unmarshal(body, &a.event); err != nil {
		a.verify = errors.Join(a.verify, err)
	}
	r.mu.Lock()
	n := len(r.attempts)
	r.attempts = append(r.attempts, a)
	r.mu.Unlock()
	if r.hang != nil {
		select {
		case <-r.hang:
		case <-req.Context().Done():
		}
		return
	}
	status := http.StatusOK
	if len(r.statuses) > 0 {
		status = r.statuses[min(n, len(r.statuses)-1)]
	}
	w.WriteHeader(status)
}

func (r *receiver) got() []attempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]attempt(nil), r.attempts...)
}

// newTestWebhook generates a secret, makes a Webhook posting to url with
// short waits, and returns it with the secret and its log.
func newTestWebhook(t *testing.T, url string, timeout time.Duration, retries int) (*Webhook, []byte, *syncBuffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "webhook.secret")
	if err := GenerateSecret(path); err != nil {
		t.Fatal(err)
	}
	secret, err := ReadSecret(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	w, err := NewWebhook(WebhookConfig{URL: url, SecretFile: path, Timeout: config.Duration(timeout), Retries: retries}, logger)
	if err != nil {
		t.Fatal(err)
	}
	w.client.RetryWaitMin = 5 * time.Millisecond
	w.client.RetryWaitMax = 20 * time.Millisecond
	w.drain = 300 * time.Millisecond
	// A clock a second later at each call, so retries carry new timestamps.
	var mu sync.Mutex
	clock := time.Now()
	w.now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(time.Second)
		return clock
	}
	return w, secret, logs
}

// run starts w.Run and returns a function that stops it and reports how
// long Run took to return after the stop.
func run(t *testing.T, w *Webhook) (stop func() time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	var took time.Duration
	stop = func() time.Duration {
		once.Do(func() {
			start := time.Now()
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run = %v, want nil", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return after its context ended")
			}
			took = time.Since(start)
		})
		return took
	}
	t.Cleanup(func() { stop() })
	return stop
}

func count(w *Webhook, outcome string) int {
	return int(testutil.ToFloat64(w.deliveries.WithLabelValues(outcome)))
}

// waitCount waits until w counted want deliveries with outcome.
func waitCount(t *testing.T, w *Webhook, outcome string, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for count(w, outcome) < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %d, want %d", outcome, count(w, outcome), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := count(w, outcome); got != want {
		t.Fatalf("%s = %d, want %d", outcome, got, want)
	}
}

func testEvent(name string) Event {
	return Event{ID: newID(), Zone: "dmz", Alarm: name, Severity: Critical, State: StateRaised,
		Message: "1 file quarantined", Time: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func TestWebhook_Deliver(t *testing.T) {
	tests := []struct {
		name      string
		statuses  []int
		attempts  int
		outcome   string
		logStatus string
	}{
		{"200", []int{200}, 1, OutcomeDelivered, ""},
		{"204", []int{204}, 1, OutcomeDelivered, ""},
		{"503 twice then 200", []int{503, 503, 200}, 3, OutcomeDelivered, ""},
		{"429 then 200", []int{429, 200}, 2, OutcomeDelivered, ""},
		{"400 is not retried", []int{400}, 1, OutcomeFailed, "400 Bad Request"},
		{"410 is not retried", []int{410}, 1, OutcomeFailed, "410 Gone"},
		{"503 after every retry", []int{503}, 4, OutcomeFailed, "503 Service Unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReceiver(t, nil, tt.statuses...)
			w, secret, logs := newTestWebhook(t, r.srv.URL+"/hooks/s3cr3t-token", time.Second, 3)
			r.secret = secret
			run(t, w)
			ev := testEvent(QuarantineBurst)
			w.Notify(ev)
			waitCount(t, w, tt.outcome, 1)

			got := r.got()
			if len(got) != tt.attempts {
				t.Fatalf("%d attempts, want %d", len(got), tt.attempts)
			}
			for i, a := range got {
				if a.verify != nil {
					t.Errorf("attempt %d: receiver's Verify: %v", i, a.verify)
				}
				if a.id != ev.ID || a.event != ev {
					t.Errorf("attempt %d: id %s, event %+v; want id %s, %+v", i, a.id, a.event, ev.ID, ev)
				}
				if a.contentType != "application/json" {
					t.Errorf("attempt %d: Content-Type %q", i, a.contentType)
				}
				if i > 0 && a.ts <= got[i-1].ts {
					t.Errorf("attempt %d: timestamp %s not after %s: a retry is not re-signed", i, a.ts, got[i-1].ts)
				}
			}
			other := OutcomeFailed
			if tt.outcome == OutcomeFailed {
				other = OutcomeDelivered
			}
			if n := count(w, other); n != 0 {
				t.Fatalf("%s = %d, want 0", other, n)
			}
			log := logs.String()
			if tt.logStatus != "" {
				if !strings.Contains(log, `"level":"WARN"`) || !strings.Contains(log, `"alarm":"quarantine_burst"`) ||
					!strings.Contains(log, `"status":"`+tt.logStatus+`"`) {
					t.Fatalf("failure log = %s, want WARN with alarm and status %q", log, tt.logStatus)
				}
			} else if log != "" {
				t.Fatalf("a delivery logged %s", log)
			}
			if strings.Contains(log, "s3cr3t") {
				t.Fatalf("log shows the URL's token: %s", log)
			}
		})
	}
}

func TestWebhook_Timeout(t *testing.T) {
	r := newReceiver(t, nil)
	r.hang = make(chan struct{})
	t.Cleanup(func() { close(r.hang) })
	w, _, logs := newTestWebhook(t, r.srv.URL+"/s3cr3t-token", 200*time.Millisecond, 1)
	run(t, w)
	start := time.Now()
	w.Notify(testEvent(PeerSilent))
	waitCount(t, w, OutcomeFailed, 1)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("two attempts of 200ms took %v", d)
	}
	if n := len(r.got()); n != 2 {
		t.Fatalf("%d attempts, want 2 (a timeout is retried)", n)
	}
	log := logs.String()
	if !strings.Contains(log, "Client.Timeout") || !strings.Contains(log, `"alarm":"peer_silent"`) {
		t.Fatalf("log = %s, want the timeout and the alarm", log)
	}
	if strings.Contains(log, "s3cr3t") || strings.Contains(log, "127.0.0.1:") && strings.Contains(log, "/s3cr3t") {
		t.Fatalf("log shows the URL: %s", log)
	}
}

func TestWebhook_Redirect(t *testing.T) {
	target := newReceiver(t, nil)
	var hits int
	var mu sync.Mutex
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
		http.Redirect(w, req, target.srv.URL, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirect.Close)
	w, _, logs := newTestWebhook(t, redirect.URL, time.Second, 3)
	run(t, w)
	w.Notify(testEvent(DiskFull))
	waitCount(t, w, OutcomeFailed, 1)
	mu.Lock()
	defer mu.Unlock()
	if hits != 1 {
		t.Fatalf("redirecting server saw %d attempts, want 1", hits)
	}
	if n := len(target.got()); n != 0 {
		t.Fatalf("the redirect was followed: target saw %d requests", n)
	}
	if !strings.Contains(logs.String(), "307 Temporary Redirect") {
		t.Fatalf("log = %s, want the 307", logs.String())
	}
}

func TestWebhook_Overflow(t *testing.T) {
	r := newReceiver(t, nil)
	w, secret, logs := newTestWebhook(t, r.srv.URL, time.Second, 0)
	r.secret = secret
	var sent []Event
	for i := range DefaultQueue + 5 {
		ev := testEvent(RefusalBurst)
		ev.Message = fmt.Sprint(i)
		sent = append(sent, ev)
		w.Notify(ev) // Run is not started: the queue fills
	}
	if n := count(w, OutcomeDropped); n != 5 {
		t.Fatalf("dropped = %d, want 5", n)
	}
	if n := strings.Count(logs.String(), "queue full"); n != 1 {
		t.Fatalf("%d queue-full log lines, want 1 per burst: %s", n, logs.String())
	}
	run(t, w)
	waitCount(t, w, OutcomeDelivered, DefaultQueue)
	got := r.got()
	for i, a := range got {
		if want := sent[i+5]; a.id != want.ID || a.event.Message != want.Message || a.verify != nil {
			t.Fatalf("delivery %d: id %s message %s (%v), want %s %s: not the oldest dropped, or out of order",
				i, a.id, a.event.Message, a.verify, want.ID, want.Message)
		}
	}
	if !strings.Contains(logs.String(), `"dropped":5`) {
		t.Fatalf("log = %s, want the burst's count when the queue drained", logs.String())
	}
}

func TestWebhook_Stop(t *testing.T) {
	r := newReceiver(t, nil)
	r.hang = make(chan struct{})
	t.Cleanup(func() { close(r.hang) })
	w, _, logs := newTestWebhook(t, r.srv.URL, 10*time.Second, 5)
	stop := run(t, w)
	for range 3 {
		w.Notify(testEvent(MediumStalled))
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(r.got()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	took := stop()
	if took < w.drain/2 || took > w.drain+time.Second {
		t.Fatalf("Run returned %v after its context ended, want about the drain time %v", took, w.drain)
	}
	if f, d := count(w, OutcomeFailed), count(w, OutcomeDropped); f != 1 || d != 2 {
		t.Fatalf("failed %d dropped %d, want 1 (in flight) and 2 (queued)", f, d)
	}
	if !strings.Contains(logs.String(), "undelivered") {
		t.Fatalf("log = %s, want the undelivered count", logs.String())
	}
}

// TestWebhook_StopDrains checks that what is queued when the context ends
// is still delivered, if the receiver answers.
func TestWebhook_StopDrains(t *testing.T) {
	r := newReceiver(t, nil)
	w, _, _ := newTestWebhook(t, r.srv.URL, time.Second, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 3 {
		w.Notify(testEvent(SpoolFull))
	}
	if err := w.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(w, OutcomeDelivered); n != 3 {
		t.Fatalf("delivered %d after the context ended, want 3", n)
	}
}

func TestWebhook_Collect(t *testing.T) {
	w, _, _ := newTestWebhook(t, "http://127.0.0.1:1/", time.Second, 0)
	want := `
# HELP ferry_webhook_deliveries_total Alarm webhook deliveries by outcome.
# TYPE ferry_webhook_deliveries_total counter
ferry_webhook_deliveries_total{outcome="delivered"} 0
ferry_webhook_deliveries_total{outcome="dropped"} 0
ferry_webhook_deliveries_total{outcome="failed"} 0
`
	if err := testutil.CollectAndCompare(w, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

// TestWebhook_Set wires a Set to a Webhook as an agent does.
func TestWebhook_Set(t *testing.T) {
	r := newReceiver(t, nil)
	w, secret, _ := newTestWebhook(t, r.srv.URL, time.Second, 0)
	r.secret = secret
	run(t, w)
	s := NewSet("intranet", nil, w.Notify)
	s.Raise(SequenceGap, Warning, "1 missing sequence range from dmz")
	s.Raise(SequenceGap, Warning, "2 missing sequence ranges from dmz")
	s.Clear(SequenceGap)
	waitCount(t, w, OutcomeDelivered, 2)
	got := r.got()
	if got[0].event.State != StateRaised || got[1].event.State != StateCleared ||
		got[0].event.Zone != "intranet" || got[0].event.Alarm != SequenceGap || got[0].verify != nil {
		t.Fatalf("deliveries = %+v", got)
	}
}

func TestNewWebhook(t *testing.T) {
	dir := t.TempDir()
	loose := filepath.Join(dir, "loose.secret")
	if err := GenerateSecret(loose); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.secret")
	if err := GenerateSecret(good); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  WebhookConfig
		want error // nil: any error
	}{
		{"0644 secret", WebhookConfig{URL: "https://alerts.example/ferry", SecretFile: loose}, keys.ErrPermissions},
		{"missing secret", WebhookConfig{URL: "https://alerts.example/ferry", SecretFile: filepath.Join(dir, "none")}, os.ErrNotExist},
		{"no secret file", WebhookConfig{URL: "https://alerts.example/ferry"}, nil},
		{"ftp url", WebhookConfig{URL: "ftp://alerts.example/", SecretFile: good}, nil},
		{"user in url", WebhookConfig{URL: "https://u:p4ss@alerts.example/", SecretFile: good}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewWebhook(tt.cfg, nil)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("NewWebhook = %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), "p4ss") {
				t.Fatalf("error %q shows the password", err)
			}
		})
	}
	w, err := NewWebhook(WebhookConfig{URL: "https://alerts.example/ferry", SecretFile: good, Retries: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if w.client.RetryMax != DefaultWebhookRetries || w.client.HTTPClient.Timeout != DefaultWebhookTimeout {
		t.Fatalf("defaults: retries %d timeout %v", w.client.RetryMax, w.client.HTTPClient.Timeout)
	}
}
