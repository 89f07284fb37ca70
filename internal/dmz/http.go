package dmz

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferrybridge/ferry/docs"
	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/policy"
	"github.com/ferrybridge/ferry/internal/queue"
)

// API limits.
const (
	// MaxBodySize caps a POST /v1/requests body.
	MaxBodySize = 64 << 10
	// MaxWait caps the ?wait= of a long poll.
	MaxWait = 30 * time.Second
	// MaxIdempotencyKey caps the Idempotency-Key header.
	MaxIdempotencyKey = 128
	// readTimeout bounds a status read when the client sets no deadline.
	readTimeout = 5 * time.Second
	// MaxHeaderBytes caps a request's header lines.
	MaxHeaderBytes = 16 << 10
	// readHeaderTimeout bounds the TLS handshake and the request's
	// headers; requestReadTimeout the whole request, body included.
	readHeaderTimeout  = 10 * time.Second
	requestReadTimeout = 30 * time.Second
)

// API reason codes the agent gives itself; a policy refusal carries the
// policy's own code. docs/api.md lists them all.
const (
	ReasonBodyTooLarge        = "body_too_large"
	ReasonBadJSON             = "bad_body"
	ReasonParamsTooLarge      = "params_too_large"
	ReasonBadIdempotencyKey   = "bad_idempotency_key"
	ReasonBadSubject          = "bad_subject"
	ReasonIdempotencyConflict = "idempotency_conflict"
	ReasonMissingToken        = "missing_token"
	ReasonInvalidToken        = "invalid_token"
	ReasonForbidden           = "operation_forbidden"
	ReasonNotFound            = "not_found"
	ReasonMethodNotAllowed    = "method_not_allowed"
	ReasonBadWait             = "bad_wait"
	ReasonPolicy              = "policy_rejected"
	ReasonUnavailable         = "unavailable"
	ReasonShuttingDown        = "shutting_down"
	ReasonNotReady            = "not_ready"
	// ReasonCatalogueUnavailable: no catalogue has arrived from the
	// intranet yet and the config names no local policy.
	ReasonCatalogueUnavailable = "catalogue_unavailable"
	// ReasonOverloaded: the spool holds limits.max_backlog requests for
	// the intranet, or limits.max_unacked envelopes wait for its
	// acknowledgement (see backpressure.go); the answer is a 503 with
	// Retry-After.
	ReasonOverloaded = "overloaded"
	// ReasonIPForbidden: the source address is on limits.block, or
	// limits.allow is set and does not hold it. Checked first, on every
	// path.
	ReasonIPForbidden = "ip_forbidden"
	// ReasonRateLimited: the source address's or the client's token
	// bucket is empty; the answer is a 429 with Retry-After.
	ReasonRateLimited = "rate_limited"
	// ReasonTooManyWaits: as many long polls as limits.max_long_polls
	// are waiting already; the answer is a 429 with Retry-After.
	ReasonTooManyWaits = "too_many_waits"
	// ReasonCertificateRequired: the client is bound to a TLS client
	// certificate (clients[].tls_name) and the connection did not present
	// a verified one with that name.
	ReasonCertificateRequired = "certificate_required"
	// ReasonUnsupportedMediaType: a POST body whose Content-Type is not
	// application/json.
	ReasonUnsupportedMediaType = "unsupported_media_type"
)

// Reasons returns every reason code the agent itself answers with, in
// the order docs/api.md lists them; the policy's codes
// (policy.Reasons) come on top.
func Reasons() []string {
	return []string{
		ReasonBadJSON, ReasonBadSubject, ReasonParamsTooLarge, ReasonBadIdempotencyKey, ReasonBadWait,
		ReasonMissingToken, ReasonInvalidToken,
		ReasonForbidden, ReasonIPForbidden, ReasonCertificateRequired,
		ReasonNotFound, ReasonMethodNotAllowed, ReasonIdempotencyConflict,
		ReasonBodyTooLarge, ReasonUnsupportedMediaType,
		ReasonRateLimited, ReasonTooManyWaits,
		ReasonPolicy,
		ReasonCatalogueUnavailable, ReasonOverloaded, ReasonShuttingDown, ReasonUnavailable, ReasonNotReady,
	}
}

