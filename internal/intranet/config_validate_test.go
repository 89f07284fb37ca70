package intranet

import (
	"errors"
	"strings"
	"testing"

	"github.com/ferrybridge/ferry/internal/config"
)

// TestConfig_Validate_everyError: a config with several problems reports
// each of them with its line and field, in one error, and skips the
// checks whose input already failed.
func TestConfig_Validate_everyError(t *testing.T) {
	body := goodConfig
	for _, edit := range [][2]string{
		{"peer: dmz", "peer: intranet"},
		{"replica: replica.db", "replica: replica.db\npolicy_signatures: 0"},
		{"  type: dir\n  dir: ../exchange/results", "  type: ftp\n  dir: ../exchange/requests"},
		{"max_delay: 7ms", "max_delay: 2m"},
		{"envelope_ttl: 2h", "envelope_ttl: 2h\naudit_log: replica.db"},
	} {
		if !strings.Contains(body, edit[0]) {
			t.Fatalf("edit %q does not apply", edit[0])
		}
		body = strings.Replace(body, edit[0], edit[1], 1)
	}
	path := writeConfig(t, body)
	_, err := LoadConfig(path)
	if err == nil {
		t.Fatal("LoadConfig: no error")
	}
	want := []struct {
		line  int
		field string
		msg   string
	}{
		{2, "peer", "must differ"},
		{6, "policy_signatures", "between 1 and"},
		{19, "audit_log", "must differ from replica"},
		{17, "batch.max_delay", "at most 1m"},
		{11, "send.type", "plain FTP"},
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
		t.Fatalf("%d problems, want %d (send.dir depends on a failed medium):\n%v", len(got), len(want), err)
	}
	for i, w := range want {
		g := got[i]
		if g.File != path || g.Line != w.line || g.Field != w.field || !strings.Contains(g.Msg, w.msg) {
			t.Errorf("problem %d = %q, want line %d field %s message containing %q", i, g, w.line, w.field, w.msg)
		}
	}
}
