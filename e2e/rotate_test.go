package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/audit/audittest"
	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/envelope"
	"github.com/ferrybridge/ferry/internal/keys"
)

// TestKeyRotation_midStream rotates both zones' keys while requests flow:
// the DMZ's keys (accepted at the intranet, both agents reloaded by
// SIGHUP), then the intranet's. Every accepted request must reach done
// and take effect exactly once. After the overlap the DMZ's old key is
// revoked at the intranet, and an envelope sealed with it is quarantined
// revoked_key and changes nothing.
func TestKeyRotation_midStream(t *testing.T) {
	const overlap = 3 * time.Second
	d := effectsDeployment(t)
	in := d.start(t, "intranet-agent")
	dz := d.start(t, "dmz-agent")
	d.waitReady(t, dz)
	dmzKeys, inKeys := filepath.Join(d.dir, "dmz", "keys"), filepath.Join(d.dir, "intranet", "keys")
	oldDMZ, err := keys.LoadZone(dmzKeys)
	if err != nil {
		t.Fatal(err)
	}

	// rotate rotates the keys in dir (switching in a second, so that the
	// peer accepts the new key first), has the peer accept the statement
	// and reloads both agents, the peer first.
	rotate := func(dir, peerDir string, self, peer *agent) {
		out := ferryctl(t, "keys", "rotate", dir, "--in", "1s", "--overlap", overlap.String(), "--json")
		var st struct {
			Statement string
			From      time.Time
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil || st.Statement == "" {
			t.Fatalf("keys rotate --json: %v\n%s", err, out)
		}
		ferryctl(t, "keys", "accept", st.Statement, "--keys", peerDir)
		for _, a := range []*agent{peer, self} {
			n := logCount(t, a, "keys in force")
			if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			waitLogCount(t, a, "keys in force", n+1)
		}
		// Let the new key come into force before more requests are
		// handed out, so that they travel under it.
		time.Sleep(time.Until(st.From))
	}
	const n = 300
	ids := submitEffects(t, d, n, 0, map[int]func(){
		n / 3:     func() { rotate(dmzKeys, inKeys, dz, in) },
		2 * n / 3: func() { rotate(inKeys, dmzKeys, in, dz) },
	})
	checkEffects(t, d, ids)
	// Both zones now sign with their new keys.
	for _, dir := range []string{dmzKeys, inKeys} {
		own, err := keys.LoadOwnKeys(dir)
		if err != nil || len(own) != 2 || !own[1].SignsAt(time.Now()) {
			t.Fatalf("%s after rotation: %d keys, %v", dir, len(own), err)
		}
	}
	if logCount(t, in, `"reason":"unknown_sender"`)+logCount(t, dz, `"reason":"unknown_sender"`) != 0 {
		t.Error("an envelope was refused as unknown_sender during the rotation")
	}

	// After the overlap: revoke the DMZ's old key at the intranet.
	time.Sleep(time.Until(oldDMZUntil(t, dmzKeys)))
	ferryctl(t, "keys", "revoke", keys.KeyID(oldDMZ.Verifier.KeyHash()), "--keys", inKeys)
	nr := logCount(t, in, "keys in force")
	if err := in.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLogCount(t, in, "keys in force", nr+1)

	// Requests still flow, under the new keys only.
	st := d.submit(t, "e2e.effect", map[string]any{"tag": "after-revoke"})
	if res := d.wait(t, st.ID, 30*time.Second); res.Status != "done" {
		t.Fatalf("a request after the revocation: %s %s, want done", res.Status, res.Reason)
	}
	for _, zone := range []string{"dmz", "intranet"} {
		if q, _ := os.ReadDir(filepath.Join(d.dir, zone, "state", "quarantine")); len(q) != 0 {
			t.Fatalf("%s quarantined %d files during the rotation", zone, len(q))
		}
	}

	// A thief's envelope, sealed with the old key to the intranet's
	// current age key.
	inRing, err := keys.LoadRing(inKeys)
	if err != nil {
		t.Fatal(err)
	}
	body, err := batch.Encode(batch.Requests{Requests: []batch.Request{{
		ID: envelope.NewID(), Client: "portal", Operation: "e2e.effect",
		Params: json.RawMessage(`{"tag":"forged"}`), Received: time.Now().UTC(),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s, err := envelope.Seal(envelope.Header{
		ID: envelope.NewID(), Kind: envelope.KindRequests, From: "dmz", To: "intranet", Channel: "requests",
		Seq: uint64(n + 1000), Created: now, Expires: now.Add(time.Hour),
	}, body, oldDMZ.Signer, inRing.SignerAt(now).Recipient)
	if err != nil {
		t.Fatal(err)
	}
	name := envelope.FileName(&s.Header)
	if err := os.WriteFile(filepath.Join(d.dir, "exchange", "requests", name), s.Data, 0o644); err != nil {
		t.Fatal(err)
	}
	reason := filepath.Join(d.dir, "intranet", "state", "quarantine", name+".reason")
	waitFor(t, 20*time.Second, func() bool { _, err := os.Stat(reason); return err == nil })
	if b, _ := os.ReadFile(reason); !bytes.Contains(b, []byte("reason: revoked_key")) {
		t.Fatalf("quarantine reason file:\n%s", b)
	}
	db := d.replica(t)
	if c := count(t, db, "SELECT count(*) FROM e2e_effects WHERE tag = 'forged'"); c != 0 {
		t.Fatalf("the envelope signed with the revoked key took effect %d times", c)
	}
	if c := count(t, db, "SELECT count(*) FROM e2e_effects"); c != n+1 {
		t.Fatalf("%d effects after the forged envelope, want %d", c, n+1)
	}
	dz.stop(t)
	in.stop(t)
	// What ferryctl did offline is in each zone's audit log, with who did
	// it: each agent took its admin journal in.
	for zone, want := range map[string][]string{"dmz": {"keys.generate", "keys.rotate", "keys.accept"}, "intranet": {"keys.generate", "keys.accept", "keys.rotate", "keys.revoke"}} {
		var got []string
		for _, e := range audittest.Entries(t, filepath.Join(d.dir, zone, "state", audit.FileName)) {
			if e.Event == audit.EventAdmin && strings.HasPrefix(e.Decision, "keys.") && e.Actor != "" {
				got = append(got, e.Decision)
			}
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s audit log: admin actions %v, want %v", zone, got, want)
		}
	}
}

// oldDMZUntil returns when the DMZ's first key stops being valid.
func oldDMZUntil(t *testing.T, dir string) time.Time {
	t.Helper()
	own, err := keys.LoadOwnKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	return own[0].Until.Add(100 * time.Millisecond)
}

// logCount counts the lines of the agent's log that contain s.
func logCount(t *testing.T, a *agent, s string) int {
	t.Helper()
	b, err := os.ReadFile(a.log)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), s)
}

// waitLogCount waits until the agent's log contains s at least n times.
func waitLogCount(t *testing.T, a *agent, s string, n int) {
	t.Helper()
	waitFor(t, 20*time.Second, func() bool { return logCount(t, a, s) >= n })
}
