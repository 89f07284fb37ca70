package dmz

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// rawExchange writes req on a new connection to the agent and returns the
// answer's status code and body, or code 0 if the agent closed the
// connection without answering within the deadline.
func (e *env) rawExchange(t *testing.T, write func(c net.Conn) error, deadline time.Duration) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", e.agent.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(deadline))
	if err := write(c); err != nil {
		// The agent may close first; what it answered is still read.
		t.Logf("write: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// header is a POST /v1/requests header of portal with content length n.
func header(n int, extra ...string) string {
	h := "POST /v1/requests HTTP/1.1\r\nHost: ferry\r\nAuthorization: Bearer " + tokenPortal +
		"\r\nContent-Type: application/json\r\n"
	if n >= 0 {
		h += fmt.Sprintf("Content-Length: %d\r\n", n)
	}
	for _, x := range extra {
		h += x + "\r\n"
	}
	return h + "\r\n"
}

// TestHostileClients is the battery of issue 9: each hostile request gets
// its documented answer (docs/api.md) and nothing is stored.
func TestHostileClients(t *testing.T) {
	e := startEnvWith(t, envOptions{
		extra: "limits:\n  block: [203.0.113.66]\n",
		// Short server timeouts, so that slow clients are cut within the
		// test's time; the agent's own are 10 s and 30 s.
		beforeRun: func(a *Agent) {
			a.srv.ReadHeaderTimeout = 300 * time.Millisecond
			a.srv.ReadTimeout = 600 * time.Millisecond
		},
	})
	deep := `{"operation":"violations.query","params":{"plate":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}}`
	shallow := `{"operation":"violations.query","params":{"plate":` + strings.Repeat("[", 50) + strings.Repeat("]", 50) + `}}`
	type hostile struct {
		name   string
		body   string
		hdr    map[string]string
		token  string // "" : portal's
		code   int
		reason string
	}
	cases := []hostile{
		{name: "oversized body", body: `{"operation":"violations.query","params":{"plate":"` + strings.Repeat("x", MaxBodySize) + `"}}`,
			code: http.StatusRequestEntityTooLarge, reason: ReasonBodyTooLarge},
		{name: "malformed JSON", body: `{"operation":"violations.query","params":{"plate":`, code: http.StatusBadRequest, reason: ReasonBadJSON},
		{name: "not an object", body: `["violations.query"]`, code: http.StatusBadRequest, reason: ReasonBadJSON},
		{name: "empty body", body: ``, hdr: map[string]string{"Content-Type": "application/json"}, code: http.StatusBadRequest, reason: ReasonBadJSON},
		{name: "trailing data", body: goodBody(t) + `{}`, code: http.StatusBadRequest, reason: ReasonBadJSON},
		{name: "deep nesting past the decoder's limit", body: deep, code: http.StatusBadRequest, reason: ReasonBadJSON},
		{name: "nesting in a parameter", body: shallow, code: http.StatusBadRequest, reason: "bad_type"},
		{name: "huge number", body: `{"operation":"exam.slots","params":{"subject":1e400,"date_from":"2026-07-01"}}`, code: http.StatusBadRequest, reason: "bad_type"},
		{name: "long integer", body: `{"operation":"exam.slots","params":{"subject":` + strings.Repeat("9", 4000) + `,"date_from":"2026-07-01"}}`, code: http.StatusBadRequest, reason: "bad_type"},
		{name: "duplicate top-level key", body: `{"operation":"exam.slots","operation":"violations.query","params":{}}`, code: http.StatusBadRequest, reason: ReasonBadJSON},
		{name: "duplicate parameter", body: `{"operation":"violations.query","params":{"plate":"浙A94621","plate":"浙A00000"}}`, code: http.StatusBadRequest, reason: "bad_params"},
		{name: "key in another case", body: `{"Operation":"violations.query","params":{}}`, code: http.StatusBadRequest, reason: ReasonBadJSON},
		{name: "invalid UTF-8 in a parameter", body: "{\"operation\":\"violations.query\",\"params\":{\"plate\":\"\xff\xfe\"}}", code: http.StatusBadRequest, reason: "bad_value"},
		{name: "NUL in the operation", body: "{\"operation\":\"violations.query\\u0000\",\"params\":{}}", code: http.StatusBadRequest, reason: "unknown_operation"},
		{name: "wrong content type", body: goodBody(t), hdr: map[string]string{"Content-Type": "text/plain"}, code: http.StatusUnsupportedMediaType, reason: ReasonUnsupportedMediaType},
		{name: "no content type", body: goodBody(t), hdr: map[string]string{"Content-Type": ""}, code: http.StatusUnsupportedMediaType, reason: ReasonUnsupportedMediaType},
		{name: "multipart", body: goodBody(t), hdr: map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, code: http.StatusUnsupportedMediaType, reason: ReasonUnsupportedMediaType},
		{name: "no token", body: goodBody(t), token: "-", code: http.StatusUnauthorized, reason: ReasonMissingToken},
		{name: "basic auth", body: goodBody(t), token: "-", hdr: map[string]string{"Authorization": "Basic cG9ydGFsOnB3"}, code: http.StatusUnauthorized, reason: ReasonMissingToken},
		{name: "wrong token", body: goodBody(t), token: "fy_guess", code: http.StatusUnauthorized, reason: ReasonInvalidToken},
		{name: "token of another length", body: goodBody(t), token: tokenPortal + "x", code: http.StatusUnauthorized, reason: ReasonInvalidToken},
		{name: "the token's hash as token", body: goodBody(t), token: hashHex(tokenPortal), code: http.StatusUnauthorized, reason: ReasonInvalidToken},
		{name: "X-Forwarded-For from an untrusted peer", body: `{"operation":"no.such.op","params":{}}`,
			hdr: map[string]string{"X-Forwarded-For": "127.0.0.1"}, code: http.StatusBadRequest, reason: "unknown_operation"},
		{name: "spoofed X-Forwarded-For does not escape a block", body: goodBody(t),
			hdr: map[string]string{"X-Forwarded-For": "198.51.100.1", "X-Real-IP": "198.51.100.1"}, code: http.StatusForbidden, reason: ReasonIPForbidden},
	}
	run := func(c hostile) {
		t.Helper()
		token := tokenPortal
		switch c.token {
		case "":
		case "-":
			token = ""
		default:
			token = c.token
		}
		r := e.do(t, http.MethodPost, "/v1/requests", token, c.body, c.hdr)
		if r.code != c.code || r.reason() != c.reason {
			t.Errorf("%s: HTTP %d %.300s, want %d %s", c.name, r.code, r.raw, c.code, c.reason)
		}
		if strings.Contains(r.raw, e.dir) || strings.Contains(r.raw, "goroutine") || strings.Contains(r.raw, ".go:") {
			t.Errorf("%s: the answer shows internals: %.300s", c.name, r.raw)
		}
	}
	for _, c := range cases {
		if c.reason == ReasonIPForbidden {
			continue // below, once the peer is blocked
		}
		run(c)
	}

	addr := e.agent.Addr().String()
	// A body declared larger than the limit is refused before it is read.
	start := time.Now()
	code, body := e.rawExchange(t, func(c net.Conn) error {
		_, err := io.WriteString(c, header(10<<30)+`{"operation":`)
		return err
	}, 5*time.Second)
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(body, ReasonBodyTooLarge) {
		t.Errorf("declared 10 GiB: HTTP %d %s", code, body)
	}
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Errorf("declared 10 GiB: answered after %v, want before the read timeout", d)
	}
	// A chunked body past the limit.
	code, body = e.rawExchange(t, func(c net.Conn) error {
		w := bufio.NewWriter(c)
		io.WriteString(w, strings.Replace(header(-1), "\r\n\r\n", "\r\nTransfer-Encoding: chunked\r\n\r\n", 1))
		chunk := strings.Repeat("x", 8192)
		for range 10 {
			fmt.Fprintf(w, "%x\r\n%s\r\n", len(chunk), chunk)
		}
		io.WriteString(w, "0\r\n\r\n")
		return w.Flush()
	}, 5*time.Second)
	if code != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked body past the limit: HTTP %d %s", code, body)
	}
	// Slow headers (slowloris): the connection is closed, unanswered.
	code, body = e.rawExchange(t, func(c net.Conn) error {
		for _, part := range []string{"POST /v1/requests HTTP/1.1\r\n", "Host: ferry\r\n"} {
			if _, err := io.WriteString(c, part); err != nil {
				return err
			}
			time.Sleep(200 * time.Millisecond)
		}
		return nil
	}, 3*time.Second)
	if code != 0 {
		t.Errorf("slow headers: HTTP %d %s, want the connection closed", code, body)
	}
	// A slow body: cut at the read timeout; never accepted.
	good := goodBody(t)
	code, body = e.rawExchange(t, func(c net.Conn) error {
		if _, err := io.WriteString(c, header(len(good))); err != nil {
			return err
		}
		for i := range len(good) {
			if _, err := io.WriteString(c, good[i:i+1]); err != nil {
				return err
			}
			time.Sleep(50 * time.Millisecond)
		}
		return nil
	}, 5*time.Second)
	if code == http.StatusAccepted {
		t.Errorf("slow body accepted: %s", body)
	}
	// Oversized headers: net/http's own 431, before any handler.
	code, _ = e.rawExchange(t, func(c net.Conn) error {
		_, err := io.WriteString(c, header(2, "X-Pad: "+strings.Repeat("p", 2*MaxHeaderBytes))+"{}")
		return err
	}, 5*time.Second)
	if code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("oversized headers: HTTP %d, want 431", code)
	}
	// Not HTTP at all.
	code, _ = e.rawExchange(t, func(c net.Conn) error {
		_, err := c.Write([]byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n"))
		return err
	}, 5*time.Second)
	if code != http.StatusBadRequest && code != 0 {
		t.Errorf("garbage: HTTP %d", code)
	}

	// The peer blocked: spoofed headers change nothing.
	e.rewriteConfig(t, "block: [203.0.113.66]", "block: [127.0.0.1]")
	for _, c := range cases {
		if c.reason == ReasonIPForbidden {
			run(c)
		}
	}
	e.rewriteConfig(t, "block: [127.0.0.1]", "block: [203.0.113.66]")

	if n := e.spooled(t); n != 0 {
		t.Fatalf("%d requests stored by hostile clients", n)
	}
	// The agent still serves.
	if r := e.do(t, http.MethodPost, "/v1/requests", tokenPortal, goodBody(t), nil); r.code != http.StatusAccepted {
		t.Fatalf("after the battery: HTTP %d %s (addr %s)", r.code, r.raw, addr)
	}
}

