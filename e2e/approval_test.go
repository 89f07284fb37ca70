package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/sample"
)

// TestHeldWrite_approval runs the sample's licence.renew, which an admin
// must approve, through both agent processes: the client sees "held", a
// policy signer may not approve, the reviewer approves with ferryctl and
// the renewal takes effect; a denial answers approval_denied; and a
// decision made while the intranet agent is down (killed) takes effect
// when it starts again.
func TestHeldWrite_approval(t *testing.T) {
	d := newDeployment(t)
	in := d.start(t, "intranet-agent")
	dz := d.start(t, "dmz-agent")
	d.waitReady(t, dz)
	cfg := filepath.Join(d.dir, "intranet", "intranet.yaml")
	key := func(name string) string { return filepath.Join(d.dir, "admins", name+".key") }
	cs := sample.Citizens()
	validUntil := func(id string) string {
		db := d.replica(t)
		defer db.Close()
		var v string
		if err := db.QueryRow(`SELECT valid_until FROM licences WHERE id_number = ?`, id).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := validUntil(cs[0].IDNumber)

	renew := func(c sample.Citizen) string {
		t.Helper()
		st := d.submit(t, "licence.renew", map[string]any{"id_number": c.IDNumber})
		if st.code != http.StatusAccepted {
			t.Fatalf("licence.renew: HTTP %d %+v", st.code, st.Error)
		}
		if held := d.waitHeld(t, st.ID); held.Reason != "approval_required" || !strings.Contains(held.Message, "approval") {
			t.Fatalf("held request: %+v", held)
		}
		return st.ID
	}
	id := renew(cs[0])
	if got := validUntil(cs[0].IDNumber); got != before {
		t.Fatalf("a held renewal took effect: valid_until %s, was %s", got, before)
	}
	if out := ferryctl(t, "approve", "list", "--config", cfg); !strings.Contains(out, id) || !strings.Contains(out, "licence.renew") {
		t.Fatalf("approve list:\n%s", out)
	}
	out, err := exec.Command(filepath.Join(binDir, "ferryctl"), "approve", "--config", cfg, "--key", key("admin1"), id).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "signed the policy in force") {
		t.Fatalf("approval by a policy signer: %v\n%s", err, out)
	}
	ferryctl(t, "approve", "--config", cfg, "--key", key("admin3"), id)
	res := d.wait(t, id, time.Minute)
	if res.Status != "done" || res.RowsAffected == nil || *res.RowsAffected != 1 {
		t.Fatalf("approved renewal: %+v", res)
	}
	if got := validUntil(cs[0].IDNumber); got == before {
		t.Fatalf("the approved renewal did not change valid_until (%s)", got)
	}
	waitLog(t, in, `"msg":"held request decided"`)

	id = renew(cs[1])
	ferryctl(t, "approve", "--config", cfg, "--key", key("admin3"), "--deny", id)
	if res := d.wait(t, id, time.Minute); res.Status != "rejected" || res.Reason != "approval_denied" {
		t.Fatalf("denied renewal: %+v", res)
	}

	// Approved while the intranet agent is down.
	id = renew(cs[2])
	in.kill(t)
	ferryctl(t, "approve", "--config", cfg, "--key", key("admin3"), id)
	in = d.start(t, "intranet-agent")
	if res := d.wait(t, id, time.Minute); res.Status != "done" || res.RowsAffected == nil || *res.RowsAffected != 1 {
		t.Fatalf("renewal approved while the intranet agent was down: %+v", res)
	}
	dz.stop(t)
	in.stop(t)
}

// waitHeld long-polls until the request is held for approval (or fails
// the test if it reaches a final status first).
func (d *deployment) waitHeld(t testing.TB, id string) *status {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st := d.do(t, http.MethodGet, "/v1/requests/"+id, nil)
		if st.code != http.StatusOK {
			t.Fatalf("GET %s: HTTP %d", id, st.code)
		}
		switch {
		case st.Status == "held":
			return st
		case final(st.Status):
			t.Fatalf("request %s is %s (%s), want held", id, st.Status, st.Reason)
		case time.Now().After(deadline):
			t.Fatalf("request %s still %s after a minute", id, st.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHeldWrite_lostFinalResult loses the result envelope that carries a
// held request's final result (deleted from the medium before the DMZ
// reads it): the DMZ asks the intranet again about the request and gets
// the final result, and the write took effect once.
func TestHeldWrite_lostFinalResult(t *testing.T) {
	d := newDeployment(t)
	cfgPath := filepath.Join(d.dir, "dmz", "dmz.yaml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, append(cfg, "resend_after: 1s\n"...), 0o640); err != nil {
		t.Fatal(err)
	}
	in := d.start(t, "intranet-agent")
	dz := d.start(t, "dmz-agent")
	d.waitReady(t, dz)
	c := sample.Citizens()[0]
	st := d.submit(t, "licence.renew", map[string]any{"id_number": c.IDNumber})
	if st.code != http.StatusAccepted {
		t.Fatalf("licence.renew: HTTP %d %+v", st.code, st.Error)
	}
	d.waitHeld(t, st.ID)

	// With the DMZ agent stopped, approve, and delete the result envelope
	// the intranet publishes with the final result.
	dz.stop(t)
	results := filepath.Join(d.dir, "exchange", "results")
	before := envelopeFiles(t, results)
	ferryctl(t, "approve", "--config", filepath.Join(d.dir, "intranet", "intranet.yaml"), "--key", filepath.Join(d.dir, "admins", "admin3.key"), st.ID)
	waitLog(t, in, `"msg":"held request decided"`)
	var lost []string
	waitFor(t, 30*time.Second, func() bool {
		lost = lost[:0]
		for _, f := range envelopeFiles(t, results) {
			if !slices.Contains(before, f) {
				lost = append(lost, f)
			}
		}
		return len(lost) > 0
	})
	for _, f := range lost {
		if err := os.Remove(filepath.Join(results, f)); err != nil {
			t.Fatal(err)
		}
	}

	dz = d.start(t, "dmz-agent")
	d.waitReady(t, dz)
	res := d.wait(t, st.ID, time.Minute)
	if res.Status != "done" || res.RowsAffected == nil || *res.RowsAffected != 1 {
		t.Fatalf("held request whose final result was lost: %+v", res)
	}
	waitLog(t, dz, "asking the intranet about requests")
	db := d.replica(t)
	defer db.Close()
	if n := count(t, db, `SELECT count(*) FROM ferry_held WHERE state = 'approved'`); n != 1 {
		t.Fatalf("%d approved held requests, want 1", n)
	}
	dz.stop(t)
	in.stop(t)
}

// envelopeFiles lists the envelope files in a medium directory.
func envelopeFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".fxe") && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}
