package intranet

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/ferrybridge/ferry/internal/admin"
	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/config"
	"github.com/ferrybridge/ferry/internal/policy"
	"github.com/ferrybridge/ferry/internal/replica"
	"github.com/ferrybridge/ferry/internal/sample"
)

// heldEnv is a test environment whose policy holds exam.book for
// approval, signed by alice and bob, with carol a third admin who may
// approve.
func heldEnv(t *testing.T) (*testEnv, note.Signer) {
	t.Helper()
	e := newTestEnv(t)
	text := bytes.Replace(sample.LoadPolicy(), []byte("    inserts: [appointments]\n"),
		[]byte("    inserts: [appointments]\n    approval: {within: 1h}\n"), 1)
	e.writePolicy(t, e.cfg.Policy, text, e.admins...)
	e.cfg.Approvals = filepath.Join(filepath.Dir(e.cfg.Policy), "approvals")
	e.cfg.ApprovalPoll = config.Duration(100 * time.Millisecond)
	carol := testAdmins(t, e.cfg.Admins, "carol")[0]
	return e, carol
}

// approve writes s's signed decision on request id into the approvals
// directory, as `ferryctl approve` does, and returns the file's name.
func (e *testEnv) approve(t *testing.T, s note.Signer, id, decision string) string {
	t.Helper()
	data, err := admin.SignApproval(admin.Approval{RequestID: id, Decision: decision, Time: time.Now()}, s)
	if err != nil {
		t.Fatal(err)
	}
	name := admin.ApprovalFileName(id, s.Name())
	if err := admin.WriteFile(filepath.Join(e.cfg.Approvals, name), data, 0o644, true); err != nil {
		t.Fatal(err)
	}
	return name
}

// waitResults waits until request id has n results and returns them.
func (e *testEnv) waitResults(t *testing.T, id string, n int) []batch.Result {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		res := e.collect(t).results[id]
		if len(res) >= n {
			return res
		}
		if time.Now().After(deadline) {
			t.Fatalf("request %s: %d results after 20s, want %d: %+v", id, len(res), n, res)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitRefused waits until the approval file name is refused and returns
// its reason.
func (e *testEnv) waitRefused(t *testing.T, name string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		data, err := os.ReadFile(filepath.Join(e.cfg.Approvals, RefusedDir, name+".reason"))
		if err == nil {
			if _, err := os.Stat(filepath.Join(e.cfg.Approvals, name)); !os.IsNotExist(err) {
				t.Fatalf("refused approval %s is still in the approvals directory", name)
			}
			reason, _, _ := strings.Cut(string(data), "\n")
			return reason
		}
		if time.Now().After(deadline) {
			t.Fatalf("approval %s not refused within 20s", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAgent_approvals(t *testing.T) {
	e, carol := heldEnv(t)
	r := e.start(t)
	before := e.replicaCount(t, countAppointments)
	reqs := e.bookings(t, 3)
	env := e.send(t, reqs)
	got := e.waitAcked(t, env.Header.ID)
	for _, q := range reqs {
		res := got.results[q.ID]
		if len(res) != 1 || res[0].Status != batch.StatusHeld || res[0].Reason != policy.ReasonApprovalRequired {
			t.Fatalf("exam.book under approval: %+v, want held", res)
		}
	}
	if n := e.replicaCount(t, countAppointments); n != before {
		t.Fatalf("held bookings took effect: %d appointments, want %d", n, before)
	}

	// Refused, and nothing changes: an approval by an admin who signed
	// the policy in force, by an unknown key, a malformed file, and an
	// approval of a request that is not held.
	alice := e.admins[0]
	if reason := e.waitRefused(t, e.approve(t, alice, reqs[0].ID, admin.DecisionApprove)); reason != ApprovalSameAdmin {
		t.Fatalf("approval by a policy signer: refused %s, want %s", reason, ApprovalSameAdmin)
	}
	dave := testAdmins(t, t.TempDir(), "dave")[0]
	if reason := e.waitRefused(t, e.approve(t, dave, reqs[0].ID, admin.DecisionApprove)); reason != ApprovalUnknownSigner {
		t.Fatalf("approval by an unknown key: refused %s", reason)
	}
	junk := reqs[0].ID + ".junk" + admin.ApprovalSuffix
	if err := os.WriteFile(filepath.Join(e.cfg.Approvals, junk), []byte("approve it\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if reason := e.waitRefused(t, junk); reason != ApprovalMalformed {
		t.Fatalf("malformed approval: refused %s", reason)
	}
	if reason := e.waitRefused(t, e.approve(t, carol, strings.Repeat("ab", 16), admin.DecisionApprove)); reason != ApprovalNotHeld {
		t.Fatalf("approval of a request not held: refused %s", reason)
	}
	if n := e.replicaCount(t, countAppointments); n != before {
		t.Fatalf("a refused approval took effect")
	}

	// carol approves the first booking and denies the second.
	e.approve(t, carol, reqs[0].ID, admin.DecisionApprove)
	e.approve(t, carol, reqs[1].ID, admin.DecisionDeny)
	if res := e.waitResults(t, reqs[0].ID, 2)[1]; res.Status != batch.StatusDone || res.RowsAffected != 1 {
		t.Fatalf("approved booking: %+v, want done", res)
	}
	if res := e.waitResults(t, reqs[1].ID, 2)[1]; res.Status != batch.StatusRejected || res.Reason != policy.ReasonApprovalDenied {
		t.Fatalf("denied booking: %+v", res)
	}
	if n := e.replicaCount(t, countAppointments); n != before+1 {
		t.Fatalf("%d appointments, want %d", n, before+1)
	}
	final := e.collect(t)
	if final.acks[env.Header.ID] != 1 {
		t.Fatalf("request envelope acknowledged %d times, want once: final results acknowledge nothing", final.acks[env.Header.ID])
	}
	// A second approval of a decided request is refused.
	if reason := e.waitRefused(t, e.approve(t, carol, reqs[1].ID, admin.DecisionApprove)); reason != ApprovalDecided {
		t.Fatalf("second decision: refused %s", reason)
	}
	r.stop(t)

	// Decisions survive a restart: one decided while the agent was down
	// (its result not yet sealed) goes out when it starts, and a held
	// request whose time passed meanwhile expires.
	db, err := replica.Open(context.Background(), e.cfg.Replica)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse("policy.yaml", mustRead(t, e.cfg.Policy))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Decide(context.Background(), replica.Decision{RequestID: reqs[2].ID, Approve: false, By: "carol", Time: time.Now()}, pol); err != nil {
		t.Fatal(err)
	}
	db.Close()
	more := e.bookings(t, 1)
	r = e.start(t)
	if res := e.waitResults(t, reqs[2].ID, 2)[1]; res.Reason != policy.ReasonApprovalDenied {
		t.Fatalf("decision made while the agent was down: %+v", res)
	}
	env2 := e.send(t, more)
	e.waitAcked(t, env2.Header.ID)
	r.stop(t)
	expireAll(t, e.cfg.Replica)
	e.start(t)
	if res := e.waitResults(t, more[0].ID, 2)[1]; res.Status != batch.StatusRejected || res.Reason != policy.ReasonApprovalExpired {
		t.Fatalf("held past its time: %+v, want approval_expired", res)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// expireAll moves the approval deadline of every held request into the
// past, as if the agent had been down for longer than approval.within.
func expireAll(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE ferry_held SET expires = 1 WHERE state = 'held'`); err != nil {
		t.Fatal(err)
	}
}
