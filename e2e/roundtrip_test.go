package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/sample"
)

// TestRoundTrip runs both agents as processes on a deployment made by
// ferryctl init and checks allowed, refused and booking requests.
func TestRoundTrip(t *testing.T) {
	d := newDeployment(t)
	in := d.start(t, "intranet-agent")
	dz := d.start(t, "dmz-agent")
	d.waitReady(t, dz)
	c := sample.Citizens()[0]

	// An allowed read: the citizen's own violations.
	st := d.submit(t, "violations.query", map[string]any{"id_number": c.IDNumber, "plate": c.Plate})
	if st.code != http.StatusAccepted || st.Status != "queued" || st.ID == "" {
		t.Fatalf("submit: HTTP %d %+v", st.code, st)
	}
	res := d.wait(t, st.ID, time.Minute)
	if res.Status != "done" || len(res.Result) == 0 {
		t.Fatalf("violations.query: %+v, want done with rows", res)
	}
	unpaid := false
	for _, row := range res.Result {
		if row["payment"] == "unpaid" {
			unpaid = true
		}
	}
	if !unpaid {
		t.Errorf("citizen 0 should have an unpaid violation: %v", res.Result)
	}

	// Someone else's plate with this ID number: the binding returns nothing.
	other := sample.Citizens()[1]
	st = d.submit(t, "violations.query", map[string]any{"id_number": c.IDNumber, "plate": other.Plate})
	if res := d.wait(t, st.ID, time.Minute); res.Status != "done" || len(res.Result) != 0 {
		t.Fatalf("query of another's plate: %+v, want done with no rows", res)
	}

	// Another citizen's records under this citizen's subject: refused by
	// the subject binding.
	theirs := submitBody("violations.query", map[string]any{"id_number": other.IDNumber, "plate": other.Plate})
	theirs["subject"] = c.IDNumber
	if st = d.do(t, http.MethodPost, "/v1/requests", theirs); st.code != http.StatusBadRequest || st.Error == nil || st.Error.Reason != "forbidden_subject" {
		t.Fatalf("another citizen's records: HTTP %d %+v, want 400 forbidden_subject", st.code, st.Error)
	}

	// Refused at the DMZ by the policy, with a reason code and the param.
	bad := submitBody("violations.query", map[string]any{"id_number": "12345", "plate": c.Plate})
	bad["subject"] = c.IDNumber
	st = d.do(t, http.MethodPost, "/v1/requests", bad)
	if st.code != http.StatusBadRequest || st.Error == nil || st.Error.Reason == "" || st.Error.Param != "id_number" {
		t.Fatalf("bad ID number: HTTP %d %+v, want 400 naming id_number", st.code, st.Error)
	}
	st = d.submit(t, "drivers.export", map[string]any{})
	if st.code != http.StatusBadRequest || st.Error == nil || st.Error.Reason != "unknown_operation" {
		t.Fatalf("unknown operation: HTTP %d %+v", st.code, st.Error)
	}

	// The one write: list slots, book one, and see it on the replica.
	st = d.submit(t, "exam.slots", map[string]any{"subject": 1})
	slots := d.wait(t, st.ID, time.Minute)
	if slots.Status != "done" || len(slots.Result) == 0 {
		t.Fatalf("exam.slots: %+v", slots)
	}
	slot := slots.Result[0]["slot_id"]
	st = d.submit(t, "exam.book", map[string]any{"id_number": c.IDNumber, "slot_id": slot})
	book := d.wait(t, st.ID, time.Minute)
	if book.Status != "done" || book.RowsAffected == nil || *book.RowsAffected != 1 {
		t.Fatalf("exam.book: %+v, want done with 1 row written", book)
	}
	// Booking the same slot again is a new request that writes nothing:
	// the answer says so with rows_affected 0, not by leaving it out.
	st = d.submit(t, "exam.book", map[string]any{"id_number": c.IDNumber, "slot_id": slot})
	again := d.wait(t, st.ID, time.Minute)
	if again.Status != "done" || again.RowsAffected == nil || *again.RowsAffected != 0 {
		t.Fatalf("exam.book again: %+v, want done with rows_affected 0", again)
	}
	db := d.replica(t)
	if n := count(t, db, "SELECT count(*) FROM appointments WHERE id_number = ? AND slot_id = ?", c.IDNumber, slot); n != 1 {
		t.Fatalf("%d appointments on the replica, want 1", n)
	}

	// A clean stop of both.
	dz.stop(t)
	in.stop(t)
}

// effectsPolicy adds a non-idempotent write to the sample policy, so a
// request applied twice would leave two rows.
const effectsOp = `
  - name: e2e.effect
    description: test-only write whose every application leaves a row
    mode: write
    params:
      tag:
        type: string
        max_len: 40
        pattern: '[a-z0-9-]+'
    statement: INSERT INTO e2e_effects (tag) VALUES (:tag)
    inserts: [e2e_effects]
`

