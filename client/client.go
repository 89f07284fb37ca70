// Package client is a Go client of ferry's DMZ agent API (docs/api.md,
// docs/openapi.yaml): submit a request, read or wait for its result, list
// the operations, and check a result callback's signature.
//
//	c, err := client.New("https://dmz.platform.example:8443", token)
//	acc, err := c.Submit(ctx, client.Submission{Operation: "violations.query",
//		Params: map[string]any{"plate": "浙A94621"}, Subject: idNumber})
//	req, err := c.Wait(ctx, acc.ID)
//	if err := req.Err(); errors.Is(err, client.ErrRateLimited) { … }
//
// Every error answer of the API is an *Error carrying the reason code;
// errors.Is matches it against the package's sentinel of that code
// (ErrRateLimited, ErrForbiddenSubject, …). A request the intranet refused
// ends with status rejected: Request.Err returns its *Error the same way.
//
// Submit is safe to retry: without an Idempotency-Key it makes one, and it
// retries the answers that say to (429 and 503 with their Retry-After,
// network errors) with the same key, so a request is stored once however
// often it is sent.
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ferrybridge/ferry/internal/callback"
)

// Defaults of a Client.
const (
	DefaultRetries = 4
	// DefaultTimeout bounds one HTTP exchange; a long poll adds its wait.
	DefaultTimeout = 15 * time.Second
	// MaxWait is the longest wait the agent holds one poll for.
	MaxWait = 30 * time.Second
	// maxRetryWait caps a Retry-After the client honours.
	maxRetryWait = 30 * time.Second
	// maxAnswer bounds what is read of an answer.
	maxAnswer = 4 << 20
)

// Client is a client of one DMZ agent with one token. It is safe for
// concurrent use.
type Client struct {
	base    *url.URL
	token   string
	hc      *http.Client
	retries int
	ua      string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (its Timeout should leave room for
// long polls: MaxWait and some).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithTLSConfig sets the TLS configuration: a private CA (RootCAs), and
// the client's certificate for an agent that binds the token to it
// (Certificates).
func WithTLSConfig(tc *tls.Config) Option {
	return func(c *Client) {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = tc
		c.hc = &http.Client{Transport: t, Timeout: MaxWait + DefaultTimeout}
	}
}

// WithRetries sets how many times an answer that says "try again" (429,
// 503, a network error) is retried; 0 never retries.
func WithRetries(n int) Option { return func(c *Client) { c.retries = max(n, 0) } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.ua = ua } }

// New returns a client of the agent at baseURL (https://host:port, or
// http:// for one on loopback) using token.
func New(baseURL, token string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("client: base URL %q: want https://host:port", baseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	c := &Client{base: u, token: token, retries: DefaultRetries, ua: "ferry-client",
		hc: &http.Client{Timeout: MaxWait + DefaultTimeout}}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Submission is a request to submit.
type Submission struct {
	Operation string
	// Params are the operation's parameters, marshalled as a JSON object
	// (a map or a struct); nil is {}.
	Params any
	// Subject is the citizen the request is made for (their resident ID
	// number), when the client may assert one; "" for none.
	Subject string
	// IdempotencyKey makes retries safe; Submit makes one when empty.
	IdempotencyKey string
}

// Accepted is the answer to a submission.
type Accepted struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	// IdempotencyKey is the key the request was submitted with.
	IdempotencyKey string `json:"-"`
}

// Request is a request's status and result.
type Request struct {
	ID           string          `json:"id"`
	Status       string          `json:"status"`
	Operation    string          `json:"operation"`
	Received     time.Time       `json:"received"`
	Updated      time.Time       `json:"updated"`
	Reason       string          `json:"reason,omitempty"`
	Message      string          `json:"message,omitempty"`
	Result       json.RawMessage `json:"result,omitempty"`
	RowsAffected *int64          `json:"rows_affected,omitempty"`
	RetryAfter   int64           `json:"retry_after,omitempty"`
}

// Statuses of a request.
const (
	StatusQueued   = "queued"
	StatusSent     = "sent"
	StatusHeld     = "held"
	StatusDone     = "done"
	StatusRejected = "rejected"
	StatusFailed   = "failed"
	StatusExpired  = "expired"
)

// Final reports whether the request will not change any more.
func (r *Request) Final() bool {
	switch r.Status {
	case StatusDone, StatusRejected, StatusFailed, StatusExpired:
		return true
	}
	return false
}

// Rows decodes the result of a done read operation into v (a pointer to
// a slice).
func (r *Request) Rows(v any) error {
	if len(r.Result) == 0 {
		return json.Unmarshal([]byte("[]"), v)
	}
	return json.Unmarshal(r.Result, v)
}

// Err returns nil for a request that is done or on its way, and an *Error
// with the request's reason for one that was rejected, failed or expired.
func (r *Request) Err() error {
	switch r.Status {
	case StatusRejected, StatusFailed, StatusExpired:
		return &Error{Reason: r.Reason, Message: r.Message, RetryAfter: time.Duration(r.RetryAfter) * time.Second, Request: r.Status}
	}
	return nil
}

// Operation is one operation of the catalogue.
type Operation struct {
	Name        string  `json:"name"`
	Description string  `json:"description,omitempty"`
	Mode        string  `json:"mode"`
	Subject     string  `json:"subject,omitempty"`
	Params      []Param `json:"params"`
}

// Param is one parameter of an operation.
type Param struct {
	Name        string   `json:"name"`
	Type        string   `json:"type"`
	Description string   `json:"description,omitempty"`
	Required    bool     `json:"required"`
	MaxLen      int      `json:"max_len,omitempty"`
	Values      []string `json:"values,omitempty"`
}

// Submit submits s. It returns the id once the agent has stored the
// request durably (or had stored it before under the same key).
func (c *Client) Submit(ctx context.Context, s Submission) (*Accepted, error) {
	key := s.IdempotencyKey
	if key == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		key = hex.EncodeToString(b[:])
	}
	params := s.Params
	if params == nil {
		params = struct{}{}
	}
	body := map[string]any{"operation": s.Operation, "params": params}
	if s.Subject != "" {
		body["subject"] = s.Subject
	}
	data, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("client: params: %w", err)
	}
	var acc Accepted
	if err := c.do(ctx, http.MethodPost, "/v1/requests", data, map[string]string{"Idempotency-Key": key}, http.StatusAccepted, &acc); err != nil {
		return nil, err
	}
	acc.IdempotencyKey = key
	return &acc, nil
}

