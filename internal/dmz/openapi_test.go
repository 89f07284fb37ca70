package dmz

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
	"github.com/ferrybridge/ferry/internal/alarm"
	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/policy"
	"github.com/ferrybridge/ferry/internal/sample"
)

// The contract tests. Every request these tests send to a running agent,
// and every answer it gives, goes through a transport that checks both
// against docs/openapi.yaml with kin-openapi (openapi3filter's
// ValidateRequest and ValidateResponse; the bearer check is the agent's
// business, so the contract's security is satisfied by a no-op): an
// answer must have a status code the contract lists for its operation,
// and the headers and body it describes. A test says when it sends a
// request the contract itself refuses (contractExpect), so that the
// contract and the agent are seen to agree on what is malformed. At the
// end, every status and reason code the contract lists for each
// operation must have been seen, but for the few in unreachable.

// contractExpect is a request header the tests set to tell the transport
// what the contract should make of a request; the transport removes it
// before sending. Without it, the contract must accept the request.
const contractExpect = "X-Contract-Expect"

const (
	// requestInvalid: the contract refuses the request, as the agent does.
	requestInvalid = "invalid"
	// requestUnchecked: the request is not valid JSON in a way that
	// kin-openapi's JSON decoder decides (a key given twice: encoding/json
	// keeps the last, encoding/json/v2 refuses it; trailing data after the
	// object, which it ignores), so its verdict is not checked.
	requestUnchecked = "unchecked"
)

// unreachable are the answers the contract lists that these tests cannot
// provoke in a running agent, and why.
var unreachable = map[string]string{
	"POST /v1/requests 500 policy_rejected": "the policy failing with an error that is not a refusal is a bug",
	"POST /v1/requests 503 unavailable":     "the spool failing to store",
	"GET /v1/requests/{id} 503 unavailable": "the spool failing to read",
}

// loadContract loads docs/openapi.yaml and checks that it is a valid
// OpenAPI document.
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

// contract checks exchanges with the agent against docs/openapi.yaml and
// remembers which answers it has seen.
type contract struct {
	doc    *openapi3.T
	router routers.Router

	mu   sync.Mutex
	seen map[string]bool // "METHOD /path status reason"
}

func newContract(t testing.TB) *contract {
	t.Helper()
	doc := loadContract(t)
	doc.Servers = nil // match any host: the agents listen on random ports
	r, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &contract{doc: doc, router: r, seen: map[string]bool{}}
}

// exchange is one request and its answer.
type exchange struct {
	req     *http.Request
	reqBody []byte
	status  int
	header  http.Header
	body    []byte
}

// request returns x's request with its body ready to be read again.
func (x *exchange) request() *http.Request {
	r := x.req.Clone(x.req.Context())
	r.Body = io.NopCloser(bytes.NewReader(x.reqBody))
	return r
}