// msgCatalogueUnavailable is the message of a catalogue_unavailable answer.
const msgCatalogueUnavailable = "the operation catalogue has not arrived from the intranet yet; retry later"

func (a *Agent) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/requests", a.handleSubmit)
	mux.HandleFunc("GET /v1/requests/{id}", a.handleStatus)
	mux.HandleFunc("GET /v1/operations", a.handleOperations)
	mux.HandleFunc("GET /healthz", a.handleHealth)
	mux.HandleFunc("GET /readyz", a.handleReady)
	mux.HandleFunc("GET /v1/openapi.yaml", handleOpenAPI)
	// The same paths without a method answer 405 in the API's JSON shape;
	// "/" answers 404 for anything else.
	for _, p := range []string{"/v1/requests", "/v1/requests/{id}", "/v1/operations", "/v1/openapi.yaml", "/healthz", "/readyz"} {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusMethodNotAllowed, ReasonMethodNotAllowed, "method not allowed", "")
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, ReasonNotFound, "no such endpoint", "")
	})
	return mux
}

// errorBody is the JSON of every error response.
type errorBody struct {
	Error apiError `json:"error"`
}

type apiError struct {
	Reason  string `json:"reason"`
	Message string `json:"message"`
	Param   string `json:"param,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, reason, msg, param string) {
	setOutcome(w, reason)
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ferry"`)
	}
	writeJSON(w, code, errorBody{Error: apiError{Reason: reason, Message: msg, Param: param}})
}

// authenticate returns the client whose token the request bears, or
// writes a 401 and returns nil.
func (a *Agent) authenticate(w http.ResponseWriter, r *http.Request) *client {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if h == "" || !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		writeError(w, http.StatusUnauthorized, ReasonMissingToken, "an Authorization: Bearer token is required", "")
		return nil
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	var found *client
	// Compare against every client in constant time, without stopping at
	// the first match, so timing says nothing about which hash matched.
	clients := *a.clients.Load()
	for i := range clients {
		if subtle.ConstantTimeCompare(sum[:], clients[i].hash[:]) == 1 {
			found = &clients[i]
		}
	}
	if found == nil {
		writeError(w, http.StatusUnauthorized, ReasonInvalidToken, "the bearer token is not valid", "")
		return nil
	}
	if found.tlsName != "" && !clientTLSName(r, found.tlsName) {
		a.edgeRefused(ReasonCertificateRequired, sourceOf(r))
		writeError(w, http.StatusForbidden, ReasonCertificateRequired,
			"this client must present its TLS client certificate", "")
		return nil
	}
	if found.lim != nil {
		if d := takeToken(found.lim, a.now()); d > 0 {
			a.edgeRefused(ReasonRateLimited, sourceOf(r))
			w.Header().Set("Retry-After", retryAfter(d))
			writeError(w, http.StatusTooManyRequests, ReasonRateLimited,
				"too many requests from this client; retry after Retry-After seconds", "")
			return nil
		}
	}
	return found
}

// submitBody is the JSON of POST /v1/requests.
type submitBody struct {
	Operation string          `json:"operation"`
	Params    json.RawMessage `json:"params"`
	// Subject stays raw so that a value of the wrong type is refused as
	// bad_subject rather than bad_body; see parseSubject.
	Subject json.RawMessage `json:"subject"`
}

// submitReply is the JSON of a 202 answer.
type submitReply struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

