package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/sample"
)

// TestSecondSIGTERM: a first SIGTERM stops intake at once (readyz no
// longer answers 200) and drains; while the drain waits on a medium that
// fails, a second SIGTERM ends the agent at once, with exit status 1.
// The request it could not publish is in the spool: once the medium is
// back, a restarted agent publishes it and it gets its one final result.
func TestSecondSIGTERM(t *testing.T) {
	d := newDeployment(t)
	cfg := filepath.Join(d.dir, "dmz", "dmz.yaml")
	rewire(t, cfg, "envelope_ttl: 24h\n", "envelope_ttl: 24h\ndrain_timeout: 60s\n")
	in := d.start(t, "intranet-agent")
	dz := d.start(t, "dmz-agent")
	d.waitReady(t, dz)
	c := sample.Citizens()[0]
	params := map[string]any{"id_number": c.IDNumber, "plate": c.Plate}
	if st := d.wait(t, d.submit(t, "violations.query", params).ID, 30*time.Second); st.Status != "done" {
		t.Fatalf("first request: %s %s", st.Status, st.Reason)
	}

	// The request medium fails: a file stands where its directory was.
	drop := filepath.Join(d.dir, "exchange", "requests")
	if err := os.Rename(drop, drop+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(drop, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	st := d.submit(t, "violations.query", params)
	if st.code != http.StatusAccepted {
		t.Fatalf("submit: HTTP %d", st.code)
	}
	time.Sleep(300 * time.Millisecond) // sealed; publishing fails and retries

	if err := dz.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Intake stops first.
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := d.client.Get("http://" + d.addr + "/readyz")
		if err != nil || resp.StatusCode != http.StatusOK {
			if err == nil {
				resp.Body.Close()
			}
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("readyz still 200 five seconds after SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The drain waits on the medium, for up to drain_timeout.
	select {
	case <-dz.done:
		t.Fatalf("the agent stopped before its drain was over: %v", dz.err)
	case <-time.After(time.Second):
	}
	sent := time.Now()
	if err := dz.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-dz.done:
	case <-time.After(5 * time.Second):
		t.Fatal("a second SIGTERM did not end the agent within 5s")
	}
	if code := exitCode(dz.err); code != 1 {
		t.Fatalf("exit status %d after a second SIGTERM, want 1", code)
	}
	t.Logf("second SIGTERM ended the agent in %v", time.Since(sent).Round(time.Millisecond))

	// The medium is back; the request is not lost.
	if err := os.Remove(drop); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(drop+".away", drop); err != nil {
		t.Fatal(err)
	}
	dz = d.start(t, "dmz-agent")
	d.waitReady(t, dz)
	if got := d.wait(t, st.ID, 60*time.Second); got.Status != "done" {
		t.Fatalf("request after the restart: %s %s", got.Status, got.Reason)
	}
	dz.stop(t)
	in.stop(t)
}
