package dmz

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// The edge is the API's first line, in front of authentication: it finds
// the source address of each request (believing X-Forwarded-For only from
// a trusted proxy), refuses addresses the config blocks or does not allow,
// and keeps a token bucket per source address. The per-client bucket and
// the certificate binding come right after authentication (authenticate),
// and the long-poll cap in handleStatus.

// edgeRules are the edge's settings in force; Reload replaces them whole.
type edgeRules struct {
	allow, block, trusted []netip.Prefix
	ipRate                RateConfig
	maxWaits              int64
}

// newEdgeRules makes the rules of validated limits.
func newEdgeRules(l LimitsConfig) (*edgeRules, error) {
	r := &edgeRules{ipRate: l.IPRate, maxWaits: int64(l.MaxLongPolls)}
	for _, src := range []struct {
		list []string
		dst  *[]netip.Prefix
	}{{l.Allow, &r.allow}, {l.Block, &r.block}, {l.TrustedProxies, &r.trusted}} {
		for _, s := range src.list {
			p, err := parsePrefix(s)
			if err != nil {
				return nil, err
			}
			*src.dst = append(*src.dst, p)
		}
	}
	return r, nil
}

func contains(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// permitted reports whether the rules serve source address a.
func (r *edgeRules) permitted(a netip.Addr) bool {
	if contains(r.block, a) {
		return false
	}
	return len(r.allow) == 0 || contains(r.allow, a)
}

// source returns the address a request comes from: the peer's, or, when
// the peer is a trusted proxy, the rightmost address of X-Forwarded-For
// that is not itself a trusted proxy. A trusted proxy's malformed header
// is not believed: the proxy itself is then the source. The second result
// is false when the peer's address cannot be parsed (not a TCP peer).
func (r *edgeRules) source(req *http.Request) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(req.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	peer := ap.Addr().Unmap()
	if len(r.trusted) == 0 || !contains(r.trusted, peer) {
		return peer, true
	}
	hops := req.Header.Values("X-Forwarded-For")
	var list []string
	for _, h := range hops {
		list = append(list, strings.Split(h, ",")...)
	}
	for i := len(list) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(list[i]))
		if err != nil || a.Zone() != "" {
			return peer, true
		}
		a = a.Unmap()
		if !contains(r.trusted, a) {
			return a, true
		}
	}
	return peer, true
}

// bucketKey is what a source address is limited as: itself, or for IPv6
// its /64, which is what one subscriber gets.
func bucketKey(a netip.Addr) netip.Addr {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// buckets are token buckets by source address. The table is bounded:
// once it holds maxBuckets addresses, the buckets that have refilled
// (which are the same as no bucket) are dropped, and if that is not
// enough the table is emptied, which at worst lets each address have
// one more burst.
type buckets struct {
	mu  sync.Mutex
	m   map[netip.Addr]*rate.Limiter
	max int
}

// maxBuckets bounds the per-address table: about 100 bytes each.
const maxBuckets = 100_000

func newBuckets(max int) *buckets {
	return &buckets{m: map[netip.Addr]*rate.Limiter{}, max: max}
}

// take takes a token of a's bucket under rc at now. It returns 0 when
// the request may go on, or how long until a token is there.
func (b *buckets) take(a netip.Addr, rc RateConfig, now time.Time) time.Duration {
	if rc.PerSecond <= 0 {
		return 0
	}
	b.mu.Lock()
	lim, ok := b.m[a]
	if !ok {
		if len(b.m) >= b.max {
			b.sweep(now)
		}
		lim = rate.NewLimiter(rate.Limit(rc.PerSecond), rc.Burst)
		b.m[a] = lim
	}
	b.mu.Unlock()
	if lim.Limit() != rate.Limit(rc.PerSecond) || lim.Burst() != rc.Burst {
		// The rate was reloaded.
		lim.SetLimitAt(now, rate.Limit(rc.PerSecond))
		lim.SetBurstAt(now, rc.Burst)
	}
	return takeToken(lim, now)
}

// sweep drops the buckets that are full again; b.mu is held.
func (b *buckets) sweep(now time.Time) {
	for a, lim := range b.m {
		if lim.TokensAt(now) >= float64(lim.Burst()) {
			delete(b.m, a)
		}
	}
	if len(b.m) >= b.max {
		clear(b.m)
	}
}

// takeToken takes one token of lim at now: 0 if there was one, otherwise
// how long until there is.
func takeToken(lim *rate.Limiter, now time.Time) time.Duration {
	if lim.AllowN(now, 1) {
		return 0
	}
	missing := 1 - lim.TokensAt(now)
	return time.Duration(missing / float64(lim.Limit()) * float64(time.Second))
}

// retryAfter is the Retry-After value, in whole seconds and at least 1,
// of a wait of d.
func retryAfter(d time.Duration) string {
	return strconv.FormatInt(max(1, int64(math.Ceil(d.Seconds()))), 10)
}

// sourceKey is the request context key of the source address.
type sourceKey struct{}

// sourceOf returns the source address the edge found for r.
func sourceOf(r *http.Request) netip.Addr {
	a, _ := r.Context().Value(sourceKey{}).(netip.Addr)
	return a
}

// edge wraps the API's handler with the address checks and the
// per-address bucket. The health endpoints pass the address lists but
// not the bucket, so that a load balancer's probes are never limited.
func (a *Agent) edge(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rules := a.edgeRules.Load()
		src, ok := rules.source(r)
		if !ok {
			// Not a TCP peer: a test driving Handler directly.
			next.ServeHTTP(w, r)
			return
		}
		if !rules.permitted(src) {
			a.edgeRefused(ReasonIPForbidden, src)
			writeError(w, http.StatusForbidden, ReasonIPForbidden, "requests from this address are not served", "")
			return
		}
		if strings.HasPrefix(r.URL.Path, "/v1/") {
			if d := a.ipBuckets.take(bucketKey(src), rules.ipRate, a.now()); d > 0 {
				a.edgeRefused(ReasonRateLimited, src)
				w.Header().Set("Retry-After", retryAfter(d))
				writeError(w, http.StatusTooManyRequests, ReasonRateLimited, "too many requests from this address; retry after Retry-After seconds", "")
				return
			}
			a.ops.RequestFrom(src.String())
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), sourceKey{}, src)))
	})
}

