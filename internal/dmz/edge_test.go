package dmz

import (
	"context"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// spooled returns how many requests the spool holds, in any state.
func (e *env) spooled(t testing.TB) int {
	t.Helper()
	counts, err := e.agent.spool.CountRequests(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range counts {
		n += c
	}
	return n
}

// edgeRefusals returns ferry_api_refused_total{reason}.
func (e *env) edgeRefusals(t testing.TB, reason string) float64 {
	t.Helper()
	mfs, err := e.agent.ops.Metrics.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ferry_api_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelOf(m, "reason") == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// rewriteConfig replaces old with new in the agent's config file and
// reloads it.
func (e *env) rewriteConfig(t testing.TB, old, new string) {
	t.Helper()
	e.rewriteFile(t, old, new)
	if err := e.agent.Reload(); err != nil {
		t.Fatal(err)
	}
}

// rewriteFile replaces old with new in the agent's config file.
func (e *env) rewriteFile(t testing.TB, old, new string) {
	t.Helper()
	data, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(data), old, new, 1)
	if text == string(data) {
		t.Fatalf("config does not hold %q", old)
	}
	if err := os.WriteFile(e.cfgPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestEdge_blockAndAllow: a blocked address, or one outside the allow
// list, gets 403 ip_forbidden on every path, before authentication, and
// stores nothing; SIGHUP's reload changes the lists at once.
func TestEdge_blockAndAllow(t *testing.T) {
	e := startEnvWith(t, envOptions{extra: "limits:\n  block: [192.0.2.0/24]\n"})
	e.rewriteConfig(t, "block: [192.0.2.0/24]", "block: [127.0.0.0/8]")
	for _, c := range []struct{ method, path, token string }{
		{http.MethodPost, "/v1/requests", tokenPortal},
		{http.MethodPost, "/v1/requests", "fy_wrong"},
		{http.MethodGet, "/v1/operations", ""},
		{http.MethodGet, "/healthz", ""},
		{http.MethodGet, "/readyz", ""},
	} {
		r := e.do(t, c.method, c.path, c.token, goodBody(t), nil)
		if r.code != http.StatusForbidden || r.reason() != ReasonIPForbidden {
			t.Errorf("%s %s from a blocked address: HTTP %d %s", c.method, c.path, r.code, r.raw)
		}
	}
	if n := e.spooled(t); n != 0 {
		t.Fatalf("%d requests spooled from a blocked address", n)
	}
	if got := e.edgeRefusals(t, ReasonIPForbidden); got != 5 {
		t.Errorf("ferry_api_refused_total{reason=ip_forbidden} = %v, want 5", got)
	}

	// An allow list that does not hold the address.
	e.rewriteConfig(t, "block: [127.0.0.0/8]", "allow: [10.0.0.0/8, 192.0.2.7]")
	if r := e.do(t, http.MethodPost, "/v1/requests", tokenPortal, goodBody(t), nil); r.code != http.StatusForbidden {
		t.Fatalf("outside the allow list: HTTP %d %s", r.code, r.raw)
	}
	// One that does, with a block list that wins over it.
	e.rewriteConfig(t, "allow: [10.0.0.0/8, 192.0.2.7]", "allow: [127.0.0.1]\n  block: [127.0.0.2/32]")
	if r := e.do(t, http.MethodPost, "/v1/requests", tokenPortal, goodBody(t), nil); r.code != http.StatusAccepted {
		t.Fatalf("inside the allow list: HTTP %d %s", r.code, r.raw)
	}
}

// TestEdge_forwardedFor: X-Forwarded-For is believed only from a trusted
// proxy, and then only its rightmost untrusted address: a client cannot
// choose the address it is filtered and limited as.
func TestEdge_forwardedFor(t *testing.T) {
	e := startEnvWith(t, envOptions{extra: "limits:\n  block: [203.0.113.9]\n"})
	spoof := map[string]string{"X-Forwarded-For": "203.0.113.9"}
	// No trusted proxy: the header is ignored, both ways.
	if r := e.do(t, http.MethodPost, "/v1/requests", tokenPortal, goodBody(t), spoof); r.code != http.StatusAccepted {
		t.Fatalf("X-Forwarded-For believed from an untrusted peer: HTTP %d %s", r.code, r.raw)
	}
	e.rewriteConfig(t, "block: [203.0.113.9]", "block: [127.0.0.1]")
	if r := e.do(t, http.MethodPost, "/v1/requests", tokenPortal, goodBody(t), map[string]string{"X-Forwarded-For": "198.51.100.1"}); r.code != http.StatusForbidden {
		t.Fatalf("a blocked peer escaped by X-Forwarded-For: HTTP %d %s", r.code, r.raw)
	}

	// 127.0.0.1 is a trusted proxy now; the real client is the
	// rightmost address that is not a trusted proxy.
	e.rewriteConfig(t, "block: [127.0.0.1]", "block: [203.0.113.9]\n  trusted_proxies: [127.0.0.1/32, 10.1.0.0/16]")
	for _, c := range []struct {
		xff  string
		code int
	}{
		{"203.0.113.9", http.StatusForbidden},
		// What the client wrote comes first; the proxy appends the peer.
		{"198.51.100.1, 203.0.113.9", http.StatusForbidden},
		{"203.0.113.9, 198.51.100.1", http.StatusAccepted},
		// A second trusted proxy in the chain is skipped.
		{"203.0.113.9, 10.1.2.3", http.StatusForbidden},
		// A malformed header from the proxy: the proxy is the source.
		{"not-an-address", http.StatusAccepted},
		// No header: the proxy itself.
		{"", http.StatusAccepted},
	} {
		hdr := map[string]string{}
		if c.xff != "" {
			hdr["X-Forwarded-For"] = c.xff
		}
		if r := e.do(t, http.MethodPost, "/v1/requests", tokenPortal, goodBody(t), hdr); r.code != c.code {
			t.Errorf("X-Forwarded-For %q via a trusted proxy: HTTP %d %s, want %d", c.xff, r.code, r.raw, c.code)
		}
	}
}

// TestEdge_ipRate: each source address has a token bucket; past it the
// answer is 429 rate_limited with Retry-After, nothing is stored, and the
// health endpoints are never limited.
func TestEdge_ipRate(t *testing.T) {
	e := startEnvWith(t, envOptions{extra: "limits:\n  ip_rate: {per_second: 0.2, burst: 3}\n"})
	for i := range 3 {
		if r := e.do(t, http.MethodPost, "/v1/requests", tokenPortal, goodBody(t), nil); r.code != http.StatusAccepted {
			t.Fatalf("request %d within the burst: HTTP %d %s", i, r.code, r.raw)
		}
	}
	before := e.spooled(t)
	resp := e.postRaw(t, goodBody(t), nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("past the burst: HTTP %d", resp.StatusCode)
	}
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > 5 {
		t.Errorf("Retry-After %q, want 1 to 5 seconds (one token at 0.2/s)", resp.Header.Get("Retry-After"))
	}
	// Unauthenticated requests count too: the bucket is before the token.
	if r := e.do(t, http.MethodGet, "/v1/operations", "fy_wrong", "", nil); r.code != http.StatusTooManyRequests || r.reason() != ReasonRateLimited {
		t.Errorf("a bad token past the burst: HTTP %d %s", r.code, r.raw)
	}
	if r := e.do(t, http.MethodGet, "/healthz", "", "", nil); r.code != http.StatusOK {
		t.Errorf("healthz limited: HTTP %d", r.code)
	}
	if n := e.spooled(t); n != before {
		t.Fatalf("rate-limited request stored: %d requests, want %d", n, before)
	}
	if got := e.edgeRefusals(t, ReasonRateLimited); got != 2 {
		t.Errorf("ferry_api_refused_total{reason=rate_limited} = %v, want 2", got)
	}
	// A reload lifts the limit at once.
	e.rewriteConfig(t, "ip_rate: {per_second: 0.2, burst: 3}", "ip_rate: {per_second: 0}")
	if r := e.do(t, http.MethodPost, "/v1/requests", tokenPortal, goodBody(t), nil); r.code != http.StatusAccepted {
		t.Fatalf("after lifting the limit: HTTP %d %s", r.code, r.raw)
	}
}

// TestEdge_clientRate: a client's own bucket limits it and no one else;
// a reload that keeps its rate keeps its bucket (no fresh burst).
func TestEdge_clientRate(t *testing.T) {
	// The extra lines extend the last client of the harness, "other".
	e := startEnvWith(t, envOptions{extra: "    rate: {per_second: 0.1, burst: 2}\n"})
	for i := range 2 {
		if r := e.do(t, http.MethodGet, "/v1/operations", tokenOther, "", nil); r.code != http.StatusOK {
			t.Fatalf("request %d within other's burst: HTTP %d %s", i, r.code, r.raw)
		}
	}
	r := e.do(t, http.MethodGet, "/v1/operations", tokenOther, "", nil)
	if r.code != http.StatusTooManyRequests || r.reason() != ReasonRateLimited {
		t.Fatalf("past other's burst: HTTP %d %s", r.code, r.raw)
	}
	for range 5 {
		if r := e.do(t, http.MethodPost, "/v1/requests", tokenPortal, goodBody(t), nil); r.code != http.StatusAccepted {
			t.Fatalf("portal limited by other's bucket: HTTP %d %s", r.code, r.raw)
		}
	}
	// An unrelated change reloads the clients; other's bucket stays empty.
	e.rewriteConfig(t, "drain_timeout: 5s", "drain_timeout: 6s")
	if r := e.do(t, http.MethodGet, "/v1/operations", tokenOther, "", nil); r.code != http.StatusTooManyRequests {
		t.Fatalf("reload refilled other's bucket: HTTP %d %s", r.code, r.raw)
	}
}

// TestEdge_longPollCap: past limits.max_long_polls waiting polls, one
// more is answered 429 too_many_waits at once; a poll without wait, and
// a new long poll once a place is free, are served.
func TestEdge_longPollCap(t *testing.T) {
	e := startEnvWith(t, envOptions{extra: "limits:\n  max_long_polls: 1\n"})
	id := e.submit(t)
	held := make(chan *reply, 1)
	go func() { held <- e.do(t, http.MethodGet, "/v1/requests/"+id+"?wait=2s", tokenPortal, "", nil) }()
	deadline := time.Now().Add(5 * time.Second)
	for e.agent.waits.n.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the first long poll never waited")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	r := e.do(t, http.MethodGet, "/v1/requests/"+id+"?wait=2s", tokenPortal, "", nil)
	if r.code != http.StatusTooManyRequests || r.reason() != ReasonTooManyWaits {
		t.Fatalf("a second long poll: HTTP %d %s", r.code, r.raw)
	}
	if time.Since(start) > time.Second {
		t.Errorf("the refused poll waited %v", time.Since(start))
	}
	if r := e.do(t, http.MethodGet, "/v1/requests/"+id, tokenPortal, "", nil); r.code != http.StatusOK {
		t.Fatalf("a poll without wait: HTTP %d %s", r.code, r.raw)
	}
	if r := <-held; r.code != http.StatusOK {
		t.Fatalf("the first long poll: HTTP %d %s", r.code, r.raw)
	}
	if n := e.agent.waits.n.Load(); n != 0 {
		t.Fatalf("%d places still taken after the poll ended", n)
	}
	if r := e.do(t, http.MethodGet, "/v1/requests/"+id+"?wait=10ms", tokenPortal, "", nil); r.code != http.StatusOK {
		t.Fatalf("a long poll after the first ended: HTTP %d %s", r.code, r.raw)
	}
}

// TestEdge_contentTypeAndKeys: a POST body must be declared JSON, and
// may not repeat a field or spell one in another case; each gets its
// answer and nothing is stored.
func TestEdge_contentTypeAndKeys(t *testing.T) {
	e := startEnv(t)
	for _, c := range []struct {
		name, ct, body string
		code           int
		reason, param  string
	}{
		{"no content type", "-", goodBody(t), http.StatusUnsupportedMediaType, ReasonUnsupportedMediaType, ""},
		{"text/plain", "text/plain", goodBody(t), http.StatusUnsupportedMediaType, ReasonUnsupportedMediaType, ""},
		{"form", "application/x-www-form-urlencoded", goodBody(t), http.StatusUnsupportedMediaType, ReasonUnsupportedMediaType, ""},
		{"malformed", "application/", goodBody(t), http.StatusUnsupportedMediaType, ReasonUnsupportedMediaType, ""},
		{"duplicate operation", "application/json", `{"operation":"violations.query","operation":"licence.status","params":{}}`, http.StatusBadRequest, ReasonBadJSON, "operation"},
		{"duplicate params", "application/json", `{"operation":"violations.query","params":{},"params":{"plate":"x"}}`, http.StatusBadRequest, ReasonBadJSON, "params"},
		{"key in another case", "application/json", `{"OPERATION":"violations.query","params":{}}`, http.StatusBadRequest, ReasonBadJSON, "OPERATION"},
	} {
		hdr := map[string]string{"Content-Type": c.ct}
		if c.ct == "-" {
			hdr = map[string]string{"Content-Type": ""}
		}
		r := e.do(t, http.MethodPost, "/v1/requests", tokenPortal, c.body, hdr)
		if r.code != c.code || r.reason() != c.reason {
			t.Errorf("%s: HTTP %d %s, want %d %s", c.name, r.code, r.raw, c.code, c.reason)
			continue
		}
		if p, _ := r.body["error"].(map[string]any)["param"].(string); p != c.param {
			t.Errorf("%s: param %q, want %q", c.name, p, c.param)
		}
	}
	if n := e.spooled(t); n != 0 {
		t.Fatalf("%d requests stored", n)
	}
	// Parameters of the media type are fine.
	if r := e.do(t, http.MethodPost, "/v1/requests", tokenPortal, goodBody(t), map[string]string{"Content-Type": "application/json; charset=utf-8"}); r.code != http.StatusAccepted {
		t.Fatalf("application/json with charset: HTTP %d %s", r.code, r.raw)
	}
}

func TestEdgeRules_source(t *testing.T) {
	rules, err := newEdgeRules(LimitsConfig{TrustedProxies: []string{"10.0.0.1", "fd00::/8"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		remote string
		xff    []string
		want   string
	}{
		{"192.0.2.1:5000", []string{"198.51.100.1"}, "192.0.2.1"},
		{"10.0.0.1:5000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"10.0.0.1:5000", []string{"203.0.113.5", "198.51.100.1, fd00::1"}, "198.51.100.1"},
		{"10.0.0.1:5000", []string{"10.0.0.1"}, "10.0.0.1"},
		{"[::ffff:10.0.0.1]:5000", []string{"::ffff:198.51.100.2"}, "198.51.100.2"},
		{"10.0.0.1:5000", []string{"198.51.100.1, fe80::1%eth0"}, "10.0.0.1"},
		{"[fd00::2]:443", []string{"2001:db8::1"}, "2001:db8::1"},
	} {
		r := &http.Request{RemoteAddr: c.remote, Header: http.Header{"X-Forwarded-For": c.xff}}
		got, ok := rules.source(r)
		if !ok || got.String() != c.want {
			t.Errorf("source(%s, %q) = %v, %v; want %s", c.remote, c.xff, got, ok, c.want)
		}
	}
	if _, ok := rules.source(&http.Request{RemoteAddr: "@"}); ok {
		t.Error("a non-TCP peer has a source address")
	}
}

func TestBuckets_bounded(t *testing.T) {
	b := newBuckets(100)
	now := time.Now()
	rc := RateConfig{PerSecond: 1, Burst: 1}
	for i := range 1000 {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		if d := b.take(a, rc, now); d != 0 {
			t.Fatalf("a new address was limited: %v", d)
		}
		if d := b.take(a, rc, now); d <= 0 || d > time.Second {
			t.Fatalf("the second request of %v within the burst's second: wait %v", a, d)
		}
	}
	if len(b.m) > 100 {
		t.Fatalf("the table holds %d addresses, want at most 100", len(b.m))
	}
	// Refilled buckets are swept first.
	later := now.Add(2 * time.Second)
	b.take(netip.MustParseAddr("192.0.2.1"), rc, later)
	if len(b.m) != 1 {
		t.Fatalf("after the sweep the table holds %d, want 1", len(b.m))
	}
	// IPv6 is limited by /64.
	k1, k2 := bucketKey(netip.MustParseAddr("2001:db8:1:2::1")), bucketKey(netip.MustParseAddr("2001:db8:1:2:ffff::9"))
	if k1 != k2 {
		t.Fatalf("two addresses of one /64 have different buckets: %v %v", k1, k2)
	}
}

func TestConfig_edge(t *testing.T) {
	for _, c := range []struct {
		extra, listen, want string
	}{
		{"", "0.0.0.0:8443", "listen: plain HTTP is served on a loopback address only"},
		{"", "[::1]:8443", ""},
		{"", "localhost:8443", ""},
		{"limits:\n  allow: [10.0.0.0/33]\n", "", "limits.allow[0]: invalid CIDR prefix"},
		{"limits:\n  block: [10.0.0.1/8]\n", "", "did you mean 10.0.0.0/8"},
		{"limits:\n  trusted_proxies: [proxy.example]\n", "", "limits.trusted_proxies[0]: invalid address"},
		{"limits:\n  ip_rate: {burst: 5}\n", "", "limits.ip_rate.burst: needs per_second"},
		{"limits:\n  ip_rate: {per_second: 5}\n", "", "limits.ip_rate.burst: must be between 1"},
		{"limits:\n  max_long_polls: 0\n", "", "limits.max_long_polls"},
		{"tls:\n  cert: a.crt\n", "", "tls.key: required"},
		{"tls:\n  client_ca: ca.crt\n", "", "tls.client_ca: needs tls.cert"},
		{"    tls_name: portal.example\n", "", "clients[1].tls_name: needs tls.client_ca"},
		{"    rate: {per_second: -1, burst: 1}\n", "", "clients[1].rate.per_second"},
	} {
		dir := t.TempDir()
		path, _, _ := writeDeployment(t, dir, c.extra)
		if c.listen != "" {
			data, _ := os.ReadFile(path)
			os.WriteFile(path, []byte(strings.Replace(string(data), "listen: 127.0.0.1:0", "listen: \""+c.listen+"\"", 1)), 0o600)
		}
		_, err := LoadConfig(path)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q %q: %v", c.extra, c.listen, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%q %q: error %v, want one containing %q", c.extra, c.listen, err, c.want)
		}
	}
}
