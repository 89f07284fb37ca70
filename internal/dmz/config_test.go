package dmz

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrybridge/ferry/internal/config"
)

// TestConfig_Validate_everyError: a config with several problems reports
// each of them with its line and field, in one error, and skips the
// checks whose input already failed.
func TestConfig_Validate_everyError(t *testing.T) {
	const body = `zone: dmz
peer: intranet
listen: 127.0.0.1:8080
keys: keys
spool: state/spool.db
send: {type: dir, dir: exchange/requests}
receive: {type: tape, dir: exchange/requests}
inbox: state/inbox
quarantine: state/inbox
batch: {max_requests: 0, max_delay: 5ms}
resend_after: 10ms
resend_max: 1ms
clients:
  - name: portal
    token_sha256: abc
  - name: portal
    token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
`
	dir := t.TempDir()
	path := filepath.Join(dir, "dmz.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(path)
	if err == nil {
		t.Fatal("LoadConfig: no error")
	}
	want := []struct {
		line  int
		field string
		msg   string
	}{
		{9, "quarantine", "must differ from inbox"},
		{10, "batch.max_requests", "must be between 1 and"},
		{11, "resend_after", "at least 1s"},
		{7, "receive.type", "unknown medium type"},
		{15, "clients[0].token_sha256", "64 lowercase hex digits"},
		{16, "clients[1].name", `duplicate client name "portal"`},
	}
	var got []*config.Error
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var ce *config.Error
		if !errors.As(e, &ce) {
			t.Fatalf("problem %v (%T) is not a *config.Error", e, e)
		}
		got = append(got, ce)
	}
	if len(got) != len(want) {
		t.Fatalf("%d problems, want %d (resend_max and receive.dir depend on failed values):\n%v", len(got), len(want), err)
	}
	for i, w := range want {
		g := got[i]
		if g.File != path || g.Line != w.line || g.Field != w.field || !strings.Contains(g.Msg, w.msg) {
			t.Errorf("problem %d = %q, want line %d field %s message containing %q", i, g, w.line, w.field, w.msg)
		}
	}
	// The first problem is what errors.As finds, as before.
	var first *config.Error
	if !errors.As(err, &first) || first.Field != "quarantine" {
		t.Errorf("errors.As found %v, want the quarantine problem", first)
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != len(want) {
		t.Errorf("Error() has %d lines, want one per problem:\n%s", n, err)
	}
}