// reasonOf returns the reason code of an error answer, or "".
func reasonOf(body []byte) string {
	var e struct {
		Error struct{ Reason string } `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Error.Reason
}

// seenKey names an answer: method, the contract's path, status code and
// reason code.
func seenKey(method, path string, status int, reason string) string {
	return strings.TrimSpace(fmt.Sprintf("%s %s %d %s", method, path, status, reason))
}

// check validates x against the contract. It returns the answer's key,
// what the contract makes of the request (nil: valid), and of the answer.
// A request on a path the contract does not list must be answered 404,
// and a method the path does not list 405, each in the shape of its
// component response.
func (c *contract) check(x exchange) (key string, reqErr, respErr error) {
	reason := reasonOf(x.body)
	route, params, err := c.router.FindRoute(x.request())
	if err != nil {
		name, want, path := "NoSuchEndpoint", http.StatusNotFound, x.req.URL.Path
		if p, ok := c.template(x.req); ok {
			name, want, path = "MethodNotAllowed", http.StatusMethodNotAllowed, p
		}
		if x.status != want {
			respErr = fmt.Errorf("not an operation of the contract (%s), and answered %d, want %d", err, x.status, want)
		}
		op := &openapi3.Operation{Responses: openapi3.NewResponses(
			openapi3.WithStatus(want, c.doc.Components.Responses[name]))}
		route = &routers.Route{Spec: c.doc, Path: path, Method: x.req.Method, Operation: op}
		return seenKey(x.req.Method, path, x.status, reason), nil, errors.Join(respErr, c.validateResponse(route, nil, x))
	}
	reqErr = openapi3filter.ValidateRequest(x.req.Context(), &openapi3filter.RequestValidationInput{
		Request: x.request(), PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
	})
	return seenKey(route.Method, route.Path, x.status, reason), reqErr, c.validateResponse(route, params, x)
}

func (c *contract) validateResponse(route *routers.Route, params map[string]string, x exchange) error {
	return openapi3filter.ValidateResponse(x.req.Context(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: x.request(), PathParams: params, Route: route},
		Status:                 x.status,
		Header:                 x.header,
		Body:                   io.NopCloser(bytes.NewReader(x.body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	})
}

// template returns the contract's path that r's path is, if there is
// one: a segment {name} stands for any one segment but an empty one.
func (c *contract) template(r *http.Request) (string, bool) {
	segs := strings.Split(r.URL.Path, "/")
	for p := range c.doc.Paths.Map() {
		tsegs := strings.Split(p, "/")
		if len(tsegs) != len(segs) {
			continue
		}
		match := true
		for i, ts := range tsegs {
			if strings.HasPrefix(ts, "{") && segs[i] != "" || ts == segs[i] {
				continue
			}
			match = false
			break
		}
		if match {
			return p, true
		}
	}
	return "", false
}

func (c *contract) see(key string) {
	c.mu.Lock()
	c.seen[key] = true
	c.mu.Unlock()
}

func (c *contract) saw(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[key]
}

// client returns an HTTP client whose exchanges c checks, reporting to t,
// over base (nil: http.DefaultTransport).
func (c *contract) client(t testing.TB, base http.RoundTripper) *http.Client {
	if base == nil {
		base = http.DefaultTransport
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &contractTransport{t: t, c: c, base: base}}
}

type contractTransport struct {
	t    testing.TB
	c    *contract
	base http.RoundTripper
}

func (tr *contractTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	expect := req.Header.Get(contractExpect)
	var reqBody []byte
	if req.Body != nil {
		var err error
		reqBody, err = io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
	}
	out := req.Clone(req.Context())
	out.Header.Del(contractExpect)
	if req.Body != nil {
		out.Body = io.NopCloser(bytes.NewReader(reqBody))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(reqBody)), nil }
	}
	resp, err := tr.base.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	key, reqErr, respErr := tr.c.check(exchange{req: out, reqBody: reqBody, status: resp.StatusCode, header: resp.Header, body: body})
	what := fmt.Sprintf("%s %s answered %d %s", req.Method, req.URL.RequestURI(), resp.StatusCode, bytes.TrimSpace(body))
	if respErr != nil {
		tr.t.Errorf("contract: %s: the answer does not match docs/openapi.yaml: %v", what, respErr)
	}
	switch {
	case resp.StatusCode/100 == 2 && reqErr != nil:
		tr.t.Errorf("contract: %s, but docs/openapi.yaml refuses the request: %v", what, reqErr)
	case expect == "" && reqErr != nil:
		tr.t.Errorf("contract: %s; docs/openapi.yaml refuses the request, and the test expects it to accept it: %v", what, reqErr)
	case expect == requestInvalid && reqErr == nil:
		tr.t.Errorf("contract: %s; docs/openapi.yaml accepts the request, and the test expects it to refuse it", what)
	}
	tr.c.see(key)
	if key == "GET /v1/requests/{id} 200" {
		var st struct{ Status string }
		_ = json.Unmarshal(body, &st)
		tr.c.see(key + " " + st.Status)
	}
	return resp, nil
}

// contractVerdict adds the contractExpect header with verdict to hdr (which may be
// nil).
func contractVerdict(verdict string, hdr map[string]string) map[string]string {
	out := maps.Clone(hdr)
	if out == nil {
		out = map[string]string{}
	}
	out[contractExpect] = verdict
	return out
}

// contractAsk sends a request and checks its status code and reason code ("" for
// a success).
func contractAsk(t *testing.T, e *env, method, path, token, body string, hdr map[string]string, code int, reason string) *reply {
	t.Helper()
	r := e.do(t, method, path, token, body, hdr)
	if r.code != code || r.reason() != reason {
		t.Errorf("%s %s: HTTP %d %s, want %d %s", method, path, r.code, r.raw, code, reason)
	}
	return r
}

// declaredAnswers returns every answer the contract lists for its
// operations: "METHOD /path status" for a success, and "METHOD /path
// status reason" for each reason code of an error response.
func declaredAnswers(t testing.TB, doc *openapi3.T) []string {
	t.Helper()
	var out []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for code, r := range op.Responses.Map() {
				if code[0] == '2' {
					out = append(out, method+" "+path+" "+code)
					continue
				}
				reasons, err := errorReasons(r.Value)
				if err != nil {
					t.Fatalf("%s %s %s: %v", method, path, code, err)
				}
				for _, reason := range reasons {
					out = append(out, method+" "+path+" "+code+" "+reason)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// errorReasons returns the reason codes an error response of the contract
// may carry. Its JSON schema must be the error schema narrowed to them:
// allOf: [{$ref: Error}, {properties: {error: {properties: {reason: {enum}}}}}].
func errorReasons(r *openapi3.Response) ([]string, error) {
	mt := r.Content.Get("application/json")
	if mt == nil || mt.Schema == nil || mt.Schema.Value == nil || len(r.Content) != 1 {
		return nil, errors.New("not an application/json answer alone")
	}
	all := mt.Schema.Value.AllOf
	if len(all) != 2 || all[0].Ref != "#/components/schemas/Error" {
		return nil, errors.New("its schema is not allOf the error schema and a narrowing of its reason")
	}
	e := all[1].Value.Properties["error"]
	if e == nil || e.Value.Properties["reason"] == nil {
		return nil, errors.New("no error.reason in its narrowing")
	}
	var out []string
	for _, v := range e.Value.Properties["reason"].Value.Enum {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("reason %v is not a string", v)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, errors.New("no reason codes")
	}
	return out, nil
}

// evaluateReasons are the policy's codes that Evaluate gives, and so the
// DMZ's catalogue check: the others the intranet sets as a request's
// final reason.
func evaluateReasons() []string {
	return slices.DeleteFunc(slices.Clone(policy.Reasons), func(r string) bool {
		return r == policy.ReasonRateLimited || r == policy.ReasonApprovalExpired || r == policy.ReasonApprovalDenied
	})
}

// TestOpenAPI_document: the contract's reason enum is exactly the codes
// the agent and the policy give; every error response of every operation
// (and the 404 and 405 component responses) is the error schema narrowed
// to codes of that enum; every code the agent gives is in some response,
// every code of the catalogue check in POST /v1/requests' 400; and the
// request statuses are the agent's.
func TestOpenAPI_document(t *testing.T) {
	doc := loadContract(t)
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %s, want 3.1.0", doc.OpenAPI)
	}
	enumOf := func(name string) []string {
		var out []string
		for _, v := range doc.Components.Schemas[name].Value.Enum {
			out = append(out, v.(string))
		}
		slices.Sort(out)
		return out
	}
	want := slices.Concat(Reasons(), policy.Reasons)
	slices.Sort(want)
	want = slices.Compact(want)
	enum := enumOf("Reason")
	if !slices.Equal(enum, want) {
		t.Errorf("reason enum of docs/openapi.yaml\n%v\nthe agent's and the policy's\n%v", enum, want)
	}

	given := map[string]bool{} // reason codes some response lists
	for _, a := range declaredAnswers(t, doc) {
		f := strings.Fields(a)
		if len(f) == 4 {
			given[f[3]] = true
			if !slices.Contains(enum, f[3]) {
				t.Errorf("%s: reason not in the Reason enum", a)
			}
		}
	}
	for _, name := range []string{"MethodNotAllowed", "NoSuchEndpoint"} {
		reasons, err := errorReasons(doc.Components.Responses[name].Value)
		if err != nil {
			t.Fatalf("response %s: %v", name, err)
		}
		for _, r := range reasons {
			given[r] = true
		}
	}
	for _, r := range Reasons() {
		if !given[r] {
			t.Errorf("the agent gives %s, and no response of docs/openapi.yaml lists it", r)
		}
	}
	post := doc.Paths.Find("/v1/requests").Post.Responses.Status(http.StatusBadRequest).Value
	reasons, _ := errorReasons(post)
	for _, r := range evaluateReasons() {
		if !slices.Contains(reasons, r) {
			t.Errorf("the catalogue check gives %s, and POST /v1/requests' 400 does not list it", r)
		}
	}
	statuses := []string{batch.StatusQueued, batch.StatusSent, batch.StatusHeld, batch.StatusDone,
		batch.StatusRejected, batch.StatusFailed, batch.StatusExpired}
	slices.Sort(statuses)
	if got := enumOf("RequestStatus"); !slices.Equal(got, statuses) {
		t.Errorf("RequestStatus enum %v, want %v", got, statuses)
	}
	if doc.Webhooks["result"] == nil || doc.Webhooks["result"].Post == nil {
		t.Error("no result webhook")
	}
}

// TestOpenAPI_catches: the checks have teeth. Answers that break the
// contract in one way each are refused: an undocumented status, a
// missing header, a reason the response does not list, a field the
// schema does not have, a time that is not UTC, and a catalogue reply
// without its catalogue.
func TestOpenAPI_catches(t *testing.T) {
	c := newContract(t)
	id := strings.Repeat("ab", 16)
	jsonHeader := func(kv ...string) http.Header {
		h := http.Header{"Content-Type": {"application/json"}}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	get := func(path string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.Header.Set("Authorization", "Bearer "+tokenPortal)
		return r
	}
	postReq := httptest.NewRequest(http.MethodPost, "/v1/requests", nil)
	postReq.Header.Set("Content-Type", "application/json")
	status := `{"id":"` + id + `","status":"done","operation":"exam.slots","received":"2026-11-23T10:08:43.138Z","updated":"2026-11-23T10:08:43.2Z","result":[]}`
	for _, tc := range []struct {
		name, why string // why: what the refusal says
		x         exchange
	}{
		{"an undocumented status", `status is not supported`, exchange{req: get("/v1/operations"), status: http.StatusTeapot,
			header: jsonHeader(), body: []byte(`{"error":{"reason":"not_found","message":"x"}}`)}},
		{"a 202 without Location", `"Location" missing`, exchange{req: postReq, reqBody: []byte(plainBody), status: http.StatusAccepted,
			header: jsonHeader(), body: []byte(`{"id":"` + id + `","status":"queued"}`)}},
		{"a 401 without WWW-Authenticate", `"WWW-Authenticate" missing`, exchange{req: get("/v1/operations"), status: http.StatusUnauthorized,
			header: jsonHeader(), body: []byte(`{"error":{"reason":"missing_token","message":"x"}}`)}},
		{"a 429 without Retry-After", `"Retry-After" missing`, exchange{req: get("/v1/operations"), status: http.StatusTooManyRequests,
			header: jsonHeader(), body: []byte(`{"error":{"reason":"rate_limited","message":"x"}}`)}},
		{"a reason its response does not list", `"/error/reason"`, exchange{req: get("/v1/requests/" + id), status: http.StatusNotFound,
			header: jsonHeader(), body: []byte(`{"error":{"reason":"bad_wait","message":"x"}}`)}},
		{"a reason that is no code", `"/error/reason"`, exchange{req: get("/v1/requests/" + id + "?wait=x"), status: http.StatusBadRequest,
			header: jsonHeader(), body: []byte(`{"error":{"reason":"bad wait","message":"x"}}`)}},
		{"an error without its message", `"message" is missing`, exchange{req: get("/v1/requests/" + id), status: http.StatusNotFound,
			header: jsonHeader(), body: []byte(`{"error":{"reason":"not_found"}}`)}},
		{"a status with a field the schema lacks", `"subject" is unsupported`, exchange{req: get("/v1/requests/" + id), status: http.StatusOK,
			header: jsonHeader(), body: []byte(strings.Replace(status, `"result"`, `"subject":"x","result"`, 1))}},
		{"a status of no request status", `"/status"`, exchange{req: get("/v1/requests/" + id), status: http.StatusOK,
			header: jsonHeader(), body: []byte(strings.Replace(status, `"done"`, `"finished"`, 1))}},
		{"a time that is not UTC", `"/updated"`, exchange{req: get("/v1/requests/" + id), status: http.StatusOK,
			header: jsonHeader(), body: []byte(strings.Replace(status, `43.2Z`, `43.2+08:00`, 1))}},
		{"a catalogue reply without its catalogue", `missing property 'catalogue'`, exchange{req: get("/v1/operations"), status: http.StatusOK,
			header: jsonHeader(), body: []byte(`{"source":"catalogue","operations":[]}`)}},
		{"a local policy with a catalogue", `'not' failed`, exchange{req: get("/v1/operations"), status: http.StatusOK,
			header: jsonHeader(), body: []byte(`{"source":"local-policy","catalogue":{"seq":1,"received":"2026-11-23T10:08:43Z"},"operations":[]}`)}},
		{"a health answer of another status", `value must be 'ok'`, exchange{req: get("/healthz"), status: http.StatusOK,
			header: jsonHeader(), body: []byte(`{"status":"fine"}`)}},
		{"a 405 in another shape", `Content-Type`, exchange{req: httptest.NewRequest(http.MethodDelete, "/healthz", nil), status: http.StatusMethodNotAllowed,
			header: http.Header{"Content-Type": {"text/plain"}}, body: []byte("Method Not Allowed\n")}},
		{"a path not in the contract answered 200", `want 404`, exchange{req: get("/v1/other"), status: http.StatusOK,
			header: jsonHeader(), body: []byte(`{"status":"ok"}`)}},
	} {
		if _, _, err := c.check(tc.x); err == nil || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%s: %v, want a refusal saying %s", tc.name, err, tc.why)
		}
	}
	// And the same answers, put right, pass: the refusals above are for
	// the reason each names.
	for _, x := range []exchange{
		{req: postReq, reqBody: []byte(plainBody), status: http.StatusAccepted,
			header: jsonHeader("Location", "/v1/requests/"+id), body: []byte(`{"id":"` + id + `","status":"queued"}`)},
		{req: get("/v1/operations"), status: http.StatusUnauthorized,
			header: jsonHeader("WWW-Authenticate", `Bearer realm="ferry"`), body: []byte(`{"error":{"reason":"missing_token","message":"x"}}`)},
		{req: get("/v1/requests/" + id), status: http.StatusOK, header: jsonHeader(), body: []byte(status)},
		{req: get("/v1/operations"), status: http.StatusOK,
			header: jsonHeader(), body: []byte(`{"source":"catalogue","catalogue":{"seq":1,"received":"2026-11-23T10:08:43Z"},"operations":[]}`)},
	} {
		if _, reqErr, err := c.check(x); err != nil || reqErr != nil {
			t.Errorf("%s %s %d: refused: %v %v", x.req.Method, x.req.URL, x.status, reqErr, err)
		}
	}
}

// typesOperation is added to the sample policy of TestOpenAPI_answers so
// that every code of the catalogue check can be provoked: the sample has
// no string, enum, mobile, plate_type or date_range parameter.
const typesOperation = `
  - name: t.types
    description: one parameter of each type the sample policy lacks
    mode: read
    params:
      s: {type: string, max_len: 8, pattern: '[a-z]+', required: false}
      e: {type: enum, values: [a, b], required: false}
      m: {type: mobile, required: false}
      pt: {type: plate_type, required: false}
      r: {type: date_range, min: 2020-01-01, max: today, max_days: 31, required: false}
    statement: SELECT :s, :e, :m, :pt, :r_from, :r_to
`

// TestOpenAPI_answers drives running agents through every answer the
// contract lists (but those in unreachable), each request and answer
// checked against docs/openapi.yaml by the contract's transport, and
// checks at the end that all of them were seen.
func TestOpenAPI_answers(t *testing.T) {
	c := newContract(t)
	t.Run("requests", func(t *testing.T) { contractRequests(t, c) })
	t.Run("tls", func(t *testing.T) { contractTLS(t, c) })
	t.Run("starting, no catalogue, overloaded", func(t *testing.T) { contractStates(t, c) })
	wired := false // stays false if the subtest skips
	t.Run("openapi.yaml", func(t *testing.T) { contractDocument(t, c); wired = true })
	if t.Failed() {
		return
	}
	for _, a := range declaredAnswers(t, c.doc) {
		why, skip := unreachable[a]
		switch {
		case !wired && strings.Contains(a, " /v1/openapi.yaml "):
		case skip && c.saw(a):
			t.Errorf("%s is listed as unreachable (%s), and was seen", a, why)
		case !skip && !c.saw(a):
			t.Errorf("docs/openapi.yaml lists %s, and no test provoked it", a)
		}
	}
	// The answers outside the operations: a wrong method on each path,
	// and a path the contract does not have.
	for path := range c.doc.Paths.Map() {
		if !c.saw(seenKey(http.MethodPut, path, http.StatusMethodNotAllowed, ReasonMethodNotAllowed)) {
			t.Errorf("PUT %s: 405 not seen", path)
		}
	}
	if !c.saw(seenKey(http.MethodGet, "/v1/no-such-endpoint", http.StatusNotFound, ReasonNotFound)) {
		t.Error("404 of an unknown path not seen")
	}
	// Every status of a request, read with GET.
	for _, st := range []string{batch.StatusQueued, batch.StatusSent, batch.StatusHeld, batch.StatusDone,
		batch.StatusRejected, batch.StatusFailed, batch.StatusExpired} {
		if !c.saw("GET /v1/requests/{id} 200 " + st) {
			t.Errorf("no request read with status %s", st)
		}
	}
}

// contractRequests: the answers of an agent with a local policy: every
// refusal of POST /v1/requests, the statuses of requests the test plays
// the intranet for, a long poll and the long-poll cap, the catalogue, the
// health endpoints, wrong methods and paths, and then the edge's
// refusals (the client's bucket, the address's bucket, a blocked address).
func contractRequests(t *testing.T, c *contract) {
	e := startEnvWith(t, envOptions{
		client: c.client(t, nil),
		// The first line extends the harness's last client, other.
		extra: "    rate: {per_second: 1000, burst: 1000}\n" + kioskClient + "limits:\n  max_long_polls: 1\n",
		setup: func(dir string) {
			f, err := os.OpenFile(filepath.Join(dir, "policy.yaml"), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString(typesOperation); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		},
	})
	const post, get = http.MethodPost, http.MethodGet
	invalid := contractVerdict(requestInvalid, nil)
	cit := sample.Citizens()
	good := goodBody(t)
	subject := func(op, params, subject string) string {
		return `{"operation":"` + op + `","params":` + params + `,"subject":"` + subject + `"}`
	}

	// Accepted requests, each to be answered as results[id] says, and
	// whose token reads it.
	results := map[string]batch.Result{}
	owner := map[string]string{}
	accept := func(token, body string, hdr map[string]string, res batch.Result) string {
		t.Helper()
		r := contractAsk(t, e, post, "/v1/requests", token, body, hdr, http.StatusAccepted, "")
		id := r.str("id")
		res.RequestID = id
		results[id], owner[id] = res, token
		return id
	}
	rows := []map[string]any{{"fine_yuan": 200, "place": "东二环"}}
	polled := accept(tokenPortal, good, nil, batch.Result{Status: batch.StatusDone, Rows: rows})
	keyed := accept(tokenPortal, good, map[string]string{"Idempotency-Key": "k1"}, batch.Result{Status: batch.StatusDone})
	if r := contractAsk(t, e, post, "/v1/requests", tokenPortal, good, map[string]string{"Idempotency-Key": "k1"}, http.StatusAccepted, ""); r.str("id") != keyed {
		t.Errorf("a retry with the same key: %s, want id %s", r.raw, keyed)
	}
	booked := accept(tokenPortal, subject("exam.book", `{"slot_id":1}`, cit[0].IDNumber), nil,
		batch.Result{Status: batch.StatusDone, RowsAffected: 1})
	renewed := accept(tokenPortal, subject("licence.renew", `{}`, cit[0].IDNumber), nil,
		batch.Result{Status: batch.StatusHeld, Reason: policy.ReasonApprovalRequired, Message: "waits for an admin"})
	accept(tokenPortal, plainBody, map[string]string{"Content-Type": "application/json; charset=utf-8"},
		batch.Result{Status: batch.StatusFailed, Reason: "apply_failed", Message: "the replica refused the write"})
	accept(tokenPortal, `{"operation":"exam.slots","params":{"subject":2}}`, nil,
		batch.Result{Status: batch.StatusExpired, Reason: "not_received", Message: "never received"})
	limited := accept(tokenOther, plainBody, nil,
		batch.Result{Status: batch.StatusRejected, Reason: policy.ReasonRateLimited, Message: "slow down", RetryAfter: 30})
	accept(tokenKiosk, `{"operation":"exam.slots","params":{"subject":4}}`, nil, batch.Result{Status: batch.StatusDone, Rows: rows})
	contractAsk(t, e, get, "/v1/requests/"+polled, tokenPortal, "", nil, http.StatusOK, "")

	// Every refusal of POST /v1/requests the agent gives itself.
	for _, tc := range []struct {
		token, body string
		hdr         map[string]string
		code        int
		reason      string
	}{
		{tokenPortal, citizenBody(t, cit[1], "violations.query"), map[string]string{"Idempotency-Key": "k1"}, http.StatusConflict, ReasonIdempotencyConflict},
		{tokenPortal, `{"operation":1}`, invalid, http.StatusBadRequest, ReasonBadJSON},
		{tokenPortal, `{"operation":"exam.slots","params":{"subject":1},"extra":1}`, invalid, http.StatusBadRequest, ReasonBadJSON},
		{tokenPortal, `{"operation":"exam.slots","OPERATION":"exam.slots"}`, invalid, http.StatusBadRequest, ReasonBadJSON},
		{tokenPortal, `{"operation":"exam.slots","operation":"exam.slots"}`, contractVerdict(requestUnchecked, nil), http.StatusBadRequest, ReasonBadJSON},
		{tokenPortal, `{"operation":"exam.slots"} {}`, contractVerdict(requestUnchecked, nil), http.StatusBadRequest, ReasonBadJSON},
		{tokenPortal, `[1]`, invalid, http.StatusBadRequest, ReasonBadJSON},
		{tokenPortal, `null`, invalid, http.StatusBadRequest, ReasonBadJSON},
		{tokenPortal, `{"params":{}}`, invalid, http.StatusBadRequest, ReasonBadJSON},
		{tokenPortal, `{"operation":""}`, invalid, http.StatusBadRequest, ReasonBadJSON},
		{tokenPortal, `{"operation":"` + strings.Repeat("x", batch.MaxOpName+1) + `"}`, invalid, http.StatusBadRequest, ReasonBadJSON},
		{tokenPortal, `{"operation":"exam.slots","params":[1]}`, invalid, http.StatusBadRequest, ReasonBadJSON},
		{tokenPortal, "", contractVerdict(requestInvalid, map[string]string{"Content-Type": "application/json"}), http.StatusBadRequest, ReasonBadJSON},
		{tokenPortal, `{"operation":"exam.slots","params":{},"subject":7}`, invalid, http.StatusBadRequest, ReasonBadSubject},
		{tokenPortal, `{"operation":"exam.slots","params":{},"subject":null}`, invalid, http.StatusBadRequest, ReasonBadSubject},
		{tokenPortal, subject("exam.slots", `{}`, "a b"), invalid, http.StatusBadRequest, ReasonBadSubject},
		{tokenPortal, subject("exam.slots", `{}`, strings.Repeat("1", 65)), invalid, http.StatusBadRequest, ReasonBadSubject},
		{tokenPortal, `{"operation":"violations.query","params":{"plate":"` + strings.Repeat("x", batch.MaxParamsBytes) + `"}}`, nil, http.StatusBadRequest, ReasonParamsTooLarge},
		{tokenPortal, good, contractVerdict(requestInvalid, map[string]string{"Idempotency-Key": " "}), http.StatusBadRequest, ReasonBadIdempotencyKey},
		{tokenPortal, good, contractVerdict(requestInvalid, map[string]string{"Idempotency-Key": strings.Repeat("k", MaxIdempotencyKey+1)}), http.StatusBadRequest, ReasonBadIdempotencyKey},
		{tokenPortal, strings.Repeat(" ", MaxBodySize+1), invalid, http.StatusRequestEntityTooLarge, ReasonBodyTooLarge},
		{tokenPortal, good, contractVerdict(requestInvalid, map[string]string{"Content-Type": "text/plain"}), http.StatusUnsupportedMediaType, ReasonUnsupportedMediaType},
		{tokenPortal, good, contractVerdict(requestInvalid, map[string]string{"Content-Type": ""}), http.StatusUnsupportedMediaType, ReasonUnsupportedMediaType},
		{"", good, nil, http.StatusUnauthorized, ReasonMissingToken},
		{"fy_no-such-token", good, nil, http.StatusUnauthorized, ReasonInvalidToken},
		{tokenKiosk, `{"operation":"violations.query","params":{}}`, nil, http.StatusForbidden, ReasonForbidden},
	} {
		contractAsk(t, e, post, "/v1/requests", tc.token, tc.body, tc.hdr, tc.code, tc.reason)
	}
	// A scheme other than Bearer.
	contractAsk(t, e, post, "/v1/requests", "", good, map[string]string{"Authorization": "Basic cG9ydGFsOng="}, http.StatusUnauthorized, ReasonMissingToken)

	// Every code of the catalogue check. The contract cannot tell these
	// from good requests: the catalogue is the agent's to check.
	for _, tc := range []struct{ token, body, reason string }{
		{tokenPortal, `{"operation":"citizen.delete","params":{}}`, policy.ReasonUnknownOperation},
		{tokenOther, good, policy.ReasonSubjectNotTrusted},
		{tokenPortal, subject("violations.query", `{"plate":"浙A94621"}`, "abc"), policy.ReasonBadSubject},
		{tokenPortal, `{"operation":"violations.query","params":{"plate":"浙A94621"}}`, policy.ReasonMissingSubject},
		{tokenPortal, subject("violations.query", `{"plate":"`+cit[1].Plate+`","id_number":"`+cit[1].IDNumber+`"}`, cit[0].IDNumber), policy.ReasonForbiddenSubject},
		{tokenPortal, `{"operation":"exam.slots","params":null}`, policy.ReasonMissingParam},
		{tokenPortal, `{"operation":"exam.slots","params":{"subject":1,"x":1}}`, policy.ReasonUnknownParam},
		{tokenPortal, `{"operation":"exam.slots","params":{"subject":1,"subject":2}}`, policy.ReasonBadParams},
		{tokenPortal, `{"operation":"exam.slots","params":{"subject":"one"}}`, policy.ReasonBadType},
		{tokenPortal, `{"operation":"exam.slots","params":{"subject":9}}`, policy.ReasonOutOfRange},
		{tokenPortal, `{"operation":"exam.slots","params":{"subject":1,"date_from":"2026-13-01"}}`, policy.ReasonBadDate},
		{tokenPortal, subject("violations.query", `{"plate":"浙A94621","id_number":"123"}`, cit[0].IDNumber), policy.ReasonBadIDNumber},
		{tokenPortal, subject("violations.query", `{"plate":"x"}`, cit[0].IDNumber), policy.ReasonBadPlate},
		{tokenPortal, `{"operation":"t.types","params":{"s":"a\u0007"}}`, policy.ReasonBadValue},
		{tokenPortal, `{"operation":"t.types","params":{"s":"abcdefghij"}}`, policy.ReasonTooLong},
		{tokenPortal, `{"operation":"t.types","params":{"s":"ABC"}}`, policy.ReasonBadPattern},
		{tokenPortal, `{"operation":"t.types","params":{"e":"c"}}`, policy.ReasonNotInEnum},
		{tokenPortal, `{"operation":"t.types","params":{"m":"123"}}`, policy.ReasonBadMobile},
		{tokenPortal, `{"operation":"t.types","params":{"pt":"zz"}}`, policy.ReasonBadPlateType},
		{tokenPortal, `{"operation":"t.types","params":{"r":{"from":"2024-02-01","to":"2024-01-01"}}}`, policy.ReasonBadRange},
	} {
		var hdr map[string]string
		if tc.reason == policy.ReasonBadParams {
			hdr = contractVerdict(requestUnchecked, nil) // a key given twice
		}
		contractAsk(t, e, post, "/v1/requests", tc.token, tc.body, hdr, http.StatusBadRequest, tc.reason)
	}

	// Refusals of GET /v1/requests/{id}.
	contractAsk(t, e, get, "/v1/requests/"+polled+"?wait=x", tokenPortal, "", invalid, http.StatusBadRequest, ReasonBadWait)
	contractAsk(t, e, get, "/v1/requests/"+polled+"?wait=-1s", tokenPortal, "", invalid, http.StatusBadRequest, ReasonBadWait)
	contractAsk(t, e, get, "/v1/requests/"+polled, tokenOther, "", nil, http.StatusNotFound, ReasonNotFound)
	contractAsk(t, e, get, "/v1/requests/nope", tokenPortal, "", nil, http.StatusNotFound, ReasonNotFound)
	contractAsk(t, e, get, "/v1/requests/"+strings.Repeat("0", 32), tokenPortal, "", nil, http.StatusNotFound, ReasonNotFound)
	contractAsk(t, e, get, "/v1/requests/"+polled, "", "", nil, http.StatusUnauthorized, ReasonMissingToken)
	contractAsk(t, e, get, "/v1/requests/"+polled, "fy_no-such-token", "", nil, http.StatusUnauthorized, ReasonInvalidToken)
	contractAsk(t, e, get, "/v1/requests/"+polled+"?wait=0", tokenPortal, "", nil, http.StatusOK, "")

	// The catalogue, the health endpoints, wrong methods and paths.
	ops := contractAsk(t, e, get, "/v1/operations", tokenPortal, "", nil, http.StatusOK, "")
	if ops.str("source") != SourceLocalPolicy || !strings.Contains(ops.raw, `"max_days":31`) {
		t.Errorf("operations of the local policy: %s", ops.raw)
	}
	if r := contractAsk(t, e, get, "/v1/operations", tokenKiosk, "", nil, http.StatusOK, ""); strings.Contains(r.raw, "violations.query") {
		t.Errorf("kiosk's operations: %s", r.raw)
	}
	contractAsk(t, e, get, "/v1/operations", "", "", nil, http.StatusUnauthorized, ReasonMissingToken)
	contractAsk(t, e, get, "/v1/operations", "fy_no-such-token", "", nil, http.StatusUnauthorized, ReasonInvalidToken)
	contractAsk(t, e, get, "/healthz", "", "", nil, http.StatusOK, "")
	contractAsk(t, e, get, "/readyz", "", "", nil, http.StatusOK, "")
	for _, path := range []string{"/v1/requests", "/v1/requests/" + polled, "/v1/operations", "/v1/openapi.yaml", "/healthz", "/readyz"} {
		contractAsk(t, e, http.MethodPut, path, tokenPortal, "", nil, http.StatusMethodNotAllowed, ReasonMethodNotAllowed)
	}
	contractAsk(t, e, http.MethodDelete, "/v1/requests/"+polled, "", "", nil, http.StatusMethodNotAllowed, ReasonMethodNotAllowed)
	contractAsk(t, e, get, "/v1/no-such-endpoint", tokenPortal, "", nil, http.StatusNotFound, ReasonNotFound)
	contractAsk(t, e, get, "/", "", "", nil, http.StatusNotFound, ReasonNotFound)

	// A long poll, and one more past the cap (limits.max_long_polls: 1).
	poll := make(chan *reply, 1)
	go func() { poll <- e.do(t, get, "/v1/requests/"+polled+"?wait=20s", tokenPortal, "", nil) }()
	for deadline := time.Now().Add(5 * time.Second); e.agent.waits.n.Load() != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the long poll is not waiting after 5s")
		}
	}
	contractAsk(t, e, get, "/v1/requests/"+keyed+"?wait=5s", tokenPortal, "", nil, http.StatusTooManyRequests, ReasonTooManyWaits)

	// Play the intranet: take every request, see it sent, answer it.
	taken := map[string]bool{}
	for deadline := time.Now().Add(10 * time.Second); len(taken) < len(results); {
		te := e.nextEnvelope(t, time.Until(deadline))
		if te == nil {
			t.Fatalf("%d of %d requests on the medium after 10s", len(taken), len(results))
		}
		for _, r := range te.body.Requests {
			taken[r.ID] = true
		}
	}
	e.waitStatus(t, booked, batch.StatusSent)
	var answers []batch.Result
	for _, id := range slices.Sorted(maps.Keys(results)) {
		answers = append(answers, results[id])
	}
	name, data := e.sealResults(t, e.resultsHeader(), batch.Results{Results: answers})
	e.drop(t, name, data)
	if r := <-poll; r.code != http.StatusOK || r.str("status") != batch.StatusDone {
		t.Fatalf("long poll: %d %s", r.code, r.raw)
	}
	for id, res := range results {
		var want string
		switch id {
		case limited:
			want = `"retry_after":30`
		case booked:
			want = `"rows_affected":1`
		default:
			want = `"status":"` + res.Status + `"`
		}
		token := owner[id]
		deadline := time.Now().Add(10 * time.Second)
		for r := e.do(t, get, "/v1/requests/"+id, token, "", nil); !strings.Contains(r.raw, want); r = e.do(t, get, "/v1/requests/"+id, token, "", nil) {
			if time.Now().After(deadline) {
				t.Fatalf("request %s: %s after 10s, want %s", id, r.raw, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// A poll of a held request waits for its final result: here, the
	// wait's end.
	if r := contractAsk(t, e, get, "/v1/requests/"+renewed+"?wait=50ms", tokenPortal, "", nil, http.StatusOK, ""); r.str("status") != batch.StatusHeld {
		t.Errorf("a poll of a held request: %s", r.raw)
	}
	// Its final result, a write.
	name, data = e.sealResults(t, e.resultsHeader(), batch.Results{Results: []batch.Result{
		{RequestID: renewed, Status: batch.StatusDone, RowsAffected: 1}}})
	e.drop(t, name, data)
	e.waitStatus(t, renewed, batch.StatusDone)
	// A retry of a done request answers its status.
	if r := contractAsk(t, e, post, "/v1/requests", tokenPortal, good, map[string]string{"Idempotency-Key": "k1"}, http.StatusAccepted, ""); r.str("status") != batch.StatusDone {
		t.Errorf("a retry of a done request: %s", r.raw)
	}

	// The edge. The client's bucket first: other gets one request.
	e.rewriteConfig(t, "rate: {per_second: 1000, burst: 1000}", "rate: {per_second: 0.01, burst: 1}")
	contractAsk(t, e, get, "/v1/operations", tokenOther, "", nil, http.StatusOK, "")
	contractAsk(t, e, get, "/v1/operations", tokenOther, "", nil, http.StatusTooManyRequests, ReasonRateLimited)
	contractAsk(t, e, get, "/v1/requests/"+limited, tokenOther, "", nil, http.StatusTooManyRequests, ReasonRateLimited)
	contractAsk(t, e, post, "/v1/requests", tokenOther, plainBody, nil, http.StatusTooManyRequests, ReasonRateLimited)
	// The address's bucket: one more /v1/ request, then none; the health
	// endpoints are not limited.
	e.rewriteConfig(t, "  max_long_polls: 1\n", "  max_long_polls: 1\n  ip_rate: {per_second: 0.01, burst: 1}\n")
	contractAsk(t, e, get, "/v1/openapi.yaml", "", "", nil, http.StatusOK, "")
	contractAsk(t, e, get, "/v1/openapi.yaml", "", "", nil, http.StatusTooManyRequests, ReasonRateLimited)
	contractAsk(t, e, get, "/v1/operations", tokenPortal, "", nil, http.StatusTooManyRequests, ReasonRateLimited)
	contractAsk(t, e, get, "/healthz", "", "", nil, http.StatusOK, "")
	// A blocked address: refused on every path, before its token.
	e.rewriteConfig(t, "  max_long_polls: 1\n", "  max_long_polls: 1\n  block: [127.0.0.1]\n")
	contractAsk(t, e, post, "/v1/requests", tokenPortal, good, nil, http.StatusForbidden, ReasonIPForbidden)
	for _, path := range []string{"/v1/requests/" + polled, "/v1/operations", "/v1/openapi.yaml", "/healthz", "/readyz"} {
		contractAsk(t, e, get, path, tokenPortal, "", nil, http.StatusForbidden, ReasonIPForbidden)
	}
}

// contractTLS: a client bound to a TLS client certificate (other) that
// presents none is refused on each endpoint with a token.
func contractTLS(t *testing.T, c *contract) {
	pki := newTestPKI(t)
	e := startEnvWith(t, envOptions{
		extra:  tlsExtra,
		setup:  func(dir string) { pki.writeServerTLS(t, dir, 2) },
		client: c.client(t, pki.tlsClient().Transport),
	})
	id := e.submit(t)
	contractAsk(t, e, http.MethodPost, "/v1/requests", tokenOther, plainBody, nil, http.StatusForbidden, ReasonCertificateRequired)
	contractAsk(t, e, http.MethodGet, "/v1/requests/"+id, tokenOther, "", nil, http.StatusForbidden, ReasonCertificateRequired)
	contractAsk(t, e, http.MethodGet, "/v1/operations", tokenOther, "", nil, http.StatusForbidden, ReasonCertificateRequired)
}

// contractStates: an agent starting (its handler served before Run),
// then running without a catalogue, then with the intranet's catalogue,
// then at its backlog limit (limits.max_backlog: 1, and a batcher that
// keeps its one request queued).
func contractStates(t *testing.T, c *contract) {
	e := startEnvWith(t, envOptions{
		noPolicy: true,
		client:   c.client(t, nil),
		extra:    "limits: {max_backlog: 1, retry_after: 2s}\n",
		setup:    func(dir string) { rewrite(t, filepath.Join(dir, "dmz.yaml"), "max_delay: 5ms", "max_delay: 1m") },
		beforeRun: func(a *Agent) {
			// The agent's own handler on a listener of the test's,
			// before Run: what a request meets while the agent starts.
			srv := httptest.NewServer(a.Handler())
			defer srv.Close()
			starting := &env{base: srv.URL, client: c.client(t, nil)}
			contractAsk(t, starting, http.MethodPost, "/v1/requests", tokenPortal, plainBody, nil, http.StatusServiceUnavailable, ReasonShuttingDown)
			contractAsk(t, starting, http.MethodGet, "/readyz", "", "", nil, http.StatusServiceUnavailable, ReasonNotReady)
		},
	})
	// No catalogue yet, and no local policy.
	contractAsk(t, e, http.MethodPost, "/v1/requests", tokenPortal, plainBody, nil, http.StatusServiceUnavailable, ReasonCatalogueUnavailable)
	contractAsk(t, e, http.MethodGet, "/v1/operations", tokenPortal, "", nil, http.StatusServiceUnavailable, ReasonCatalogueUnavailable)
	contractAsk(t, e, http.MethodGet, "/readyz", "", "", nil, http.StatusServiceUnavailable, ReasonNotReady)
	contractAsk(t, e, http.MethodGet, "/healthz", "", "", nil, http.StatusOK, "")
	// The intranet's catalogue.
	h := e.resultsHeader()
	e.sendResults(t, h, sampleCatalogue(t), batch.Results{})
	e.waitCatalogue(t, h.Seq)
	contractAsk(t, e, http.MethodGet, "/readyz", "", "", nil, http.StatusOK, "")
	// One request fills the backlog, and stays queued.
	key := map[string]string{"Idempotency-Key": "q1"}
	id := contractAsk(t, e, http.MethodPost, "/v1/requests", tokenPortal, plainBody, key, http.StatusAccepted, "").str("id")
	if r := contractAsk(t, e, http.MethodGet, "/v1/requests/"+id, tokenPortal, "", nil, http.StatusOK, ""); r.str("status") != batch.StatusQueued {
		t.Errorf("a request of a batch not sealed yet: %s", r.raw)
	}
	contractAsk(t, e, http.MethodPost, "/v1/requests", tokenPortal, `{"operation":"exam.slots","params":{"subject":3}}`, nil, http.StatusServiceUnavailable, ReasonOverloaded)
	contractAsk(t, e, http.MethodGet, "/readyz", "", "", nil, http.StatusServiceUnavailable, ReasonNotReady)
	// A retry of the stored request is still answered.
	contractAsk(t, e, http.MethodPost, "/v1/requests", tokenPortal, plainBody, key, http.StatusAccepted, "")
}

// contractDocument: GET /v1/openapi.yaml answers docs/openapi.yaml; it
// skips if the agent does not serve it.
func contractDocument(t *testing.T, c *contract) {
	e := startEnvWith(t, envOptions{client: c.client(t, nil)})
	resp, err := http.Get(e.base + "/v1/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		t.Skip("route not yet wired")
	}
	r := contractAsk(t, e, http.MethodGet, "/v1/openapi.yaml", "", "", nil, http.StatusOK, "")
	if r.raw != string(docs.OpenAPI) {
		t.Error("GET /v1/openapi.yaml is not docs/openapi.yaml")
	}
}

// TestOpenAPI_webhook: the result callbacks a client's receiver gets, when
// its request becomes held and when it becomes final, are the contract's
// result webhook: its headers, its body, and its signature computed as the
// contract's description says.
func TestOpenAPI_webhook(t *testing.T) {
	c := newContract(t)
	wh := c.doc.Webhooks["result"]
	route := &routers.Route{Spec: c.doc, Path: "result", PathItem: wh, Method: http.MethodPost, Operation: wh.Post}
	var (
		mu       sync.Mutex
		secret   []byte
		problems []string
		got      = map[string]bool{} // webhook-id
	)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		x := exchange{req: r, reqBody: body, status: http.StatusNoContent, header: http.Header{}}
		id := r.Header.Get("webhook-id")
		var bad []string
		if err := openapi3filter.ValidateRequest(r.Context(), &openapi3filter.RequestValidationInput{
			Request: x.request(), Route: route, Options: &openapi3filter.Options{MultiError: true}}); err != nil {
			bad = append(bad, fmt.Sprintf("callback %s does not match the webhook: %v", id, err))
		}
		if r.Header.Get("Idempotency-Key") != id {
			bad = append(bad, fmt.Sprintf("callback %s: Idempotency-Key %q, want the webhook-id", id, r.Header.Get("Idempotency-Key")))
		}
		if err := c.validateResponse(route, nil, x); err != nil {
			bad = append(bad, fmt.Sprintf("the receiver's 204: %v", err))
		}
		mu.Lock()
		defer mu.Unlock()
		// "v1," and the base64 of HMAC-SHA256 with the secret over
		// webhook-id.webhook-timestamp.body.
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(id + "." + r.Header.Get("webhook-timestamp") + "."))
		m.Write(body)
		if sig := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil)); r.Header.Get("webhook-signature") != sig {
			bad = append(bad, fmt.Sprintf("callback %s: signature %q, want %q", id, r.Header.Get("webhook-signature"), sig))
		}
		problems = append(problems, bad...)
		got[id] = true
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(receiver.Close)
	e := startEnvWith(t, envOptions{
		client: c.client(t, nil),
		extra:  "    callback:\n      url: " + receiver.URL + "/ferry/results\n      secret_file: keys/other-callback.secret\n      allow_private: true\n      retries: 0\n      timeout: 2s\n",
		setup: func(dir string) {
			p := filepath.Join(dir, "keys", "other-callback.secret")
			if err := alarm.GenerateSecret(p); err != nil {
				t.Fatal(err)
			}
			s, err := alarm.ReadSecret(p)
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			secret = s
			mu.Unlock()
		},
	})
	held := e.submitAs(t, tokenOther)
	done := e.submitAs(t, tokenOther)
	e.takeRequests(t, 2)
	name, data := e.sealResults(t, e.resultsHeader(), batch.Results{Results: []batch.Result{
		{RequestID: held, Status: batch.StatusHeld, Reason: policy.ReasonApprovalRequired, Message: "waits for an admin"},
		{RequestID: done, Status: batch.StatusDone, Rows: []map[string]any{{"centre": "东区", "places": 3}}},
	}})
	e.drop(t, name, data)
	waitFor := func(ids ...string) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			mu.Lock()
			n := 0
			for _, id := range ids {
				if got[id] {
					n++
				}
			}
			mu.Unlock()
			if n == len(ids) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("callbacks %v not all delivered within 15s: %v", ids, got)
			}
		}
	}
	waitFor(held+"-held", done+"-done")
	name, data = e.sealResults(t, e.resultsHeader(), batch.Results{Results: []batch.Result{
		{RequestID: held, Status: batch.StatusRejected, Reason: policy.ReasonApprovalDenied, Message: "denied"}}})
	e.drop(t, name, data)
	waitFor(held + "-rejected")
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
}
