package callback

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrybridge/ferry/internal/alarm"
	"github.com/ferrybridge/ferry/internal/config"
)

// receiver is a local callback receiver that records what it got.
type receiver struct {
	mu     sync.Mutex
	got    []http.Header
	bodies [][]byte
	times  []time.Time
	answer func(n int, w http.ResponseWriter, r *http.Request) // n: 1 for the first request
	srv    *httptest.Server
}

func newReceiver(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	r := &receiver{answer: answer}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.got = append(r.got, req.Header.Clone())
	r.bodies = append(r.bodies, body)
	r.times = append(r.times, time.Now())
	n := len(r.got)
	r.mu.Unlock()
	if r.answer != nil {
		r.answer(n, w, req)
	}
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// request returns the i-th request's header and body.
func (r *receiver) request(i int) (http.Header, []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[i], r.bodies[i]
}

// secretFile writes a new secret and returns its path and bytes.
func secretFile(t *testing.T) (string, []byte) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cb.secret")
	if err := alarm.GenerateSecret(p); err != nil {
		t.Fatal(err)
	}
	s, err := alarm.ReadSecret(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, s
}

func intp(n int) *int { return &n }

// testConfig is a config for a local receiver at url: allow_private
// (127.0.0.1 is loopback), 1s per attempt, 2 retries.
func testConfig(t *testing.T, url string) (Config, []byte) {
	t.Helper()
	path, secret := secretFile(t)
	return Config{URL: url, SecretFile: path, AllowPrivate: true, Timeout: config.Duration(time.Second), Retries: intp(2)}, secret
}

// testSender returns a Sender of testConfig changed by mod, with quick
// retries (10ms to 100ms).
func testSender(t *testing.T, url string, mod func(*Config)) (*Sender, []byte) {
	t.Helper()
	c, secret := testConfig(t, url)
	if mod != nil {
		mod(&c)
	}
	s, err := New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.client.RetryWaitMin, s.client.RetryWaitMax = 10*time.Millisecond, 100*time.Millisecond
	return s, secret
}

var delivery = Delivery{ID: "7ab3ab2309efcd4a2b676c7760a16212-done", Body: []byte(`{"id":"7ab3ab2309efcd4a2b676c7760a16212","status":"done"}`)}

func TestDeliver_signed(t *testing.T) {
	r := newReceiver(t, nil)
	s, secret := testSender(t, r.srv.URL+"/results", nil)
	if err := s.Deliver(context.Background(), delivery); err != nil {
		t.Fatal(err)
	}
	if r.count() != 1 {
		t.Fatalf("%d requests, want 1", r.count())
	}
	h, body := r.request(0)
	for k, want := range map[string]string{
		"webhook-id": delivery.ID, "Idempotency-Key": delivery.ID,
		"Content-Type": "application/json", "User-Agent": "ferry-dmz-agent",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if !bytes.Equal(body, delivery.Body) {
		t.Fatalf("body %s", body)
	}
	if err := Verify(secret, h, body, time.Now()); err != nil {
		t.Fatalf("the receiver cannot verify the callback: %v", err)
	}
	if err := Verify(secret, h, append(body, ' '), time.Now()); !errors.Is(err, alarm.ErrBadSignature) {
		t.Fatalf("a changed body: %v", err)
	}
	other := bytes.Clone(secret)
	other[0] ^= 1
	if err := Verify(other, h, body, time.Now()); !errors.Is(err, alarm.ErrBadSignature) {
		t.Fatalf("another secret: %v", err)
	}
	if err := Verify(secret, h, body, time.Now().Add(10*time.Minute)); !errors.Is(err, alarm.ErrTimestamp) {
		t.Fatalf("a callback 10 minutes old: %v", err)
	}
}

// TestDeliver_retried: a receiver failing twice gets the same idempotency
// key three times, each attempt signed anew with its own timestamp, and
// the delivery succeeds once.
func TestDeliver_retried(t *testing.T) {
	r := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n <= 2 {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	s, secret := testSender(t, r.srv.URL, nil)
	// A clock a second on at each signature, so that each attempt has
	// its own timestamp however quick the retries.
	var clock atomic.Int64
	start := time.Now()
	s.now = func() time.Time { return start.Add(time.Duration(clock.Add(1)) * time.Second) }
	if err := s.Deliver(context.Background(), delivery); err != nil {
		t.Fatal(err)
	}
	if r.count() != 3 {
		t.Fatalf("%d attempts, want 3", r.count())
	}
	var lastTS int64
	sigs := map[string]bool{}
	for i := range 3 {
		h, body := r.request(i)
		if h.Get("webhook-id") != delivery.ID || h.Get("Idempotency-Key") != delivery.ID {
			t.Errorf("attempt %d: id %q key %q", i, h.Get("webhook-id"), h.Get("Idempotency-Key"))
		}
		if err := Verify(secret, h, body, start); err != nil {
			t.Errorf("attempt %d does not verify: %v", i, err)
		}
		ts, _ := strconv.ParseInt(h.Get("webhook-timestamp"), 10, 64)
		if ts <= lastTS {
			t.Errorf("attempt %d: timestamp %d after %d: not signed anew", i, ts, lastTS)
		}
		lastTS = ts
		sigs[h.Get("webhook-signature")] = true
	}
	if len(sigs) != 3 {
		t.Errorf("%d distinct signatures in 3 attempts", len(sigs))
	}
}

func TestDeliver_failures(t *testing.T) {
	// A second server that must never be reached through a redirect.
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere.Add(1) }))
	t.Cleanup(other.Close)
	status := func(code int) func(int, http.ResponseWriter, *http.Request) {
		return func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }
	}
	firstThenOK := func(code int) func(int, http.ResponseWriter, *http.Request) {
		return func(n int, w http.ResponseWriter, _ *http.Request) {
			if n == 1 {
				w.WriteHeader(code)
			}
		}
	}
	for _, c := range []struct {
		name      string
		answer    func(n int, w http.ResponseWriter, r *http.Request)
		delivered bool
		permanent bool
		attempts  int
	}{
		{"302", func(_ int, w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+"/elsewhere", http.StatusFound)
		}, false, true, 1},
		{"307", func(_ int, w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+"/elsewhere", http.StatusTemporaryRedirect)
		}, false, true, 1},
		{"400", status(http.StatusBadRequest), false, true, 1},
		{"401", status(http.StatusUnauthorized), false, true, 1},
		{"410", status(http.StatusGone), false, true, 1},
		{"always 503", status(http.StatusServiceUnavailable), false, false, 3},
		{"always 500", status(http.StatusInternalServerError), false, false, 3},
		{"501", status(http.StatusNotImplemented), false, false, 1},
		{"always 429", status(http.StatusTooManyRequests), false, false, 3},
		{"429 then ok", firstThenOK(http.StatusTooManyRequests), true, false, 2},
		{"408 then ok", firstThenOK(http.StatusRequestTimeout), true, false, 2},
		{"502 then ok", firstThenOK(http.StatusBadGateway), true, false, 2},
		{"204", status(http.StatusNoContent), true, false, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newReceiver(t, c.answer)
			url := r.srv.URL + "/cb?token=s3cret-token"
			s, _ := testSender(t, url, nil)
			err := s.Deliver(context.Background(), delivery)
			switch {
			case c.delivered && err != nil:
				t.Fatalf("not delivered: %v", err)
			case !c.delivered && err == nil:
				t.Fatal("delivered")
			case err != nil && errors.Is(err, ErrPermanent) != c.permanent:
				t.Fatalf("error %v: permanent %v, want %v", err, errors.Is(err, ErrPermanent), c.permanent)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the error names the URL: %v", err)
			}
			if err != nil && !c.permanent && !strings.Contains(err.Error(), fmt.Sprintf("after %d attempt", c.attempts)) {
				t.Errorf("the error does not count %d attempts: %v", c.attempts, err)
			}
			if r.count() != c.attempts {
				t.Fatalf("%d attempts, want %d", r.count(), c.attempts)
			}
		})
	}
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("a redirect was followed: %d requests elsewhere", n)
	}
}

