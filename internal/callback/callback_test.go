package callback

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/alarm"
	"github.com/ferrybridge/ferry/internal/config"
)

// receiver is a local callback receiver that records what it got.
type receiver struct {
	mu     sync.Mutex
	got    []http.Header
	bodies [][]byte
	answer func(n int, w http.ResponseWriter) // n: 1 for the first request
	srv    *httptest.Server
}

func newReceiver(t *testing.T, answer func(n int, w http.ResponseWriter)) *receiver {
	t.Helper()
	r := &receiver{answer: answer}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, req.Header.Clone())
		r.bodies = append(r.bodies, body)
		n := len(r.got)
		r.mu.Unlock()
		r.answer(n, w)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
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

func newSender(t *testing.T, url string, mod func(*Config)) (*Sender, []byte) {
	t.Helper()
	path, secret := secretFile(t)
	c := Config{URL: url, SecretFile: path, AllowPrivate: true, Timeout: config.Duration(time.Second), Retries: intp(2)}
	if mod != nil {
		mod(&c)
	}
	s, err := New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, secret
}

var delivery = Delivery{ID: "7ab3ab2309efcd4a2b676c7760a16212-done", Body: []byte(`{"id":"7ab3ab2309efcd4a2b676c7760a16212","status":"done"}`)}

func TestDeliver_signed(t *testing.T) {
	r := newReceiver(t, func(int, http.ResponseWriter) {})
	s, secret := newSender(t, r.srv.URL+"/results", nil)
	if err := s.Deliver(context.Background(), delivery); err != nil {
		t.Fatal(err)
	}
	h := r.got[0]
	if h.Get("webhook-id") != delivery.ID || h.Get("Idempotency-Key") != delivery.ID || h.Get("Content-Type") != "application/json" {
		t.Fatalf("headers %v", h)
	}
	if err := Verify(secret, h, r.bodies[0], time.Now()); err != nil {
		t.Fatalf("the receiver cannot verify the callback: %v", err)
	}
	if err := Verify(secret, h, append(r.bodies[0], ' '), time.Now()); err == nil {
		t.Fatal("a changed body verifies")
	}
	if err := Verify(secret, h, r.bodies[0], time.Now().Add(10*time.Minute)); err == nil {
		t.Fatal("a callback 10 minutes old verifies")
	}
}

