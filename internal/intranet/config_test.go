package intranet

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/config"
)

const goodConfig = `zone: intranet
peer: dmz
keys: keys
policy: policy.yaml
replica: replica.db
receive:
  type: dir
  dir: ../exchange/requests
send:
  type: dir
  dir: ../exchange/results
inbox: state/inbox
quarantine: state/quarantine
batch:
  max_results: 512
  max_delay: 7ms
envelope_ttl: 2h
`

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "intranet")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "intranet.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadConfig(t *testing.T) {
	path := writeConfig(t, goodConfig)
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(path)
	checks := []struct{ got, want string }{
		{c.Keys, filepath.Join(dir, "keys")},
		{c.Policy, filepath.Join(dir, "policy.yaml")},
		{c.Replica, filepath.Join(dir, "replica.db")},
		{c.Receive.Dir, filepath.Join(filepath.Dir(dir), "exchange", "requests")},
		{c.Send.Dir, filepath.Join(filepath.Dir(dir), "exchange", "results")},
		{c.Inbox, filepath.Join(dir, "state", "inbox")},
		{c.Quarantine, filepath.Join(dir, "state", "quarantine")},
		{c.Approvals, filepath.Join(dir, "approvals")},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("path %q, want %q", ch.got, ch.want)
		}
	}
	if c.Batch.MaxResults != 512 || time.Duration(c.Batch.MaxDelay) != 7*time.Millisecond ||
		time.Duration(c.EnvelopeTTL) != 2*time.Hour || time.Duration(c.DrainTimeout) != DefaultDrainTimeout ||
		time.Duration(c.ApprovalPoll) != DefaultApprovalPoll {
		t.Errorf("values %+v", c)
	}
}

func TestLoadConfig_errors(t *testing.T) {
	tests := []struct {
		name, old, new string
		line           int
		field, msg     string
	}{
		{"unknown key", "inbox: state/inbox", "inbox: state/inbox\ninbx: x", 13, "inbx", `unknown key "inbx"`},
		{"bad zone", "zone: intranet", "zone: Intranet!", 1, "zone", "invalid zone name"},
		{"same zones", "peer: dmz", "peer: intranet", 2, "peer", "must differ"},
		{"batch size", "max_results: 512", "max_results: 0", 15, "batch.max_results", "between 1 and"},
		{"batch delay", "max_delay: 7ms", "max_delay: 0s", 16, "batch.max_delay", "above 0"},
		{"bad duration", "max_delay: 7ms", "max_delay: soon", 16, "batch.max_delay", "invalid duration"},
		{"medium type", "  type: dir\n  dir: ../exchange/results", "  type: tape\n  dir: ../exchange/results", 10, "send.type", "unknown medium type"},
		{"same dirs", "dir: ../exchange/results", "dir: ../exchange/requests", 11, "send.dir", "must differ"},
		{"ttl", "envelope_ttl: 2h", "envelope_ttl: 1s", 17, "envelope_ttl", "at least"},
		{"missing replica", "replica: replica.db", "replica: \"\"", 5, "replica", "required"},
		{"heartbeat", "inbox: state/inbox", "inbox: state/inbox\nheartbeat: 10ms", 13, "heartbeat", "between 100ms and 1h"},
		{"approval poll", "inbox: state/inbox", "inbox: state/inbox\napproval_poll: 10ms", 13, "approval_poll", "between 100ms and 1m"},
		{"no approvals dir", "inbox: state/inbox", "inbox: state/inbox\napprovals: ''", 13, "approvals", "required"},
		{"audit retention too short", "inbox: state/inbox", "inbox: state/inbox\naudit_retention: 90d", 13, "audit_retention", "at least 180d"},
		{"audit retention not a duration", "inbox: state/inbox", "inbox: state/inbox\naudit_retention: 6 months", 13, "audit_retention", "invalid duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := strings.Replace(goodConfig, tt.old, tt.new, 1)
			if body == goodConfig {
				t.Fatalf("test edit %q did not apply", tt.old)
			}
			path := writeConfig(t, body)
			_, err := LoadConfig(path)
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("LoadConfig: %v, want a *config.Error", err)
			}
			if ce.File != path || ce.Line != tt.line || ce.Field != tt.field || !strings.Contains(ce.Msg, tt.msg) {
				t.Fatalf("error %q = {%s %d %q %q}, want line %d field %q msg containing %q",
					err, ce.File, ce.Line, ce.Field, ce.Msg, tt.line, tt.field, tt.msg)
			}
		})
	}
}

func TestConfig_Validate_default(t *testing.T) {
	c := DefaultConfig()
	c.Receive.Dir, c.Send.Dir = "in", "out"
	if err := c.Validate(); err != nil {
		t.Fatalf("default config with media dirs: %v", err)
	}
	c = DefaultConfig()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "receive.dir") {
		t.Fatalf("default config without media dirs: %v, want receive.dir required", err)
	}
}