// effectsDeployment is a deployment whose policies also allow e2e.effect,
// with its table on the replica.
func effectsDeployment(t *testing.T) *deployment {
	t.Helper()
	d := newDeployment(t)
	for _, zone := range []string{"dmz", "intranet"} {
		p := filepath.Join(d.dir, zone, "policy.yaml")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, append(b, effectsOp...), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	d.signIntranetPolicy(t, "admin1", "admin2")
	w := d.writableReplica(t)
	if _, err := w.Exec(`CREATE TABLE e2e_effects (id INTEGER PRIMARY KEY AUTOINCREMENT, tag TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return d
}

// TestCrashRecovery_ExactlyOnce SIGKILLs the intranet agent while requests
// are flowing, restarts it, and checks that every accepted request reaches
// a final state and that each took effect on the replica exactly once.
func TestCrashRecovery_ExactlyOnce(t *testing.T) {
	d := effectsDeployment(t)
	in := d.start(t, "intranet-agent")
	dz := d.start(t, "dmz-agent")
	d.waitReady(t, dz)

	// Kill the intranet agent once some envelopes have been applied; the
	// DMZ keeps accepting, and the intranet is restarted afterwards.
	ids := submitEffects(t, d, effectsTotal, 0, map[int]func(){effectsTotal / 3: func() { in.kill(t) }})
	in = d.start(t, "intranet-agent")
	checkEffects(t, d, ids)
	dz.stop(t)
	in.stop(t)
	checkAudit(t, d, ids)
}

// effectsTotal is the number of e2e.effect requests a crash test sends.
const effectsTotal = 600

// submitEffects submits n e2e.effect requests, tagged req-N, from 16
// clients, each with its tag as Idempotency-Key. Before it hands out
// request i it calls crash[i], if there is one, once some effect is on the
// replica. A request that is not accepted is retried for up to retry (a
// client riding out a restart), then fails the test. It returns the
// accepted ids, in order.
func submitEffects(t *testing.T, d *deployment, n int, retry time.Duration, crash map[int]func()) []string {
	t.Helper()
	ids := make([]string, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	work := make(chan int)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				tag := fmt.Sprintf("req-%d", i)
				body, _ := json.Marshal(map[string]any{"operation": "e2e.effect", "params": map[string]any{"tag": tag}})
				deadline := time.Now().Add(retry)
				for {
					st := d.doNoFatal(http.MethodPost, "/v1/requests", body, "Idempotency-Key", tag)
					if st.err == nil && st.code == http.StatusAccepted {
						ids[i] = st.ID
						break
					}
					if !time.Now().Before(deadline) {
						mu.Lock()
						errs = append(errs, fmt.Sprintf("request %d: %v HTTP %d", i, st.err, st.code))
						mu.Unlock()
						break
					}
					time.Sleep(20 * time.Millisecond) // the agent is restarting
				}
			}
		}()
	}
	db := d.replica(t)
	for i := 0; i < n; i++ {
		if f := crash[i]; f != nil {
			waitFor(t, 30*time.Second, func() bool {
				return count(t, db, "SELECT count(*) FROM e2e_effects") > 0
			})
			f()
		}
		work <- i
	}
	close(work)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d submissions not accepted: %s", len(errs), strings.Join(errs[:min(5, len(errs))], "; "))
	}
	return ids
}

// checkEffects waits for every request to end and checks that each is
// done with one row written, and that each took effect exactly once.
func checkEffects(t *testing.T, d *deployment, ids []string) {
	t.Helper()
	for i, id := range ids {
		st := d.wait(t, id, 2*time.Minute)
		if st.Status != "done" || st.RowsAffected == nil || *st.RowsAffected != 1 {
			t.Fatalf("request %d (%s): %s %s, rows_affected %v; want done, 1", i, id, st.Status, st.Reason, st.RowsAffected)
		}
	}
	db := d.replica(t)
	if n := count(t, db, "SELECT count(*) FROM e2e_effects"); n != len(ids) {
		t.Errorf("%d effects on the replica, want exactly %d", n, len(ids))
	}
	if n := count(t, db, "SELECT count(DISTINCT tag) FROM e2e_effects"); n != len(ids) {
		t.Errorf("%d requests took effect, want all %d", n, len(ids))
	}
	if n := count(t, db, "SELECT count(*) FROM (SELECT tag FROM e2e_effects GROUP BY tag HAVING count(*) > 1)"); n != 0 {
		t.Errorf("%d requests took effect more than once", n)
	}
}

func waitFor(t testing.TB, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCrashRecovery_DMZKilled SIGKILLs the DMZ agent while clients are
// submitting, as a power cut would. Clients do what docs/api.md tells
// them: each request carries an Idempotency-Key and is retried until it
// gets its 202. Every request must end done, and take effect exactly once,
// whether its 202 was lost in the crash or not.
func TestCrashRecovery_DMZKilled(t *testing.T) {
	d := effectsDeployment(t)
	in := d.start(t, "intranet-agent")
	dz := d.start(t, "dmz-agent")
	d.waitReady(t, dz)

	ids := submitEffects(t, d, effectsTotal, time.Minute, map[int]func(){effectsTotal / 3: func() {
		dz.kill(t)
		dz = d.start(t, "dmz-agent")
	}})
	checkEffects(t, d, ids)
	dz.stop(t)
	in.stop(t)
	checkAudit(t, d, ids)
}