// edgeRefused counts a refusal at the edge and logs it, at most once a
// minute for each reason: a flood must not flood the log.
func (a *Agent) edgeRefused(reason string, src netip.Addr) {
	a.ops.Metrics.EdgeRefused(reason)
	if a.edgeLog.due(reason, a.now()) {
		a.log.Warn("requests refused at the edge (logged once a minute per reason; ferry_api_refused_total counts them all)",
			slog.String(logReason, reason), slog.String(logAddr, src.String()))
	}
}

// waits counts the long polls waiting, against a cap.
type waitCap struct{ n atomic.Int64 }

// enter takes a place under limit; false when there is none.
func (c *waitCap) enter(limit int64) bool {
	if c.n.Add(1) > limit {
		c.n.Add(-1)
		return false
	}
	return true
}

func (c *waitCap) leave() { c.n.Add(-1) }

// clientTLSName reports whether the connection of r presented a verified
// client certificate named name: one of its DNS names, or, when it has
// none, its common name.
func clientTLSName(r *http.Request, name string) bool {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return false
	}
	leaf := r.TLS.VerifiedChains[0][0]
	if len(leaf.DNSNames) > 0 {
		for _, n := range leaf.DNSNames {
			if strings.EqualFold(n, name) {
				return true
			}
		}
		return false
	}
	return leaf.Subject.CommonName == name
}

// logEvery lets a line be logged at most once a period for each key.
type logEvery struct {
	mu     sync.Mutex
	period time.Duration
	last   map[string]time.Time
}

func newLogEvery(period time.Duration) *logEvery {
	return &logEvery{period: period, last: map[string]time.Time{}}
}

// due reports whether key's line may be logged at now, and if so
// records it. Keys are a few fixed reasons, so the map stays small.
func (l *logEvery) due(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.last[key]; ok && now.Sub(t) < l.period {
		return false
	}
	l.last[key] = now
	return true
}

// serverLog is the API server's error log. A failed TLS handshake is
// what every scanner on the internet causes: those are logged once a
// minute, with how many there were; anything else is a warning.
type serverLog struct {
	a          *Agent
	handshakes atomic.Int64
}

func (s *serverLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if strings.HasPrefix(msg, "http: TLS handshake error") {
		n := s.handshakes.Add(1)
		if s.a.edgeLog.due("tls handshake", s.a.now()) {
			s.handshakes.Add(-n)
			s.a.log.Warn("TLS handshakes failed (logged once a minute)", slog.Int64("failures", n), slog.String(logError, msg))
		}
		return len(p), nil
	}
	s.a.log.Warn(msg)
	return len(p), nil
}
