package e2e

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/audit/audittest"
	"github.com/ferrybridge/ferry/internal/keys"
	"github.com/ferrybridge/ferry/internal/sample"
)

// checkAudit checks both zones' audit logs after a run whose agents have
// stopped: each verifies with `ferryctl audit verify`, against the copies
// of its checkpoints the other zone countersigned and kept,
// `ferryctl audit reconcile` finds no difference between them, and
// the intranet's log holds exactly one policy decision for
// each request in ids, however often the agents were killed and the
// envelopes re-sent, and the DMZ's exactly one acceptance.
func checkAudit(t *testing.T, d *deployment, ids []string) {
	t.Helper()
	for _, zone := range []string{"dmz", "intranet"} {
		ferryctl(t, verifyArgs(d, zone)...)
	}
	// The two logs agree: every envelope and request accounted for.
	ferryctl(t, "audit", "reconcile", filepath.Join(d.dir, "dmz", "state"), filepath.Join(d.dir, "intranet", "state"),
		"--pubkey-dmz", filepath.Join(d.dir, "dmz", "keys", "audit.pub"),
		"--pubkey-intranet", filepath.Join(d.dir, "intranet", "keys", "audit.pub"))
	count := func(zone, event string) map[string]int {
		n := map[string]int{}
		for _, e := range audittest.Entries(t, filepath.Join(d.dir, zone, "state", audit.FileName)) {
			if e.Event == event {
				n[e.Request]++
			}
		}
		return n
	}
	decided, accepted := count("intranet", audit.EventPolicyDecision), count("dmz", audit.EventRequestAccepted)
	for _, id := range ids {
		if decided[id] != 1 || accepted[id] != 1 {
			t.Errorf("request %s: %d policy decisions in the intranet's audit log, %d acceptances in the DMZ's; want 1 and 1",
				id, decided[id], accepted[id])
		}
	}
}

// verifyArgs is the auditor's `ferryctl audit verify` of zone's log, with
// the other zone's kept copies of its checkpoints.
func verifyArgs(d *deployment, zone string) []string {
	other := map[string]string{"dmz": "intranet", "intranet": "dmz"}[zone]
	return []string{"audit", "verify", filepath.Join(d.dir, zone, "state"),
		"--pubkey", filepath.Join(d.dir, zone, "keys", keys.AuditPubFile),
		"--witness", filepath.Join(d.dir, other, "state"),
		"--witness-pubkey", filepath.Join(d.dir, other, "keys", keys.AuditPubFile)}
}

// TestAudit_RebuiltHistory: the DMZ's audit log is rebuilt from a forged
// history (one acceptance left out) and signed with the DMZ's own audit
// key, as someone holding the DMZ host could. The rebuilt log verifies
// alone; against the checkpoints the intranet countersigned and kept it
// fails, naming the checkpoint. Run again on the rebuilt log, the agents
// catch it themselves: the intranet records audit.inconsistent.
func TestAudit_RebuiltHistory(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	for _, zone := range []string{"dmz", "intranet"} {
		cfg := filepath.Join(d.dir, zone, zone+".yaml")
		b, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfg, append(b, "audit_checkpoint: 1s\n"...), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	c := sample.Citizens()[0]
	query := func(n int) []string {
		var ids []string
		for range n {
			st := d.submit(t, "violations.query", map[string]any{"id_number": c.IDNumber, "plate": c.Plate})
			if res := d.wait(t, st.ID, time.Minute); res.Status != "done" {
				t.Fatalf("violations.query: %+v", res)
			}
			ids = append(ids, st.ID)
			time.Sleep(400 * time.Millisecond) // a checkpoint or two between requests
		}
		return ids
	}
	in, dz := d.start(t, "intranet-agent"), d.start(t, "dmz-agent")
	d.waitReady(t, dz)
	ids := query(6)
	dz.stop(t)
	in.stop(t)
	checkAudit(t, d, ids)

	dmzDB := filepath.Join(d.dir, "dmz", "state", audit.FileName)
	r, err := audit.OpenReader(ctx, filepath.Join(d.dir, "intranet", "state", audit.FileName))
	if err != nil {
		t.Fatal(err)
	}
	kept, err := r.Witnessed(ctx, audit.Origin("dmz"))
	r.Close()
	if err != nil || len(kept) < 2 {
		t.Fatalf("the intranet kept %d countersigned DMZ checkpoints (%v), want several", len(kept), err)
	}

	// The forgery: the same entries but the first acceptance, and one
	// more at the end, so the log is as long as before.
	entries := audittest.Entries(t, dmzDB)
	var forged []audit.Entry
	dropped := false
	for _, e := range entries {
		if !dropped && e.Event == audit.EventRequestAccepted {
			dropped = true
			continue
		}
		forged = append(forged, e)
	}
	forged = append(forged, audit.Entry{Time: time.Now(), Zone: "dmz", Event: audit.EventAdmin, Actor: "agent", Detail: "filler"})
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(dmzDB + suffix); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	ak, err := keys.LoadAudit(filepath.Join(d.dir, "dmz", "keys"), "dmz")
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.OpenLog(ctx, dmzDB, "dmz", ak.Signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, forged...); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	l.Close()

	// Alone, with the DMZ's key, the rebuilt log verifies.
	args := verifyArgs(d, "dmz")
	ferryctl(t, args[:5]...)
	// Against the intranet's copies it fails, naming the checkpoint.
	out, err := exec.Command(filepath.Join(binDir, "ferryctl"), args...).CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "known checkpoint: its root does not match") ||
		!strings.Contains(string(out), "the copy the other zone countersigned and kept") {
		t.Fatalf("verify of the rebuilt log against the intranet's copies: exit %d, want 1 and FAIL naming a checkpoint\n%s", code, out)
	}

	// The agents, run on the rebuilt log, catch it: the intranet's
	// countersigned copy reaches the DMZ, whose next proof starts from
	// it and cannot hold.
	in, dz = d.start(t, "intranet-agent"), d.start(t, "dmz-agent")
	d.waitReady(t, dz)
	query(3)
	dz.stop(t)
	in.stop(t)
	var caught []audit.Entry
	for _, e := range audittest.Entries(t, filepath.Join(d.dir, "intranet", "state", audit.FileName)) {
		if e.Event == audit.EventInconsistent && e.Actor == audit.Origin("dmz") {
			caught = append(caught, e)
		}
	}
	if len(caught) == 0 {
		t.Fatal("the intranet did not record the DMZ's rebuilt log as audit.inconsistent")
	}
	t.Logf("the intranet recorded: %s", caught[0].Detail)
}

