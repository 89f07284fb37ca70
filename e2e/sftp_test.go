package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/medium/sftp/sshdtest"
)

// sftpDrops are the drop directories on the boundary server: the DMZ
// uploads requests and downloads results, the intranet the other way.
var sftpDrops = []string{"requests", "results"}

// viaSFTP makes both agents of d exchange envelopes through SFTP drops on
// srv instead of the exchange directories: each zone gets its own copy of
// the client key and the pinned known_hosts under <zone>/sftp/, named by
// paths relative to its config file, as an operator would set them up.
func (d *deployment) viaSFTP(t testing.TB, srv *sshdtest.Server) {
	t.Helper()
	remote := map[string]string{}
	for _, drop := range sftpDrops {
		remote[drop], _ = srv.Drop(t, drop)
	}
	for _, zone := range []string{"dmz", "intranet"} {
		dir := filepath.Join(d.dir, zone, "sftp")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for src, dst := range map[string]string{srv.KeyFile: "id_ed25519", srv.KnownHosts: "known_hosts"} {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, dst), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	block := func(drop string, receive bool) string {
		s := "  type: sftp\n" +
			"  address: " + srv.Addr + "\n" +
			"  user: " + srv.User + "\n" +
			"  key: sftp/id_ed25519\n" +
			"  known_hosts: sftp/known_hosts\n" +
			"  dir: " + remote[drop] + "\n" +
			"  dial_timeout: 2s\n" +
			"  op_timeout: 10s\n" +
			"  keepalive: 1s\n"
		if receive {
			s += "  rescan: 100ms\n"
		}
		return s
	}
	dmzCfg := filepath.Join(d.dir, "dmz", "dmz.yaml")
	inCfg := filepath.Join(d.dir, "intranet", "intranet.yaml")
	dirBlock := func(drop string) string { return "  type: dir\n  dir: ../exchange/" + drop + "\n" }
	rewire(t, dmzCfg, dirBlock("requests"), block("requests", false))
	rewire(t, dmzCfg, dirBlock("results"), block("results", true))
	rewire(t, inCfg, dirBlock("requests"), block("requests", true))
	rewire(t, inCfg, dirBlock("results"), block("results", false))
}

// sftpRequests is the number of e2e.effect requests the SFTP round trip
// sends.
const sftpRequests = 48

// TestSFTP_RoundTrip runs both agents as processes exchanging envelopes
// through a real OpenSSH sshd, one drop per direction. Mid-stream the
// intranet agent is SIGKILLed and restarted, and later sshd is stopped
// (killing every session) and started again: every accepted request still
// ends done and takes effect on the replica exactly once.
func TestSFTP_RoundTrip(t *testing.T) {
	d := effectsDeployment(t)
	srv := sshdtest.Start(t)
	d.viaSFTP(t, srv)

	in := d.start(t, "intranet-agent")
	dz := d.start(t, "dmz-agent")
	d.waitReady(t, dz)
	crash := map[int]func(){
		sftpRequests / 3: func() {
			in.kill(t)
			in = d.start(t, "intranet-agent")
		},
		2 * sftpRequests / 3: func() {
			srv.Stop(t)
			// Long enough for both agents to fail an operation and
			// back off, short of any re-send deadline.
			time.Sleep(2 * time.Second)
			srv.Restart(t)
		},
	}
	ids := submitEffects(t, d, sftpRequests, time.Minute, crash)
	checkEffects(t, d, ids)
	// The server's stop cut the DMZ agent's live sessions, and it
	// connected again: two media connected at start, then at least one
	// more after the restart.
	if n := logCount(t, dz, "sftp connection lost"); n == 0 {
		t.Error("the DMZ agent never lost its SFTP connection: sshd was not stopped mid-stream")
	}
	if n := logCount(t, dz, "connected to sftp server"); n < 3 {
		t.Errorf("the DMZ agent connected %d times, want at least 3 (reconnects after the sshd restart)", n)
	}
	dz.stop(t)
	in.stop(t)
}