func (a *Agent) handleSubmit(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	o := &observed{ResponseWriter: w}
	w = o
	var (
		cl      *client
		subject string
	)
	defer func() { a.observeSubmit(o, cl, subject, start) }()
	cl = a.authenticate(w, r)
	if cl == nil {
		return
	}
	if !a.ready.Load() {
		writeError(w, http.StatusServiceUnavailable, ReasonShuttingDown, "the agent is not accepting requests", "")
		return
	}
	// One catalogue decides the whole request, even if a newer one comes
	// into force meanwhile.
	ck := a.current()
	if ck == nil {
		writeError(w, http.StatusServiceUnavailable, ReasonCatalogueUnavailable, msgCatalogueUnavailable, "")
		return
	}
	if !jsonContentType(r.Header.Get("Content-Type")) {
		a.refuse(cl, "", ReasonUnsupportedMediaType)
		writeError(w, http.StatusUnsupportedMediaType, ReasonUnsupportedMediaType,
			"Content-Type must be application/json", "")
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if _, present := r.Header["Idempotency-Key"]; present && (key == "" || len(key) > MaxIdempotencyKey || !printable(key)) {
		a.refuse(cl, "", ReasonBadIdempotencyKey)
		writeError(w, http.StatusBadRequest, ReasonBadIdempotencyKey,
			"Idempotency-Key must be 1 to 128 printable ASCII characters without spaces", "")
		return
	}
	if r.ContentLength > MaxBodySize {
		// Refused before reading: a client that declares 10 GB and then
		// sends slowly must not hold the handler until ReadTimeout.
		a.refuse(cl, "", ReasonBodyTooLarge)
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, "the body is larger than 65536 bytes", "")
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(o.ResponseWriter, r.Body, MaxBodySize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			a.refuse(cl, "", ReasonBodyTooLarge)
			writeError(w, http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, "the body is larger than 65536 bytes", "")
			return
		}
		writeError(w, http.StatusBadRequest, ReasonBadJSON, "the body could not be read", "")
		return
	}
	var body submitBody
	if msg, param := decodeSubmit(data, &body); msg != "" {
		a.refuse(cl, "", ReasonBadJSON)
		writeError(w, http.StatusBadRequest, ReasonBadJSON, msg, param)
		return
	}
	if ck.known(body.Operation) {
		o.op = body.Operation
	}
	var ok bool
	subject, ok = parseSubject(body.Subject)
	if !ok {
		// The message never quotes the value: it is personal data.
		a.refuse(cl, body.Operation, ReasonBadSubject)
		writeError(w, http.StatusBadRequest, ReasonBadSubject, msgBadSubject, "subject")
		return
	}
	var params bytes.Buffer
	if err := json.Compact(&params, body.Params); err != nil {
		a.refuse(cl, body.Operation, ReasonBadJSON)
		writeError(w, http.StatusBadRequest, ReasonBadJSON, "params is not valid JSON", "params")
		return
	}
	if params.Len() > batch.MaxParamsBytes {
		a.refuse(cl, body.Operation, ReasonParamsTooLarge)
		writeError(w, http.StatusBadRequest, ReasonParamsTooLarge, "params is larger than 8192 bytes", "params")
		return
	}
	if cl.ops != nil && !cl.ops[body.Operation] {
		a.refuse(cl, body.Operation, ReasonForbidden)
		writeError(w, http.StatusForbidden, ReasonForbidden, "this client may not submit this operation", "operation")
		return
	}
	if _, err := ck.pol.Evaluate(policy.Request{Client: cl.name, Subject: subject, Operation: body.Operation,
		Params: params.Bytes(), Now: a.now()}); err != nil {
		var rej *policy.RejectError
		if errors.As(err, &rej) {
			reason := rej.Reason
			if reason == "" {
				reason = ReasonPolicy
			}
			a.log.Info("request refused by policy", slog.String(logClient, cl.name), slog.String(logReason, reason))
			a.refuse(cl, body.Operation, reason)
			writeError(w, http.StatusBadRequest, reason, rej.Message, rej.Param)
			return
		}
		a.log.Error("policy check failed", slog.String(logClient, cl.name), slog.String(logError, err.Error()))
		writeError(w, http.StatusInternalServerError, ReasonPolicy, "the policy could not check the request", "")
		return
	}
	req := queue.Request{
		Client:         cl.name,
		IdempotencyKey: key,
		Operation:      body.Operation,
		Params:         params.Bytes(),
		Subject:        subject,
	}
	if limit := a.gate.admit(); limit != "" {
		a.refuseOverloaded(w, r, cl, req, limit)
		return
	}
	// Submit is waited for even if the client goes away: the request may
	// be stored all the same, and the gate's reservation must last until
	// it is known.
	acc, err := a.intake.Submit(context.WithoutCancel(r.Context()), req)
	a.gate.release(acc, err)
	switch {
	case errors.Is(err, queue.ErrIdempotencyConflict):
		writeIdempotencyConflict(w)
		return
	case errors.Is(err, queue.ErrBadSubject):
		// parseSubject and the spool apply the same rule; kept so that a
		// divergence answers 400, not 503.
		writeError(w, http.StatusBadRequest, ReasonBadSubject, msgBadSubject, "subject")
		return
	case errors.Is(err, queue.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, ReasonShuttingDown, "the agent is not accepting requests", "")
		return
	case err != nil:
		if r.Context().Err() == nil {
			a.log.Error("intake failed", slog.String(logClient, cl.name), slog.String(logError, err.Error()))
		}
		writeError(w, http.StatusServiceUnavailable, ReasonUnavailable, "the request could not be stored; retry with the same Idempotency-Key", "")
		return
	}
	if !acc.Existing {
		a.log.Debug("request accepted", slog.String(logRequest, acc.ID), slog.String(logClient, cl.name), slog.String(logOp, body.Operation))
	}
	a.answerAccepted(w, acc)
}

