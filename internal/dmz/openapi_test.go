package dmz

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/ferrybridge/ferry/docs"
	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/policy"
	"github.com/ferrybridge/ferry/internal/sample"
)

// loadContract loads docs/openapi.yaml and checks it is a valid OpenAPI
// document.
func loadContract(t testing.TB) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(docs.OpenAPI)
	if err != nil {
		t.Fatalf("docs/openapi.yaml does not load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("docs/openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	return doc
}

// contract is an HTTP transport that checks every answer of the agent
// against docs/openapi.yaml: its status code must be documented for its
// path and method, and its headers and body must match.
type contract struct {
	t      testing.TB
	router routers.Router
	base   http.RoundTripper

	mu   sync.Mutex
	seen map[string]bool // "METHOD path status reason" answered
}

func newContract(t testing.TB) *contract {
	doc := loadContract(t)
	doc.Servers = nil // match any host: the agent listens on a random port
	r, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &contract{t: t, router: r, base: http.DefaultTransport, seen: map[string]bool{}}
}

func (c *contract) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return resp, err
	}
	route, params, err := c.router.FindRoute(req)
	var re *routers.RouteError
	switch {
	case errors.As(err, &re) && re.Reason == routers.ErrMethodNotAllowed.Error():
		// A path of the API with another method: 405 in the error shape.
		if resp.StatusCode != http.StatusMethodNotAllowed || !bytes.Contains(body, []byte(`"reason":"method_not_allowed"`)) {
			c.t.Errorf("contract: %s %s answered %d %s, want 405 method_not_allowed", req.Method, req.URL.Path, resp.StatusCode, body)
		}
		c.mu.Lock()
		c.seen[req.Method+" "+req.URL.Path+" 405 method_not_allowed"] = true
		c.mu.Unlock()
		return resp, nil
	case err != nil:
		// A path the API does not have: the catch-all 404.
		if resp.StatusCode != http.StatusNotFound {
			c.t.Errorf("contract: %s %s is not in the contract, and answered %d", req.Method, req.URL.Path, resp.StatusCode)
		}
		return resp, nil
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		},
		Status: resp.StatusCode,
		Header: resp.Header,
		Body:   io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true,
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	}
	if err := openapi3filter.ValidateResponse(req.Context(), in); err != nil {
		c.t.Errorf("contract: %s %s answered %d %s, against docs/openapi.yaml: %v", req.Method, req.URL.Path, resp.StatusCode, body, err)
	}
	reason := ""
	if i := bytes.Index(body, []byte(`"reason":"`)); i >= 0 {
		rest := body[i+len(`"reason":"`):]
		reason = string(rest[:bytes.IndexByte(rest, '"')])
	}
	c.mu.Lock()
	c.seen[route.Method+" "+route.Path+" "+resp.Status[:3]+" "+reason] = true
	c.mu.Unlock()
	return resp, nil
}

// TestOpenAPI_document: the contract loads as OpenAPI 3.1, its reason
// enum is exactly the codes the agent and the policy give, and every
// operation's errors use the error schema.
func TestOpenAPI_document(t *testing.T) {
	doc := loadContract(t)
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %s, want 3.1.0", doc.OpenAPI)
	}
	var enum []string
	for _, v := range doc.Components.Schemas["Reason"].Value.Enum {
		enum = append(enum, v.(string))
	}
	want := slices.Clone(Reasons())
	for _, r := range policy.Reasons {
		if !slices.Contains(want, r) {
			want = append(want, r)
		}
	}
	slices.Sort(enum)
	slices.Sort(want)
	if !slices.Equal(enum, want) {
		t.Fatalf("reason enum of docs/openapi.yaml\n%v\nthe agent's and the policy's\n%v", enum, want)
	}
	if doc.Webhooks["result"] == nil {
		t.Fatal("no result webhook")
	}
}