// TestDeliver_retryAfter: a 429's Retry-After is waited for, up to the
// cap on the wait between attempts.
func TestDeliver_retryAfter(t *testing.T) {
	for _, c := range []struct {
		name        string
		retryAfter  string
		waitMax     time.Duration
		least, most time.Duration
	}{
		{"honoured", "1", 3 * time.Second, time.Second, 2500 * time.Millisecond},
		{"capped", "3600", 200 * time.Millisecond, 0, time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
				if n == 1 {
					w.Header().Set("Retry-After", c.retryAfter)
					w.WriteHeader(http.StatusTooManyRequests)
				}
			})
			s, _ := testSender(t, r.srv.URL, nil)
			s.client.RetryWaitMax = c.waitMax
			start := time.Now()
			if err := s.Deliver(context.Background(), delivery); err != nil {
				t.Fatal(err)
			}
			if r.count() != 2 {
				t.Fatalf("%d attempts, want 2", r.count())
			}
			r.mu.Lock()
			gap := r.times[1].Sub(r.times[0])
			r.mu.Unlock()
			if gap < c.least || time.Since(start) > c.most {
				t.Fatalf("retried after %v (all in %v), want at least %v and all within %v", gap, time.Since(start), c.least, c.most)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	const minWait, maxWait = 100 * time.Millisecond, time.Second
	for attempt := range 8 {
		want := min(minWait<<attempt, maxWait)
		for range 50 {
			if d := backoff(minWait, maxWait, attempt, nil); d > want || d < want-want/5 {
				t.Fatalf("attempt %d: %v, want %v less at most a fifth", attempt, d, want)
			}
		}
	}
	ra := &http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"0"}}}
	if d := backoff(minWait, maxWait, 0, ra); d != 0 {
		t.Fatalf("Retry-After 0: %v", d)
	}
	ra.Header.Set("Retry-After", "3600")
	if d := backoff(minWait, maxWait, 0, ra); d > maxWait {
		t.Fatalf("Retry-After 3600: %v, beyond the cap %v", d, maxWait)
	}
	ra.StatusCode = http.StatusServiceUnavailable
	ra.Header.Set("Retry-After", "1")
	for range 50 {
		if d := backoff(10*time.Millisecond, 2*time.Second, 0, ra); d < time.Second || d > 2*time.Second {
			t.Fatalf("503 Retry-After 1: %v, want 1s to 2s", d)
		}
	}
}

