package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/alarm"
)

// TestAlarm_secretAndTest: alarm secret writes a secret the agent and a
// receiver share; alarm test sends a test event the receiver verifies
// with it, and fails when the receiver refuses it.
func TestAlarm_secretAndTest(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dep")
	mustFerryctl(t, 0, "init", dir)
	secret := filepath.Join(dir, "dmz", "keys", "webhook.secret")
	out, _ := mustFerryctl(t, 0, "alarm", "secret", secret)
	matches(t, "secret", out, `^wrote a new webhook secret to .*webhook.secret \(0600\)`)
	if fi, err := os.Stat(secret); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v %v", fi, err)
	}
	_, errOut := mustFerryctl(t, 1, "alarm", "secret", secret)
	matches(t, "secret twice", errOut, `exists`)
	key, err := alarm.ReadSecret(secret)
	if err != nil {
		t.Fatal(err)
	}

	var status atomic.Int32
	status.Store(http.StatusNoContent)
	var verified atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if alarm.Verify(key, r.Header, body, time.Now(), 5*time.Minute) == nil {
			verified.Add(1)
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	cfg := filepath.Join(dir, "dmz", "dmz.yaml")
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("alarms:\n  webhook:\n    url: " + srv.URL + "/ferry\n    secret_file: keys/webhook.secret\n    retries: 0\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, _ = mustFerryctl(t, 0, "alarm", "test", "--config", cfg)
	matches(t, "test", out, `^test event [0-9a-f]{32} delivered`)
	if verified.Load() != 1 {
		t.Fatalf("the receiver verified %d events, want 1", verified.Load())
	}
	status.Store(http.StatusForbidden)
	_, errOut = mustFerryctl(t, 1, "alarm", "test", "--config", cfg)
	matches(t, "refused", errOut, `the receiver answered 403 Forbidden`)
}