// refuse records in the audit log that client cl's request (of
// operation op, if known) was refused with reason. It never blocks.
func (a *Agent) refuse(cl *client, op, reason string) {
	a.refused.record(a.now(), cl.name, op, reason)
}

// answerAccepted writes the 202 of a request stored now or before.
func (a *Agent) answerAccepted(w http.ResponseWriter, acc queue.Accepted) {
	if acc.Existing {
		setOutcome(w, outcomeDuplicate)
	} else {
		setOutcome(w, outcomeAccepted)
	}
	w.Header().Set("Location", "/v1/requests/"+acc.ID)
	writeJSON(w, http.StatusAccepted, submitReply{ID: acc.ID, Status: acc.Status})
}

// writeIdempotencyConflict writes the 409 of a key reused for another
// request.
func writeIdempotencyConflict(w http.ResponseWriter) {
	writeError(w, http.StatusConflict, ReasonIdempotencyConflict,
		"this Idempotency-Key was already used with a different operation, params or subject", "")
}

// jsonContentType reports whether a Content-Type header is
// application/json, with parameters or without (charset=utf-8 is the
// only meaningful one; JSON is UTF-8).
func jsonContentType(v string) bool {
	mt, _, err := mime.ParseMediaType(v)
	return err == nil && mt == "application/json"
}

// decodeSubmit decodes a POST body strictly; on failure it returns a
// message for the client and the field concerned.
func decodeSubmit(data []byte, v *submitBody) (string, string) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Field != "" {
			return "wrong JSON type for " + ute.Field, ute.Field
		}
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return "unknown field " + f, strings.Trim(f, `"`)
		}
		return "the body is not a JSON object with operation and params", ""
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return "trailing data after the JSON object", ""
	}
	if msg, param := exactKeys(data); msg != "" {
		return msg, param
	}
	if v.Operation == "" {
		return "operation is required", "operation"
	}
	if len(v.Operation) > batch.MaxOpName {
		return "operation name is too long", "operation"
	}
	p := bytes.TrimSpace(v.Params)
	if len(p) == 0 || bytes.Equal(p, []byte("null")) {
		v.Params = json.RawMessage("{}")
	} else if p[0] != '{' {
		return "params must be a JSON object", "params"
	}
	return "", ""
}