// TestDeliver_timeout: a receiver that does not answer costs one timeout
// per attempt, and the failure is temporary.
func TestDeliver_timeout(t *testing.T) {
	release := make(chan struct{})
	r := newReceiver(t, func(_ int, _ http.ResponseWriter, req *http.Request) {
		select {
		case <-release:
		case <-req.Context().Done():
		}
	})
	defer close(release)
	s, _ := testSender(t, r.srv.URL, func(c *Config) { c.Retries = intp(1) })
	start := time.Now()
	err := s.Deliver(context.Background(), delivery)
	if err == nil || errors.Is(err, ErrPermanent) {
		t.Fatalf("error %v, want a temporary one", err)
	}
	if d := time.Since(start); d < 2*time.Second || d > 4*time.Second {
		t.Fatalf("took %v with two attempts of 1s", d)
	}
	if r.count() != 2 {
		t.Fatalf("%d attempts, want 2", r.count())
	}
}

// TestDeliver_context: ctx bounds the whole delivery, retries and waits
// included.
func TestDeliver_context(t *testing.T) {
	r := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	s, _ := testSender(t, r.srv.URL, func(c *Config) { c.Retries = intp(10) })
	s.client.RetryWaitMin, s.client.RetryWaitMax = time.Second, 5*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.Deliver(ctx, delivery)
	if err == nil || errors.Is(err, ErrPermanent) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want a temporary one from the context", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v with a context of 300ms", d)
	}
}