// TestOpenAPI_responses drives a running agent through its answers, each
// validated against docs/openapi.yaml, and checks that the ones the
// contract promises were seen.
func TestOpenAPI_responses(t *testing.T) {
	c := newContract(t)
	e := startEnvWith(t, envOptions{
		client: &http.Client{Timeout: 30 * time.Second, Transport: c},
		// The first line extends the harness's last client, "other".
		extra: "    rate: {per_second: 1000, burst: 1000}\nlimits:\n  max_long_polls: 1\n",
	})
	good := goodBody(t)
	id := e.submit(t)
	do := func(method, path, token, body string, hdr map[string]string, code int) *reply {
		t.Helper()
		r := e.do(t, method, path, token, body, hdr)
		if r.code != code {
			t.Errorf("%s %s: HTTP %d %s, want %d", method, path, r.code, r.raw, code)
		}
		return r
	}
	do("POST", "/v1/requests", tokenPortal, good, map[string]string{"Idempotency-Key": "k1"}, 202)
	do("POST", "/v1/requests", tokenPortal, good, map[string]string{"Idempotency-Key": "k1"}, 202)
	do("POST", "/v1/requests", tokenPortal, citizenBody(t, sample.Citizens()[1], "violations.query"), map[string]string{"Idempotency-Key": "k1"}, 409)
	do("POST", "/v1/requests", tokenPortal, `{"operation":1}`, nil, 400)
	do("POST", "/v1/requests", tokenPortal, `{"operation":"violations.query","params":{},"subject":7}`, nil, 400)
	do("POST", "/v1/requests", tokenPortal, `{"operation":"violations.query","params":{"plate":"`+strings.Repeat("x", 9000)+`"}}`, nil, 400)
	do("POST", "/v1/requests", tokenPortal, good, map[string]string{"Idempotency-Key": " "}, 400)
	do("POST", "/v1/requests", tokenPortal, `{"operation":"citizen.delete","params":{}}`, nil, 400)
	do("POST", "/v1/requests", tokenPortal, strings.Repeat(" ", MaxBodySize+1), nil, 413)
	do("POST", "/v1/requests", tokenPortal, good, map[string]string{"Content-Type": "text/plain"}, 415)
	do("POST", "/v1/requests", "", good, nil, 401)
	do("POST", "/v1/requests", "fy_wrong", good, nil, 401)
	do("PUT", "/v1/requests", tokenPortal, good, nil, 405)
	do("GET", "/v1/requests/"+id+"?wait=x", tokenPortal, "", nil, 400)
	do("GET", "/v1/requests/"+id, tokenOther, "", nil, 404)
	do("GET", "/v1/requests/nope", tokenPortal, "", nil, 404)
	do("GET", "/v1/no-such-endpoint", tokenPortal, "", nil, 404)
	do("GET", "/v1/operations", tokenPortal, "", nil, 200)
	do("GET", "/v1/openapi.yaml", "", "", nil, 200)
	do("GET", "/healthz", "", "", nil, 200)
	do("GET", "/readyz", "", "", nil, 200)
	do("DELETE", "/healthz", "", "", nil, 405)

	// A long poll, a second one past the cap, and the result.
	polled := make(chan *reply, 1)
	go func() { polled <- e.do(t, "GET", "/v1/requests/"+id+"?wait=10s", tokenPortal, "", nil) }()
	deadline := time.Now().Add(5 * time.Second)
	for e.agent.waits.n.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	do("GET", "/v1/requests/"+id+"?wait=5s", tokenPortal, "", nil, 429)
	var reqs []batch.Request
	for deadline := time.Now().Add(10 * time.Second); len(reqs) < 2; {
		te := e.nextEnvelope(t, time.Until(deadline))
		if te == nil {
			t.Fatalf("%d of 2 requests on the medium after 10s", len(reqs))
		}
		reqs = append(reqs, te.body.Requests...)
	}
	var results []batch.Result
	for _, r := range reqs {
		res := batch.Result{RequestID: r.ID, Status: batch.StatusDone, Rows: []map[string]any{{"fine": 200}}}
		if r.ID != id {
			res = batch.Result{RequestID: r.ID, Status: batch.StatusRejected, Reason: "rate_limited", Message: "slow down", RetryAfter: 30}
		}
		results = append(results, res)
	}
	name, data := e.sealResults(t, e.resultsHeader(), batch.Results{Results: results})
	e.drop(t, name, data)
	if r := <-polled; r.code != 200 || r.str("status") != batch.StatusDone {
		t.Fatalf("long poll: %d %s", r.code, r.raw)
	}
	for _, r := range reqs {
		if r.ID != id {
			e.waitStatus(t, r.ID, batch.StatusRejected)
			do("GET", "/v1/requests/"+r.ID, tokenPortal, "", nil, 200)
		}
	}

	// Refusals at the edge: the client's bucket, then the address lists.
	e.rewriteConfig(t, "rate: {per_second: 1000, burst: 1000}", "rate: {per_second: 0.01, burst: 1}")
	do("GET", "/v1/operations", tokenOther, "", nil, 200)
	do("GET", "/v1/operations", tokenOther, "", nil, 429)
	e.rewriteConfig(t, "  max_long_polls: 1\n", "  max_long_polls: 1\n  block: [127.0.0.1]\n")
	do("GET", "/healthz", "", "", nil, 403)
	do("POST", "/v1/requests", tokenPortal, good, nil, 403)

	// The answers the contract promises that this run must have seen.
	for _, want := range []string{
		"POST /v1/requests 202 ", "POST /v1/requests 409 idempotency_conflict", "POST /v1/requests 400 bad_body",
		"POST /v1/requests 400 bad_subject", "POST /v1/requests 400 params_too_large", "POST /v1/requests 400 bad_idempotency_key",
		"POST /v1/requests 400 unknown_operation", "POST /v1/requests 413 body_too_large",
		"POST /v1/requests 415 unsupported_media_type", "POST /v1/requests 401 missing_token", "POST /v1/requests 401 invalid_token",
		"PUT /v1/requests 405 method_not_allowed", "DELETE /healthz 405 method_not_allowed", "POST /v1/requests 403 ip_forbidden",
		"GET /v1/requests/{id} 200 ", "GET /v1/requests/{id} 400 bad_wait", "GET /v1/requests/{id} 404 not_found",
		"GET /v1/requests/{id} 429 too_many_waits", "GET /v1/operations 200 ", "GET /v1/operations 429 rate_limited",
		"GET /v1/openapi.yaml 200 ", "GET /healthz 200 ", "GET /healthz 403 ip_forbidden", "GET /readyz 200 ",
	} {
		if !c.seen[want] {
			t.Errorf("not seen: %s", want)
		}
	}
}
