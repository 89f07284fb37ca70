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
	"github.com/ferrybridge/ferry/internal/envelope"
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
	// The DMZ asks again about held requests (say the envelope with their
	// final results was lost): a decided one is answered with its final
	// result, in the answer to the asking envelope; one still waiting is
	// not; an unknown one is settled as never received; nothing is applied
	// again.
	unknown := strings.Repeat("cd", 16)
	ask := e.sealWith(t, e.header(), batch.Requests{Requests: []batch.Request{},
		Query: []string{reqs[0].ID, reqs[2].ID, unknown}}, e.dmz.Signer, e.intra.Recipient)
	e.drop(t, envelope.FileName(&ask.Header), ask.Data)
	answered := e.waitAcked(t, ask.Header.ID)
	if res := answered.results[reqs[0].ID]; len(res) != 3 || res[2].Status != batch.StatusDone || res[2].RowsAffected != 1 {
		t.Fatalf("asked again about an approved request: %+v", res)
	}
	if res := answered.results[reqs[2].ID]; len(res) != 1 {
		t.Fatalf("asked again about a waiting request: %+v, want only its held result", res)
	}
	if res := answered.results[unknown]; len(res) != 1 || res[0].Status != batch.StatusExpired || res[0].Reason != batch.ReasonNotReceived {
		t.Fatalf("asked about an unknown request: %+v, want expired, not_received", res)
	}
	if n := e.replicaCount(t, countAppointments); n != before+1 {
		t.Fatalf("asking again applied something: %d appointments, want %d", n, before+1)
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

// Two admins who disagree within one poll: the denial wins, whatever the
// file names' order. Removing an admin's key and reloading revokes their
// approvals. A refused/ directory replaced by a link is not written
// through.
func TestAgent_approvalsConflictAndRevocation(t *testing.T) {
	e, carol := heldEnv(t)
	dan := testAdmins(t, e.cfg.Admins, "dan")[0]
	r := e.start(t)
	reqs := e.bookings(t, 2)
	env := e.send(t, reqs)
	e.waitAcked(t, env.Header.ID)
	r.stop(t)

	e.approve(t, carol, reqs[0].ID, admin.DecisionApprove) // sorts first by name
	e.approve(t, dan, reqs[0].ID, admin.DecisionDeny)
	r = e.start(t)
	if res := e.waitResults(t, reqs[0].ID, 2)[1]; res.Reason != policy.ReasonApprovalDenied {
		t.Fatalf("approval and denial in one poll: %+v, want approval_denied", res)
	}
	if reason := e.waitRefused(t, admin.ApprovalFileName(reqs[0].ID, "carol")); reason != ApprovalDecided {
		t.Fatalf("the approval beside a denial: refused %s", reason)
	}

	if err := os.Remove(filepath.Join(e.cfg.Admins, "dan"+admin.PubSuffix)); err != nil {
		t.Fatal(err)
	}
	if err := r.agent.Reload(); err != nil {
		t.Fatal(err)
	}
	if reason := e.waitRefused(t, e.approve(t, dan, reqs[1].ID, admin.DecisionApprove)); reason != ApprovalUnknownSigner {
		t.Fatalf("approval by a revoked admin: refused %s, want %s", reason, ApprovalUnknownSigner)
	}

	refused := filepath.Join(e.cfg.Approvals, RefusedDir)
	elsewhere := t.TempDir()
	if err := os.Rename(refused, refused+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, refused); err != nil {
		t.Fatal(err)
	}
	junk := "x" + admin.ApprovalSuffix
	if err := os.WriteFile(filepath.Join(e.cfg.Approvals, junk), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // several polls
	if n := countFiles(t, elsewhere); n != 0 {
		t.Fatalf("%d files written through a linked refused/ directory", n)
	}
	if _, err := os.Stat(filepath.Join(e.cfg.Approvals, junk)); err != nil {
		t.Fatalf("the refused file should stay in place: %v", err)
	}
	if res := e.collect(t).results[reqs[1].ID]; len(res) != 1 {
		t.Fatalf("request decided after refused approvals: %+v", res)
	}
}