// TestDeliver_boundedAnswer: an endless answer is not read to its end,
// and an oversized header fails the attempt.
func TestDeliver_boundedAnswer(t *testing.T) {
	r := newReceiver(t, func(_ int, w http.ResponseWriter, req *http.Request) {
		chunk := bytes.Repeat([]byte("x"), 32<<10)
		for req.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	s, _ := testSender(t, r.srv.URL, func(c *Config) { c.Timeout = config.Duration(5 * time.Second) })
	start := time.Now()
	if err := s.Deliver(context.Background(), delivery); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("an endless answer took %v", d)
	}

	big := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Big", strings.Repeat("y", 100<<10))
	})
	s, _ = testSender(t, big.srv.URL, func(c *Config) { c.Retries = intp(0) })
	if err := s.Deliver(context.Background(), delivery); err == nil || errors.Is(err, ErrPermanent) {
		t.Fatalf("a 100 KB header: %v, want a temporary failure", err)
	}
}

// TestDeliver_privateRefused: without allow_private, no connection is
// made to a loopback or unspecified address, given as a name or as an
// address; the check is at dial time, after resolution.
func TestDeliver_privateRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	deliver := func(s *Sender, u string) {
		t.Helper()
		err := s.Deliver(context.Background(), delivery)
		if !errors.Is(err, ErrPermanent) || !errors.Is(err, ErrAddress) {
			t.Errorf("%s: %v, want a refused address", u, err)
		}
	}
	cfgFor := func(u string) Config {
		path, _ := secretFile(t)
		return Config{URL: u, SecretFile: path, Timeout: config.Duration(time.Second), Retries: intp(2)}
	}

	// A name: only the dial-time check can see where it leads.
	u := "https://localhost:" + port + "/cb"
	s, err := New(cfgFor(u), nil)
	if err != nil {
		t.Fatal(err)
	}
	deliver(s, u)

	// Addresses: Check refuses them, and so does the dial-time check
	// (shown here without Check).
	for _, u := range []string{"https://127.0.0.1:" + port + "/cb", "https://[::ffff:127.0.0.1]:" + port + "/cb",
		"http://127.0.0.1:" + port + "/cb", "https://0.0.0.0:" + port + "/cb"} {
		if _, err := New(cfgFor(u), nil); err == nil {
			t.Errorf("%s: New accepts it without allow_private", u)
		}
		s, err := newSender(cfgFor(u), nil)
		if err != nil {
			t.Fatal(err)
		}
		deliver(s, u)
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("%d connections reached the loopback receiver", n)
	}

	// The control: with allow_private, the listener is reached.
	c := cfgFor("http://127.0.0.1:" + port + "/cb")
	c.AllowPrivate, c.Retries = true, intp(0)
	s, err = New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Deliver(context.Background(), delivery); err == nil || errors.Is(err, ErrPermanent) {
		t.Fatalf("a connection closed at once: %v, want a temporary failure", err)
	}
	if accepted.Load() == 0 {
		t.Fatal("allow_private: the loopback receiver was not reached")
	}
}

func TestRefusePrivate(t *testing.T) {
	for _, c := range []struct {
		addr string
		ok   bool
	}{
		{"8.8.8.8:443", true}, {"[2001:4860:4860::8888]:443", true},
		{"127.0.0.1:443", false}, {"[::1]:443", false}, {"169.254.169.254:80", false},
		{"[::ffff:169.254.169.254]:80", false}, {"[::ffff:127.0.0.1]:443", false}, {"10.0.0.1:443", false},
		{"[fe80::1%eth0]:443", false}, {"0.0.0.0:443", false}, {"localhost:443", false}, {"", false},
	} {
		err := refusePrivate("tcp", c.addr, nil)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrAddress)) {
			t.Errorf("%q: %v, want allowed %v", c.addr, err, c.ok)
		}
	}
}

