package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/admin"
	"github.com/ferrybridge/ferry/internal/sample"
)

// TestPolicyReload_SIGHUP changes the intranet's policy under running
// agents: a policy two admins signed takes effect on SIGHUP and its
// catalogue reaches the DMZ, which then refuses the removed operation
// itself; an under-signed policy is refused and changes nothing.
func TestPolicyReload_SIGHUP(t *testing.T) {
	d := newDeployment(t)
	in := d.start(t, "intranet-agent")
	dz := d.start(t, "dmz-agent")
	d.waitReady(t, dz)

	slots := map[string]any{"subject": 1}
	st := d.submit(t, "exam.slots", slots)
	if st.code != 202 {
		t.Fatalf("exam.slots before the reload: HTTP %d %+v", st.code, st.Error)
	}
	if res := d.wait(t, st.ID, time.Minute); res.Status != "done" {
		t.Fatalf("exam.slots before the reload: %+v", res)
	}

	// A policy without exam.slots, signed by both admins.
	src := sample.Policy()
	start := bytes.Index(src, []byte("  - name: exam.slots\n"))
	end := bytes.Index(src, []byte("  - name: exam.book\n"))
	if start < 0 || end < start {
		t.Fatal("the sample policy's layout changed")
	}
	narrower := append(append([]byte{}, src[:start]...), src[end:]...)
	d.writeIntranetPolicy(t, narrower, "admin1", "admin2")
	if err := in.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := d.submit(t, "exam.slots", slots)
		if st.code == 400 && st.Error != nil && st.Error.Reason == "unknown_operation" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("exam.slots 30s after the reload: HTTP %d %+v, want 400 unknown_operation at the DMZ", st.code, st.Error)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ops := d.operationNames(t); strings.Contains(ops, "exam.slots") || !strings.Contains(ops, "exam.book") {
		t.Fatalf("GET /v1/operations after the reload lists %s", ops)
	}

	// Widening it again with one signature only: refused, logged, and the
	// narrower policy stays in force on both sides.
	d.writeIntranetPolicy(t, sample.Policy(), "admin1")
	if err := in.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, in, "policy reload refused")
	if st := d.submit(t, "exam.slots", slots); st.code != 400 || st.Error == nil || st.Error.Reason != "unknown_operation" {
		t.Fatalf("exam.slots after a refused reload: HTTP %d %+v", st.code, st.Error)
	}
	select {
	case <-in.done:
		t.Fatalf("the intranet agent stopped after a refused reload: %v", in.err)
	default:
	}
	dz.stop(t)
	in.stop(t)
}

// writeIntranetPolicy replaces the intranet's policy and its signature
// file, signed by the named admins of the deployment.
func (d *deployment) writeIntranetPolicy(t testing.TB, data []byte, signers ...string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(d.dir, "intranet", "policy.yaml"), data, 0o640); err != nil {
		t.Fatal(err)
	}
	d.signIntranetPolicy(t, signers...)
}

// signIntranetPolicy replaces the signature file of the intranet's policy
// with the signatures of the named admins, whose keys ferryctl init made.
func (d *deployment) signIntranetPolicy(t testing.TB, signers ...string) {
	t.Helper()
	p := filepath.Join(d.dir, "intranet", "policy.yaml")
	if err := os.Remove(p + admin.SigSuffix); err != nil {
		t.Fatal(err)
	}
	for _, name := range signers {
		s, err := admin.LoadSigner(filepath.Join(d.dir, "admins", name+admin.KeySuffix))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.SignPolicyFile(p, s); err != nil {
			t.Fatal(err)
		}
	}
}

// operationNames returns the names GET /v1/operations lists, joined.
func (d *deployment) operationNames(t *testing.T) string {
	t.Helper()
	var body struct {
		Operations []struct {
			Name string `json:"name"`
		} `json:"operations"`
	}
	st := d.doJSON(t, "/v1/operations", &body)
	if st != 200 {
		t.Fatalf("GET /v1/operations: HTTP %d", st)
	}
	var names []string
	for _, o := range body.Operations {
		names = append(names, o.Name)
	}
	return strings.Join(names, " ")
}

// waitLog waits until the agent's log contains s.
func waitLog(t *testing.T, a *agent, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(a.log)
		if err == nil && bytes.Contains(b, []byte(s)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s log has no %q after 20s", a.name, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// doJSON GETs path and decodes the JSON answer into v; it returns the HTTP
// status.
func (d *deployment) doJSON(t *testing.T, path string, v any) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+d.addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := d.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: HTTP %d: %v", path, resp.StatusCode, err)
	}
	return resp.StatusCode
}