// exactKeys checks what encoding/json lets through in a body it decoded:
// a key given twice (it keeps the last) and a key in another case (it
// matches "OPERATION" to operation). Either would let two readers of the
// same body see different requests.
func exactKeys(data []byte) (string, string) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil { // the '{', already checked
		return "the body is not a JSON object with operation and params", ""
	}
	var seen [3]bool
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return "the body is not a JSON object with operation and params", ""
		}
		k, _ := t.(string)
		i := slices.Index(submitKeys[:], k)
		switch {
		case i < 0:
			return "unknown field " + strconv.Quote(k), k
		case seen[i]:
			return "field " + k + " is given more than once", k
		}
		seen[i] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return "the body is not a JSON object with operation and params", ""
		}
	}
	return "", ""
}

// submitKeys are the fields of a POST body, exactly.
var submitKeys = [3]string{"operation", "params", "subject"}

// msgBadSubject is the message of a bad_subject answer.
const msgBadSubject = "subject must be a string of 1 to 64 printable ASCII characters without spaces"

// parseSubject returns the subject of a POST body's raw "subject" value:
// "" when the field is absent or the empty string, the string when it
// satisfies batch.ValidSubject, and false for anything else (another JSON
// type, null included, or a string of the wrong shape).
func parseSubject(raw json.RawMessage) (string, bool) {
	if raw == nil {
		return "", true
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	if s == "" {
		return "", true
	}
	return s, batch.ValidSubject(s)
}

// statusReply is the JSON of GET /v1/requests/{id}.
type statusReply struct {
	ID        string          `json:"id"`
	Status    string          `json:"status"`
	Operation string          `json:"operation"`
	Received  time.Time       `json:"received"`
	Updated   time.Time       `json:"updated"`
	Reason    string          `json:"reason,omitempty"`
	Message   string          `json:"message,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	// RowsAffected is present for a done write operation, zero included
	// (a booking of a full slot writes nothing).
	RowsAffected *int64 `json:"rows_affected,omitempty"`
	// RetryAfter is set for a request refused with rate_limited: the
	// seconds to wait before sending it again.
	RetryAfter int64 `json:"retry_after,omitempty"`
}

func (a *Agent) handleStatus(w http.ResponseWriter, r *http.Request) {
	cl := a.authenticate(w, r)
	if cl == nil {
		return
	}
	id := r.PathValue("id")
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			writeError(w, http.StatusBadRequest, ReasonBadWait, `wait must be a duration such as "10s"`, "wait")
			return
		}
		wait = min(d, MaxWait)
	}
	notFound := func() {
		writeError(w, http.StatusNotFound, ReasonNotFound, "no such request", "")
	}
	if !batch.ValidID(id) {
		notFound()
		return
	}
	get := func() (*queue.Status, bool) {
		ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
		defer cancel()
		st, err := a.spool.Get(ctx, id)
		switch {
		case errors.Is(err, queue.ErrNotFound):
			notFound()
			return nil, false
		case err != nil:
			if r.Context().Err() == nil {
				a.log.Error("status read failed", slog.String(logRequest, id), slog.String(logError, err.Error()))
			}
			writeError(w, http.StatusServiceUnavailable, ReasonUnavailable, "the status could not be read", "")
			return nil, false
		case st.Client != cl.name:
			// Another client's request: answered as if it did not exist.
			notFound()
			return nil, false
		}
		return st, true
	}
	st, ok := get()
	if !ok {
		return
	}
	// A long poll ends when the request is final, or when it becomes
	// held: progress the client should see (a write now waits for an
	// admin). A poll on a request already held waits for its final result.
	wasHeld := st.Status == batch.StatusHeld
	settled := func(status string) bool {
		return queue.Final(status) || status == batch.StatusHeld && !wasHeld
	}
	if wait > 0 && !settled(st.Status) {
		if !a.waits.enter(a.edgeRules.Load().maxWaits) {
			a.edgeRefused(ReasonTooManyWaits, sourceOf(r))
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusTooManyRequests, ReasonTooManyWaits,
				"too many long polls are waiting; retry after Retry-After seconds, or poll without wait", "")
			return
		}
		defer a.waits.leave()
		timer := time.NewTimer(wait)
		defer timer.Stop()
		for !settled(st.Status) {
			// Register before reading again, so a result stored in
			// between still wakes this poll.
			woken, unregister := a.waiters.add(id)
			st, ok = get()
			if !ok {
				unregister()
				return
			}
			if settled(st.Status) {
				unregister()
				break
			}
			select {
			case <-woken:
				continue
			case <-timer.C:
			case <-r.Context().Done():
			case <-a.stopping:
			}
			unregister()
			break
		}
	}
	writeJSON(w, http.StatusOK, a.statusOf(st))
}

// statusOf is the JSON of request st, as GET /v1/requests/{id} and the
// result callbacks give it.
func (a *Agent) statusOf(st *queue.Status) statusReply {
	reply := statusReply{
		ID:         st.ID,
		Status:     st.Status,
		Operation:  st.Operation,
		Received:   st.Received,
		Updated:    st.Updated,
		Reason:     st.Reason,
		Message:    st.Message,
		Result:     st.Result,
		RetryAfter: st.RetryAfter,
	}
	if st.Status == batch.StatusDone {
		// The mode comes from the catalogue in force now; a request whose
		// operation it no longer lists shows rows_affected only if not 0.
		var op *policy.Operation
		if ck := a.current(); ck != nil {
			op, _ = ck.pol.Operation(st.Operation)
		}
		if st.RowsAffected != 0 || op != nil && op.Mode == policy.ModeWrite {
			n := st.RowsAffected
			reply.RowsAffected = &n
		}
	}
	return reply
}

// operationsReply is the JSON of GET /v1/operations.
type operationsReply struct {
	// Source is SourceCatalogue or SourceLocalPolicy.
	Source string `json:"source"`
	// Catalogue says which catalogue, for SourceCatalogue.
	Catalogue *catalogueInfo `json:"catalogue,omitempty"`
	// Operations are the catalogue's own JSON for each operation the
	// client may submit, in catalogue order.
	Operations []policy.CatalogueOperation `json:"operations"`
}

type catalogueInfo struct {
	Seq      uint64    `json:"seq"`
	Received time.Time `json:"received"`
}

func (a *Agent) handleOperations(w http.ResponseWriter, r *http.Request) {
	cl := a.authenticate(w, r)
	if cl == nil {
		return
	}
	ck := a.current()
	if ck == nil {
		writeError(w, http.StatusServiceUnavailable, ReasonCatalogueUnavailable, msgCatalogueUnavailable, "")
		return
	}
	out := operationsReply{Source: ck.source, Operations: []policy.CatalogueOperation{}}
	if ck.source == SourceCatalogue {
		out.Catalogue = &catalogueInfo{Seq: ck.seq, Received: ck.received}
	}
	for _, op := range ck.ops {
		if cl.ops != nil && !cl.ops[op.Name] {
			continue
		}
		out.Operations = append(out.Operations, op)
	}
	writeJSON(w, http.StatusOK, out)
}

// handleOpenAPI answers the API's contract, docs/openapi.yaml. It needs
// no token: it holds nothing about the deployment.
func handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(docs.OpenAPI)
}

func (a *Agent) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (a *Agent) handleReady(w http.ResponseWriter, r *http.Request) {
	if !a.ready.Load() {
		writeError(w, http.StatusServiceUnavailable, ReasonNotReady, "the agent is starting or draining", "")
		return
	}
	if a.current() == nil {
		writeError(w, http.StatusServiceUnavailable, ReasonNotReady, msgCatalogueUnavailable, "")
		return
	}
	if limit := a.gate.overloaded(); limit != "" {
		writeError(w, http.StatusServiceUnavailable, ReasonNotReady, "the agent refuses new requests: "+overloadWhat[limit], "")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	if err := a.spool.Ping(ctx); err != nil {
		writeError(w, http.StatusServiceUnavailable, ReasonNotReady, "the spool does not answer", "")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
