package client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/alarm"
	"github.com/ferrybridge/ferry/internal/dmz"
	"github.com/ferrybridge/ferry/internal/policy"
)

// TestReasons: the package has a sentinel for every code the agent and
// the policy give.
func TestReasons(t *testing.T) {
	have := Reasons()
	for _, r := range append(dmz.Reasons(), policy.Reasons...) {
		if !slices.Contains(have, r) {
			t.Errorf("no sentinel for reason %q", r)
		}
	}
}

// server is an httptest server answering with the handler of the test.
func server(t *testing.T, h http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := New(srv.URL, "fy_test")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestError_decodingAndIs(t *testing.T) {
	c := server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer fy_test" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("headers %v", r.Header)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":{"reason":"forbidden_subject","message":"parameter id_number must be the request's subject","param":"id_number"}}`)
	})
	_, err := c.Submit(context.Background(), Submission{Operation: "violations.query", Params: map[string]any{"id_number": "x"}})
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != 400 || e.Param != "id_number" || e.Temporary() {
		t.Fatalf("error %#v", err)
	}
	if !errors.Is(err, ErrForbiddenSubject) || errors.Is(err, ErrBadSubject) {
		t.Fatalf("errors.Is: %v", err)
	}
	if !strings.Contains(err.Error(), "forbidden_subject") {
		t.Fatalf("message %q", err)
	}
}

// TestSubmit_retries: 503 overloaded and 429 rate_limited are retried
// after their Retry-After with the same Idempotency-Key; a 400 is not.
func TestSubmit_retries(t *testing.T) {
	var mu sync.Mutex
	var keys []string
	var at []time.Time
	c := server(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		at = append(at, time.Now())
		n := len(keys)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch n {
		case 1:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":{"reason":"overloaded","message":"full"}}`)
		case 2:
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":{"reason":"rate_limited","message":"slow"}}`)
		default:
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, `{"id":"0123456789abcdef0123456789abcdef","status":"queued"}`)
		}
	})
	acc, err := c.Submit(context.Background(), Submission{Operation: "op"})
	if err != nil {
		t.Fatal(err)
	}
	if acc.ID != "0123456789abcdef0123456789abcdef" || len(keys) != 3 || keys[0] == "" || keys[1] != keys[0] || keys[2] != keys[0] || acc.IdempotencyKey != keys[0] {
		t.Fatalf("accepted %+v after keys %q", acc, keys)
	}
	if d := at[1].Sub(at[0]); d < 900*time.Millisecond {
		t.Fatalf("retried %v after a Retry-After of 1s", d)
	}

	calls := 0
	c = server(t, func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":{"reason":"unknown_operation","message":"no"}}`)
	})
	if _, err := c.Submit(context.Background(), Submission{Operation: "op", IdempotencyKey: "mine"}); !errors.Is(err, ErrUnknownOperation) || calls != 1 {
		t.Fatalf("a 400: %v after %d calls", err, calls)
	}
	// Retries end with the context.
	c = server(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":{"reason":"unavailable","message":"spool"}}`)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.Submit(ctx, Submission{Operation: "op"}); !errors.Is(err, ErrUnavailable) || time.Since(start) > 2*time.Second {
		t.Fatalf("with a context ending: %v after %v", err, time.Since(start))
	}
}

// TestWait: long polls until final; a rejected request's Err is typed.
func TestWait(t *testing.T) {
	n := 0
	c := server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("wait") != "30s" {
			t.Errorf("wait %q", r.URL.Query().Get("wait"))
		}
		n++
		status := `"sent"`
		extra := ""
		if n == 3 {
			status, extra = `"rejected"`, `,"reason":"rate_limited","message":"slow down","retry_after":60`
		}
		io.WriteString(w, `{"id":"0123456789abcdef0123456789abcdef","status":`+status+`,"operation":"op","received":"2026-11-24T10:00:00Z","updated":"2026-11-24T10:00:01Z"`+extra+`}`)
	})
	r, err := c.Wait(context.Background(), "0123456789abcdef0123456789abcdef")
	if err != nil || n != 3 || !r.Final() {
		t.Fatalf("Wait: %+v %v after %d polls", r, err, n)
	}
	err = r.Err()
	var e *Error
	if !errors.Is(err, ErrRateLimited) || !errors.As(err, &e) || e.RetryAfter != time.Minute || e.Request != "rejected" {
		t.Fatalf("Err: %#v", err)
	}
	if (&Request{Status: StatusDone}).Err() != nil {
		t.Fatal("a done request has an error")
	}
}

func TestVerifyCallback(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cb.secret")
	if err := alarm.GenerateSecret(path); err != nil {
		t.Fatal(err)
	}
	secret, err := alarm.ReadSecret(path)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"id":"0123456789abcdef0123456789abcdef","status":"done","operation":"op","received":"2026-11-24T10:00:00Z","updated":"2026-11-24T10:00:01Z","result":[{"fine":200}]}`)
	req := func(ts time.Time, b []byte) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/cb", bytes.NewReader(b))
		r.Header.Set("webhook-id", "0123456789abcdef0123456789abcdef-done")
		r.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
		r.Header.Set("webhook-signature", alarm.Sign(secret, "0123456789abcdef0123456789abcdef-done", ts, body))
		return r
	}
	got, err := VerifyCallback(secret, req(time.Now(), body))
	if err != nil || got.Status != StatusDone {
		t.Fatalf("a good callback: %+v %v", got, err)
	}
	var rows []struct{ Fine int }
	if err := got.Rows(&rows); err != nil || len(rows) != 1 || rows[0].Fine != 200 {
		t.Fatalf("rows %+v %v", rows, err)
	}
	if _, err := VerifyCallback(secret, req(time.Now(), append([]byte(nil), bytes.Replace(body, []byte("200"), []byte("0"), 1)...))); err == nil {
		t.Fatal("a tampered callback verifies")
	}
	if _, err := VerifyCallback(secret, req(time.Now().Add(-time.Hour), body)); err == nil {
		t.Fatal("an hour-old callback verifies")
	}
}
