package intranet

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/admin"
	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/policy"
	"github.com/ferrybridge/ferry/internal/sample"
)

func TestNew_policySignatures(t *testing.T) {
	tests := []struct {
		name    string
		signers func(e *testEnv) []int // indexes into e.admins, -1 = an admin the agent does not know
		want    string
	}{
		{"unsigned", func(*testEnv) []int { return nil }, "no signature file"},
		{"one admin", func(*testEnv) []int { return []int{0} }, "1 of 2"},
		{"one admin and a stranger", func(*testEnv) []int { return []int{0, -1} }, "1 of 2"},
		{"two admins", func(*testEnv) []int { return []int{0, 1} }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			stranger := testAdmins(t, filepath.Join(e.root, "elsewhere"), "mallory")[0]
			var signers = e.admins[:0:0]
			for _, i := range tt.signers(e) {
				if i < 0 {
					signers = append(signers, stranger)
				} else {
					signers = append(signers, e.admins[i])
				}
			}
			e.writePolicy(t, e.cfg.Policy, sample.Policy(), signers...)
			a, err := New(e.cfg, testLogger(t))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				a.Close()
				return
			}
			if err == nil {
				a.Close()
				t.Fatal("New accepted the policy")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "policy.yaml") {
				t.Fatalf("New: %v, want it to name the policy and say %q", err, tt.want)
			}
		})
	}
}

// withoutOperation returns the sample policy with one operation removed.
func withoutOperation(t *testing.T, name string) []byte {
	t.Helper()
	src := sample.Policy()
	start := bytes.Index(src, []byte("  - name: "+name+"\n"))
	if start < 0 {
		t.Fatalf("sample policy has no operation %s", name)
	}
	end := bytes.Index(src[start+1:], []byte("\n  - name: "))
	out := append([]byte{}, src[:start]...)
	if end >= 0 {
		out = append(out, src[start+1+end+1:]...)
	}
	return out
}

func TestAgent_Reload(t *testing.T) {
	e := newTestEnv(t)
	r := e.start(t)

	ask := func(want string) {
		t.Helper()
		req := readRequest()
		env := e.send(t, []batch.Request{req})
		res := e.waitAcked(t, env.Header.ID).results[req.ID]
		if len(res) != 1 {
			t.Fatalf("%d results", len(res))
		}
		got := res[0].Status
		if res[0].Reason != "" {
			got += " " + res[0].Reason
		}
		if got != want {
			t.Fatalf("violations.query: %s, want %s", got, want)
		}
	}
	ask(batch.StatusDone)
	// The DMZ got the catalogue at start, before any results.
	cats := e.waitCatalogues(t, 1)
	if len(cats) != 1 {
		t.Fatalf("%d catalogues sent at start, want 1", len(cats))
	}
	if _, ok := cats[0].Operation("violations.query"); !ok {
		t.Fatal("the catalogue sent at start lacks violations.query")
	}

	// A policy that both admins signed takes effect at once.
	e.writePolicy(t, e.cfg.Policy, withoutOperation(t, "violations.query"), e.admins...)
	if err := r.agent.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	ask(batch.StatusRejected + " " + policy.ReasonUnknownOperation)
	cats = e.waitCatalogues(t, 2)
	if len(cats) != 2 {
		t.Fatalf("%d catalogues sent, want 2: one at start, one after the reload", len(cats))
	}
	if _, ok := cats[1].Operation("violations.query"); ok || len(cats[1].Operations) != len(cats[0].Operations)-1 {
		t.Fatal("the catalogue sent after the reload still lists violations.query")
	}

	// Refused reloads leave that policy in force: one signature only, a
	// file changed after signing, and a well-signed but invalid policy.
	e.writePolicy(t, e.cfg.Policy, sample.Policy(), e.admins[0])
	if err := r.agent.Reload(); err == nil || !strings.Contains(err.Error(), "1 of 2") {
		t.Fatalf("Reload of an under-signed policy: %v", err)
	}
	ask(batch.StatusRejected + " " + policy.ReasonUnknownOperation)

	e.writePolicy(t, e.cfg.Policy, sample.Policy(), e.admins...)
	e.writeFile(t, e.cfg.Policy, append(sample.Policy(), "# widened\n"...))
	if err := r.agent.Reload(); err == nil || !strings.Contains(err.Error(), admin.ErrMismatch.Error()) {
		t.Fatalf("Reload of a policy changed after signing: %v", err)
	}
	ask(batch.StatusRejected + " " + policy.ReasonUnknownOperation)

	e.writePolicy(t, e.cfg.Policy, []byte("version: 1\noperations:\n  - name: x\n    mode: sideways\n"), e.admins...)
	if err := r.agent.Reload(); err == nil || !strings.Contains(err.Error(), "policy.yaml:4") {
		t.Fatalf("Reload of an invalid policy: %v", err)
	}
	ask(batch.StatusRejected + " " + policy.ReasonUnknownOperation)
	if n := len(e.collect(t).catalogues); n != 2 {
		t.Fatalf("%d catalogues sent, want 2: refused reloads send none", n)
	}
	r.stop(t)
}

// waitCatalogues waits until n catalogues have been sent and returns them.
func (e *testEnv) waitCatalogues(t *testing.T, n int) []*policy.Policy {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cats := e.collect(t).catalogues
		if len(cats) >= n || time.Now().After(deadline) {
			return cats
		}
		time.Sleep(10 * time.Millisecond)
	}
}