// TestDeliver_retried: a receiver failing twice gets the same idempotency
// key three times, each attempt signed anew, and the delivery succeeds.
func TestDeliver_retried(t *testing.T) {
	r := newReceiver(t, func(n int, w http.ResponseWriter) {
		if n <= 2 {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	s, secret := newSender(t, r.srv.URL, nil)
	if err := s.Deliver(context.Background(), delivery); err != nil {
		t.Fatal(err)
	}
	if r.count() != 3 {
		t.Fatalf("%d attempts, want 3", r.count())
	}
	for i, h := range r.got {
		if h.Get("webhook-id") != delivery.ID || h.Get("Idempotency-Key") != delivery.ID {
			t.Errorf("attempt %d: id %q key %q", i, h.Get("webhook-id"), h.Get("Idempotency-Key"))
		}
		if err := Verify(secret, h, r.bodies[i], time.Now()); err != nil {
			t.Errorf("attempt %d does not verify: %v", i, err)
		}
	}
}

func TestDeliver_failures(t *testing.T) {
	// A second server that must never be reached through a redirect.
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere.Add(1) }))
	t.Cleanup(other.Close)
	for _, c := range []struct {
		name      string
		answer    func(n int, w http.ResponseWriter)
		permanent bool
		attempts  int
	}{
		{"redirect", func(_ int, w http.ResponseWriter) {
			w.Header().Set("Location", other.URL)
			w.WriteHeader(http.StatusFound)
		}, true, 1},
		{"bad request", func(_ int, w http.ResponseWriter) { w.WriteHeader(http.StatusBadRequest) }, true, 1},
		{"gone", func(_ int, w http.ResponseWriter) { w.WriteHeader(http.StatusGone) }, true, 1},
		{"always 503", func(_ int, w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) }, false, 3},
		{"429 then ok", func(n int, w http.ResponseWriter) {
			if n == 1 {
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusTooManyRequests)
			}
		}, false, 2},
		{"408 then ok", func(n int, w http.ResponseWriter) {
			if n == 1 {
				w.WriteHeader(http.StatusRequestTimeout)
			}
		}, false, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newReceiver(t, c.answer)
			s, _ := newSender(t, r.srv.URL, nil)
			err := s.Deliver(context.Background(), delivery)
			switch {
			case c.name == "429 then ok" || c.name == "408 then ok":
				if err != nil {
					t.Fatalf("not delivered: %v", err)
				}
			case err == nil:
				t.Fatal("delivered")
			case errors.Is(err, ErrPermanent) != c.permanent:
				t.Fatalf("error %v: permanent %v, want %v", err, errors.Is(err, ErrPermanent), c.permanent)
			}
			if err != nil && strings.Contains(err.Error(), r.srv.URL) {
				t.Errorf("the error names the URL: %v", err)
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

// TestDeliver_timeout: a receiver that does not answer costs one timeout
// per attempt, and the failure is temporary.
func TestDeliver_timeout(t *testing.T) {
	release := make(chan struct{})
	r := newReceiver(t, func(int, http.ResponseWriter) { <-release })
	defer close(release)
	s, _ := newSender(t, r.srv.URL, func(c *Config) { c.Retries = intp(0) })
	start := time.Now()
	err := s.Deliver(context.Background(), delivery)
	if err == nil || errors.Is(err, ErrPermanent) {
		t.Fatalf("error %v, want a temporary one", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v with a 1s timeout", d)
	}
}

// TestDeliver_privateRefused: without allow_private, no connection is
// made to a loopback address, given as one or as a name.
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
	for _, u := range []string{"http://127.0.0.1:" + port + "/cb", "https://127.0.0.1:" + port + "/cb", "https://localhost:" + port + "/cb", "https://[::ffff:127.0.0.1]:" + port + "/cb"} {
		path, _ := secretFile(t)
		cfg := Config{URL: u, SecretFile: path, Timeout: config.Duration(time.Second), Retries: intp(2)}
		if strings.HasPrefix(u, "http:") {
			if msg, _ := cfg.Check(); msg == "" {
				t.Errorf("%s: http:// accepted without allow_private", u)
			}
			continue
		}
		s, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = s.Deliver(context.Background(), delivery)
		if !errors.Is(err, ErrPermanent) || !errors.Is(err, ErrAddress) {
			t.Errorf("%s: %v, want a refused address", u, err)
		}
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("%d connections reached the loopback receiver", n)
	}
}

func TestPublic(t *testing.T) {
	for _, c := range []struct {
		addr   string
		public bool
	}{
		{"8.8.8.8", true}, {"2001:4860:4860::8888", true}, {"101.6.6.6", true},
		{"127.0.0.1", false}, {"::1", false}, {"10.1.2.3", false}, {"172.16.0.1", false}, {"192.168.1.1", false},
		{"169.254.169.254", false}, {"fe80::1", false}, {"fc00::1", false}, {"fd12::1", false},
		{"100.64.0.1", false}, {"0.0.0.0", false}, {"::", false}, {"224.0.0.1", false}, {"ff02::1", false},
		{"::ffff:10.0.0.1", false}, {"::ffff:8.8.8.8", true}, {"192.0.2.1", false}, {"198.18.0.1", false},
		{"64:ff9b::a00:1", false}, {"2002:a00:1::", false}, {"255.255.255.255", false},
	} {
		if got := Public(netip.MustParseAddr(c.addr)); got != c.public {
			t.Errorf("Public(%s) = %v, want %v", c.addr, got, c.public)
		}
	}
}

func TestConfig_Check(t *testing.T) {
	ok := Config{URL: "https://portal.example/cb", SecretFile: "s"}
	if msg, key := ok.Check(); msg != "" {
		t.Fatalf("a good config: %s: %s", key, msg)
	}
	for _, c := range []struct {
		mod func(*Config)
		key string
	}{
		{func(c *Config) { c.URL = "" }, "url"},
		{func(c *Config) { c.URL = "portal.example/cb" }, "url"},
		{func(c *Config) { c.URL = "https://user:pw@portal.example/cb" }, "url"},
		{func(c *Config) { c.URL = "https://portal.example/cb#x" }, "url"},
		{func(c *Config) { c.URL = "http://portal.example/cb" }, "url"},
		{func(c *Config) { c.URL = "ftp://portal.example/cb" }, "url"},
		{func(c *Config) { c.SecretFile = "" }, "secret_file"},
		{func(c *Config) { c.Timeout = config.Duration(time.Millisecond) }, "timeout"},
		{func(c *Config) { c.Retries = intp(11) }, "retries"},
	} {
		cfg := ok
		c.mod(&cfg)
		if msg, key := cfg.Check(); msg == "" || key != c.key {
			t.Errorf("%+v: %q %q, want a problem with %s", cfg, key, msg, c.key)
		}
		if msg, _ := cfg.Check(); strings.Contains(msg, "pw@") {
			t.Errorf("the message repeats the URL: %s", msg)
		}
	}
	allowed := ok
	allowed.URL, allowed.AllowPrivate = "http://10.0.0.5/cb", true
	if msg, key := allowed.Check(); msg != "" {
		t.Fatalf("http:// with allow_private: %s: %s", key, msg)
	}
}

func TestNew_looseSecret(t *testing.T) {
	path, _ := secretFile(t)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{URL: "https://portal.example/cb", SecretFile: path}, nil); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Fatalf("a 0644 secret: %v", err)
	}
}