// exitCode is the exit status of a command run by exec, 0 if err is nil.
func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestDemo_NoPersonalDataInLogs runs `ferryctl demo` and then searches
// every file of the deployment it leaves, but the replica (which is the
// data), for the personal data of the citizens the demo served: their ID
// numbers, names, mobile numbers and plates. The agents' logs, both audit
// logs, the admin journals, the spool, the quarantine and the envelopes
// on the media must hold none of it in clear. Every file but the key and
// token files must hold no secret either: no private key, audit HMAC key
// or API token.
func TestDemo_NoPersonalDataInLogs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	out, err := exec.Command(filepath.Join(binDir, "ferryctl"), "demo", "--dir", dir, "--bin", binDir).CombinedOutput()
	if err != nil {
		t.Fatalf("ferryctl demo: %v\n%s", err, out)
	}
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "intranet", "replica.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var values []string
	for _, c := range sample.Citizens() {
		var name, mobile string
		if err := db.QueryRow(`SELECT name, mobile FROM drivers WHERE id_number = ?`, c.IDNumber).Scan(&name, &mobile); err != nil {
			t.Fatalf("citizen %s: %v", c.Plate, err)
		}
		values = append(values, c.IDNumber, name, mobile, c.Plate)
	}
	// No secret either: no private key, API token or audit HMAC key
	// outside the files that hold it.
	secretFile := func(name string) bool {
		return strings.HasSuffix(name, ".key") || strings.HasSuffix(name, ".token")
	}
	secrets := []string{"AGE-SECRET-KEY-", "PRIVATE+KEY+"}
	err = filepath.WalkDir(dir, func(path string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() || !secretFile(de.Name()) {
			return err
		}
		data, err := os.ReadFile(path)
		if err == nil {
			secrets = append(secrets, strings.TrimSpace(string(data)))
		}
		return err
	})
	if err != nil || len(secrets) < 8 {
		t.Fatalf("secrets to search for: %d, %v", len(secrets), err)
	}
	var files int
	err = filepath.WalkDir(dir, func(path string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		if strings.HasPrefix(de.Name(), "replica.db") {
			return nil
		}
		if !secretFile(de.Name()) {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, v := range secrets {
				if strings.Contains(string(data), v) {
					rel, _ := filepath.Rel(dir, path)
					t.Errorf("%s holds a secret (%.12s…)", rel, v)
				}
			}
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for _, v := range values {
			if strings.Contains(string(data), v) {
				rel, _ := filepath.Rel(dir, path)
				t.Errorf("%s holds %q in clear", rel, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 10 {
		t.Fatalf("searched only %d files: the demo left less than expected", files)
	}
	t.Logf("searched %d files for %d values", files, len(values))
}