// Status returns request id as it is now.
func (c *Client) Status(ctx context.Context, id string) (*Request, error) {
	return c.poll(ctx, id, 0)
}

func (c *Client) poll(ctx context.Context, id string, wait time.Duration) (*Request, error) {
	path := "/v1/requests/" + url.PathEscape(id)
	if wait > 0 {
		path += "?wait=" + wait.String()
	}
	var r Request
	if err := c.do(ctx, http.MethodGet, path, nil, nil, http.StatusOK, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Wait long-polls request id until it is final, or held when stopAtHeld,
// or ctx ends.
func (c *Client) Wait(ctx context.Context, id string, stopAtHeld ...bool) (*Request, error) {
	held := len(stopAtHeld) > 0 && stopAtHeld[0]
	for {
		r, err := c.poll(ctx, id, MaxWait)
		if err != nil {
			return nil, err
		}
		if r.Final() || held && r.Status == StatusHeld {
			return r, nil
		}
		if err := ctx.Err(); err != nil {
			return r, err
		}
	}
}

// Operations returns the operations this client may submit.
func (c *Client) Operations(ctx context.Context) ([]Operation, error) {
	var body struct {
		Operations []Operation `json:"operations"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/operations", nil, nil, http.StatusOK, &body); err != nil {
		return nil, err
	}
	return body.Operations, nil
}

// Ready returns nil when the agent takes new requests (GET /readyz).
func (c *Client) Ready(ctx context.Context) error {
	return c.doOnce(ctx, http.MethodGet, "/readyz", nil, nil, http.StatusOK, nil)
}

// do makes one exchange, retrying what the answer or the error says may
// be retried.
func (c *Client) do(ctx context.Context, method, path string, body []byte, hdr map[string]string, want int, v any) error {
	for attempt := 0; ; attempt++ {
		err := c.doOnce(ctx, method, path, body, hdr, want, v)
		if err == nil || attempt >= c.retries || ctx.Err() != nil {
			return err
		}
		wait := backoff(attempt)
		var e *Error
		switch {
		case errors.As(err, &e) && !e.Temporary():
			return err
		case errors.As(err, &e) && e.RetryAfter > 0:
			wait = min(e.RetryAfter, maxRetryWait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// backoff is the wait before retry attempt+1 without a Retry-After:
// 200 ms doubling, up to 5 s, with jitter.
func backoff(attempt int) time.Duration {
	d := min(200*time.Millisecond<<min(attempt, 8), 5*time.Second)
	return d/2 + mrand.N(d/2+1)
}

func (c *Client) doOnce(ctx context.Context, method, path string, body []byte, hdr map[string]string, want int, v any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("User-Agent", c.ua)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, val := range hdr {
		req.Header.Set(k, val)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return &netError{err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return &netError{err: err}
	}
	if resp.StatusCode != want {
		return decodeError(resp, data)
	}
	if v != nil {
		if err := json.Unmarshal(data, v); err != nil {
			return fmt.Errorf("client: %s %s: HTTP %d: answer is not the expected JSON: %w", method, path, resp.StatusCode, err)
		}
	}
	return nil
}

// netError is a failure to exchange with the agent; it is temporary.
type netError struct{ err error }

func (e *netError) Error() string   { return "client: " + e.err.Error() }
func (e *netError) Unwrap() error   { return e.err }
func (e *netError) Temporary() bool { return true }

// decodeError makes the *Error of an error answer.
func decodeError(resp *http.Response, data []byte) error {
	var body struct {
		Error struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
			Param   string `json:"param"`
		} `json:"error"`
	}
	e := &Error{StatusCode: resp.StatusCode}
	if json.Unmarshal(data, &body) == nil && body.Error.Reason != "" {
		e.Reason, e.Message, e.Param = body.Error.Reason, body.Error.Message, body.Error.Param
	} else {
		// Not the API's shape: a proxy's answer, or net/http's own (431).
		e.Message = http.StatusText(resp.StatusCode)
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}

// VerifyCallback checks a result callback the agent POSTed (docs/api.md,
// "Result callbacks"): its Standard Webhooks signature with the client's
// secret (the bytes after whsec_, base64-decoded) and a timestamp within
// 5 minutes, and returns the request it reports. Process each
// r.Header.Get("webhook-id") once: a retry repeats it.
func VerifyCallback(secret []byte, r *http.Request) (*Request, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("client: callback body: %w", err)
	}
	if err := callback.Verify(secret, r.Header, body, time.Now()); err != nil {
		return nil, fmt.Errorf("client: callback: %w", err)
	}
	var req Request
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("client: callback body: %w", err)
	}
	return &req, nil
}
