package e2e

import (
	"net/http"
	"os/exec"
	"path/filepath"
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