func TestPublic(t *testing.T) {
	for _, c := range []struct {
		addr   string
		public bool
	}{
		{"8.8.8.8", true}, {"2001:4860:4860::8888", true}, {"101.6.6.6", true}, {"::ffff:8.8.8.8", true},
		{"127.0.0.1", false}, {"127.1.2.3", false}, {"::1", false},
		{"10.1.2.3", false}, {"172.16.0.1", false}, {"172.31.255.255", false}, {"192.168.1.1", false},
		{"169.254.169.254", false}, {"fe80::1", false}, {"fc00::1", false}, {"fd12::1", false},
		{"100.64.0.1", false}, {"100.127.255.255", false}, {"0.0.0.0", false}, {"::", false},
		{"224.0.0.1", false}, {"239.1.1.1", false}, {"ff02::1", false}, {"ff0e::1", false},
		{"::ffff:10.0.0.1", false}, {"::ffff:127.0.0.1", false}, {"::ffff:169.254.169.254", false}, {"::ffff:100.64.0.1", false},
		{"192.0.2.1", false}, {"198.18.0.1", false}, {"64:ff9b::a00:1", false}, {"2002:a00:1::", false},
		{"255.255.255.255", false}, {"240.0.0.1", false},
	} {
		if got := Public(netip.MustParseAddr(c.addr)); got != c.public {
			t.Errorf("Public(%s) = %v, want %v", c.addr, got, c.public)
		}
	}
	if Public(netip.Addr{}) {
		t.Error("the zero Addr is public")
	}
}

func TestConfig_Check(t *testing.T) {
	good := Config{URL: "https://portal.example/cb?token=s3cret", SecretFile: "s"}
	for _, c := range []struct {
		name string
		mod  func(*Config)
	}{
		{"defaults", func(*Config) {}},
		{"http with allow_private", func(c *Config) { c.URL, c.AllowPrivate = "http://10.0.0.5/cb", true }},
		{"a private address with allow_private", func(c *Config) { c.URL, c.AllowPrivate = "https://[fd00::5]:8443/cb", true }},
		{"a public address", func(c *Config) { c.URL = "https://8.8.8.8/cb" }},
		{"bounds", func(c *Config) { c.Timeout, c.Retries = config.Duration(time.Minute), intp(10) }},
		{"no retries", func(c *Config) { c.Timeout, c.Retries = config.Duration(time.Second), intp(0) }},
		{"ca_file", func(c *Config) { c.CAFile = "ca.crt" }},
	} {
		cfg := good
		c.mod(&cfg)
		if msg, key := cfg.Check(); msg != "" {
			t.Errorf("%s: %s: %s", c.name, key, msg)
		}
	}
	for _, c := range []struct {
		name string
		mod  func(*Config)
		key  string
	}{
		{"no url", func(c *Config) { c.URL = "" }, "url"},
		{"relative", func(c *Config) { c.URL = "portal.example/cb?token=s3cret" }, "url"},
		{"no host", func(c *Config) { c.URL = "https://:443/cb?token=s3cret" }, "url"},
		{"opaque", func(c *Config) { c.URL = "https:portal.example?token=s3cret" }, "url"},
		{"unparsable", func(c *Config) { c.URL = "https://portal.example/%zz?token=s3cret" }, "url"},
		{"user", func(c *Config) { c.URL = "https://user:s3cret@portal.example/cb" }, "url"},
		{"fragment", func(c *Config) { c.URL = "https://portal.example/cb?token=s3cret#x" }, "url"},
		{"http", func(c *Config) { c.URL = "http://portal.example/cb?token=s3cret" }, "url"},
		{"ftp", func(c *Config) { c.URL = "ftp://portal.example/cb?token=s3cret" }, "url"},
		{"ftp with allow_private", func(c *Config) { c.URL, c.AllowPrivate = "ftp://10.0.0.5/cb?token=s3cret", true }, "url"},
		{"loopback", func(c *Config) { c.URL = "https://127.0.0.1/cb?token=s3cret" }, "url"},
		{"metadata", func(c *Config) { c.URL = "https://169.254.169.254/latest?token=s3cret" }, "url"},
		{"mapped", func(c *Config) { c.URL = "https://[::ffff:10.0.0.1]/cb?token=s3cret" }, "url"},
		{"cgnat", func(c *Config) { c.URL = "https://100.64.0.1/cb?token=s3cret" }, "url"},
		{"no secret", func(c *Config) { c.SecretFile = "" }, "secret_file"},
		{"ca_file with http", func(c *Config) { c.URL, c.AllowPrivate, c.CAFile = "http://10.0.0.5/cb", true, "ca.crt" }, "ca_file"},
		{"timeout short", func(c *Config) { c.Timeout = config.Duration(time.Millisecond) }, "timeout"},
		{"timeout long", func(c *Config) { c.Timeout = config.Duration(61 * time.Second) }, "timeout"},
		{"timeout negative", func(c *Config) { c.Timeout = config.Duration(-time.Second) }, "timeout"},
		{"retries many", func(c *Config) { c.Retries = intp(11) }, "retries"},
		{"retries negative", func(c *Config) { c.Retries = intp(-1) }, "retries"},
	} {
		cfg := good
		c.mod(&cfg)
		msg, key := cfg.Check()
		if msg == "" || key != c.key {
			t.Errorf("%s: %q %q, want a problem with %s", c.name, key, msg, c.key)
		}
		if strings.Contains(msg, "s3cret") {
			t.Errorf("%s: the message repeats the URL: %s", c.name, msg)
		}
		if _, err := New(cfg, nil); err == nil {
			t.Errorf("%s: New accepts it", c.name)
		}
	}
}

