package dmz

import (
	"net/http"
	"os"
	"strings"
	"testing"
)

// TestAgent_Reload_config: SIGHUP's Reload puts a changed client token,
// limits and alarm thresholds in force at once, without a restart; a
// config that does not load changes nothing; a setting that needs a
// restart is logged and keeps its running value.
func TestAgent_Reload_config(t *testing.T) {
	e := startEnv(t)
	e.submit(t)
	orig, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	const newToken = "fy_rotated-portal-token"
	text := strings.Replace(string(orig), hashHex(tokenPortal), hashHex(newToken), 1)
	text = strings.Replace(text, "listen: ", "limits: {max_backlog: 7, retry_after: 9s}\nlisten: ", 1)
	if text == string(orig) || !strings.Contains(text, "listen: ") {
		t.Fatal("config not rewritten")
	}
	// A restart-only change too: the port.
	text = strings.Replace(text, "listen: 127.0.0.1:0", "listen: 127.0.0.1:1", 1)
	if err := os.WriteFile(e.cfgPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.agent.Reload(); err != nil {
		t.Fatal(err)
	}
	if r := e.do(t, http.MethodPost, "/v1/requests", tokenPortal, goodBody(t), nil); r.code != http.StatusUnauthorized {
		t.Fatalf("old token after reload: HTTP %d, want 401", r.code)
	}
	if r := e.do(t, http.MethodPost, "/v1/requests", newToken, goodBody(t), nil); r.code != http.StatusAccepted {
		t.Fatalf("new token after reload: HTTP %d %s", r.code, r.raw)
	}
	if got := e.agent.limits.Load(); got.MaxBacklog != 7 || e.agent.retryAfterSeconds() != "9" {
		t.Fatalf("limits after reload: %+v", got)
	}
	if e.agent.Addr().String() == "127.0.0.1:1" {
		t.Fatal("listen changed without a restart")
	}

	// A config that does not load: nothing changes.
	if err := os.WriteFile(e.cfgPath, []byte(text+"no_such_setting: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = e.agent.Reload()
	if err == nil || !strings.Contains(err.Error(), "no_such_setting") {
		t.Fatalf("Reload of a bad config: %v", err)
	}
	if r := e.do(t, http.MethodPost, "/v1/requests", newToken, goodBody(t), nil); r.code != http.StatusAccepted {
		t.Fatalf("token in force after a refused reload: HTTP %d", r.code)
	}
}