// TestAuthenticate_constantTime: finding a client costs the same whether
// the token is the first client's, the last one's, or nobody's: the
// token's hash is compared with every client's, without stopping at a
// match. A comparison that stopped at the first match would make the
// first client about 1000 times cheaper than the last here.
func TestAuthenticate_constantTime(t *testing.T) {
	const n = 1000
	var cfgs []ClientConfig
	for i := range n {
		sum := sha256.Sum256(fmt.Appendf(nil, "fy_token-%d", i))
		cfgs = append(cfgs, ClientConfig{Name: fmt.Sprintf("c%d", i), TokenSHA256: fmt.Sprintf("%x", sum)})
	}
	clients, err := newClients(cfgs, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{now: time.Now, edgeLog: newLogEvery(time.Minute)}
	a.clients.Store(&clients)
	tokens := []string{"fy_token-0", fmt.Sprintf("fy_token-%d", n-1), "fy_token-nobody"}
	reqs := make([]*http.Request, len(tokens))
	for i, tok := range tokens {
		reqs[i] = (&http.Request{Header: http.Header{"Authorization": {"Bearer " + tok}}}).WithContext(context.Background())
	}
	samples := make([][]time.Duration, len(tokens))
	for range 300 {
		for i, r := range reqs {
			w := discardWriter{h: http.Header{}}
			start := time.Now()
			a.authenticate(&w, r)
			samples[i] = append(samples[i], time.Since(start))
		}
	}
	med := make([]time.Duration, len(tokens))
	for i, s := range samples {
		slices.Sort(s)
		med[i] = s[len(s)/2]
	}
	lo, hi := slices.Min(med), slices.Max(med)
	if hi > 3*lo {
		t.Fatalf("authentication medians first/last/none = %v: differ by more than 3x", med)
	}
}

type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}