func TestConfig_Resolve(t *testing.T) {
	c := Config{SecretFile: "keys/cb.secret", CAFile: "/etc/ca.crt"}.Resolve("/etc/ferry/dmz.yaml")
	if c.SecretFile != "/etc/ferry/keys/cb.secret" || c.CAFile != "/etc/ca.crt" {
		t.Fatalf("%+v", c)
	}
	if c := (Config{}).Resolve("/etc/ferry/dmz.yaml"); c.SecretFile != "" || c.CAFile != "" {
		t.Fatalf("empty files resolved: %+v", c)
	}
}

func TestNew_secret(t *testing.T) {
	path, _ := secretFile(t)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{URL: "https://portal.example/cb", SecretFile: path}, nil); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Fatalf("a 0644 secret: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.secret")
	if err := os.WriteFile(bad, []byte("not a secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{URL: "https://portal.example/cb", SecretFile: bad}, nil); !errors.Is(err, alarm.ErrSecret) {
		t.Fatalf("a file without whsec_: %v", err)
	}
	if _, err := New(Config{URL: "https://portal.example/cb", SecretFile: filepath.Join(t.TempDir(), "none")}, nil); err == nil {
		t.Fatal("a missing secret file")
	}
}

// TestDeliver_privateCA: a receiver whose certificate comes from a
// private CA is reached with ca_file, and not without it.
func TestDeliver_privateCA(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	s, _ := testSender(t, srv.URL, func(c *Config) { c.CAFile = ca })
	if err := s.Deliver(context.Background(), delivery); err != nil {
		t.Fatalf("with ca_file: %v", err)
	}
	s, _ = testSender(t, srv.URL, nil)
	err := s.Deliver(context.Background(), delivery)
	if err == nil || errors.Is(err, ErrPermanent) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without ca_file: %v, want a temporary certificate failure", err)
	}
	if hits.Load() != 1 {
		t.Fatalf("%d requests reached the receiver, want 1", hits.Load())
	}

	notPEM := filepath.Join(t.TempDir(), "ca.txt")
	os.WriteFile(notPEM, []byte("nothing"), 0o644)
	for _, f := range []string{notPEM, filepath.Join(t.TempDir(), "none")} {
		c, _ := testConfig(t, srv.URL)
		c.CAFile = f
		if _, err := New(c, nil); err == nil || !strings.Contains(err.Error(), "ca_file") {
			t.Errorf("ca_file %s: %v", f, err)
		}
	}
}

// TestDeliver_invalid: a delivery that could not be verified or is not
// JSON is refused before anything is sent.
func TestDeliver_invalid(t *testing.T) {
	r := newReceiver(t, nil)
	s, _ := testSender(t, r.srv.URL, nil)
	for _, d := range []Delivery{
		{ID: "", Body: delivery.Body},
		{ID: "7ab3.done", Body: delivery.Body},
		{ID: "a b", Body: delivery.Body},
		{ID: "a\r\nX-Injected: 1", Body: delivery.Body},
		{ID: "é", Body: delivery.Body},
		{ID: strings.Repeat("a", MaxIDLen+1), Body: delivery.Body},
		{ID: delivery.ID, Body: []byte(`{"id":`)},
		{ID: delivery.ID},
	} {
		if err := s.Deliver(context.Background(), d); !errors.Is(err, ErrPermanent) {
			t.Errorf("%q %q: %v, want a permanent error", d.ID, d.Body, err)
		}
	}
	if r.count() != 0 {
		t.Fatalf("%d invalid deliveries sent", r.count())
	}
}

// TestDeliver_concurrent: one Sender delivers from many goroutines.
func TestDeliver_concurrent(t *testing.T) {
	// The first attempt of each delivery fails.
	var seen sync.Map
	r := newReceiver(t, func(_ int, w http.ResponseWriter, req *http.Request) {
		if _, again := seen.LoadOrStore(req.Header.Get("webhook-id"), true); !again {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	s, secret := testSender(t, r.srv.URL, nil)
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Go(func() {
			errs[i] = s.Deliver(context.Background(), Delivery{ID: fmt.Sprintf("req%d-done", i), Body: delivery.Body})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("delivery %d: %v", i, err)
		}
	}
	if r.count() != 2*len(errs) {
		t.Fatalf("%d requests, want %d", r.count(), 2*len(errs))
	}
	for i := range r.count() {
		h, body := r.request(i)
		if err := Verify(secret, h, body, time.Now()); err != nil || h.Get("webhook-id") != h.Get("Idempotency-Key") {
			t.Errorf("request %d: %v", i, err)
		}
	}
	s.CloseIdleConnections()
}

// TestDeliver_log: a retried attempt is logged with the delivery's id,
// never the URL.
func TestDeliver_log(t *testing.T) {
	r := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	c, _ := testConfig(t, r.srv.URL+"/cb?token=s3cret")
	var buf bytes.Buffer
	var mu sync.Mutex
	s, err := New(c, slog.New(slog.NewJSONHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	s.client.RetryWaitMin = 10 * time.Millisecond
	if err := s.Deliver(context.Background(), delivery); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if !strings.Contains(out, `"webhook_id":"`+delivery.ID+`"`) || !strings.Contains(out, `"status":"503 Service Unavailable"`) {
		t.Fatalf("log %s", out)
	}
	if strings.Contains(out, "s3cret") || strings.Contains(out, "127.0.0.1") || strings.Contains(out, "7ab3ab2309efcd4a2b676c7760a16212\",\"status\":\"done") {
		t.Fatalf("the log names the URL or the body: %s", out)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestSender_noProxy(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "http://proxy.example:3128")
	t.Setenv("HTTP_PROXY", "http://proxy.example:3128")
	s, _ := testSender(t, "https://portal.example/cb", nil)
	tr := s.client.HTTPClient.Transport.(*http.Transport)
	if tr.Proxy != nil {
		t.Fatal("the transport takes a proxy")
	}
	if tr.TLSClientConfig == nil || tr.TLSClientConfig.MinVersion < 0x0303 {
		t.Fatal("TLS below 1.2 allowed")
	}
}

func TestMetrics(t *testing.T) {
	m := NewMetrics()
	m.Count(nil)
	m.Count(nil)
	m.Count(fmt.Errorf("%w: the receiver answered 400 Bad Request", ErrPermanent))
	m.Count(errors.New("callback not delivered after 4 attempts: the receiver answered 503 Service Unavailable"))
	m.Count(context.Canceled)
	(*Metrics)(nil).Count(nil)
	want := `
# HELP ferry_callback_deliveries_total Result callback deliveries by outcome: delivered, failed (tried again later), refused (for good).
# TYPE ferry_callback_deliveries_total counter
ferry_callback_deliveries_total{outcome="delivered"} 2
ferry_callback_deliveries_total{outcome="failed"} 2
ferry_callback_deliveries_total{outcome="refused"} 1
`
	if err := testutil.CollectAndCompare(m, strings.NewReader(want), MetricDeliveries); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(NewMetrics()); n != 3 {
		t.Fatalf("a new Metrics has %d series, want the 3 outcomes at 0", n)
	}
}
