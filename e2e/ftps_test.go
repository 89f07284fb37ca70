package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/medium/ftps/vsftpdtest"
)

// ftpsDrops are the drop directories on the boundary FTP server: the DMZ
// uploads requests and downloads results, the intranet the other way.
var ftpsDrops = []string{"requests", "results"}

// viaFTPS makes both agents of d exchange envelopes through FTPS drops on
// srv instead of the exchange directories: each zone gets its own copy of
// the password file and the server's CA under <zone>/ftps/, named by paths
// relative to its config file, as an operator would set them up. The DMZ
// verifies the server against the CA, the intranet pins the certificate's
// SHA-256: both ways are exercised.
func (d *deployment) viaFTPS(t testing.TB, srv *vsftpdtest.Server) {
	t.Helper()
	remote := map[string]string{}
	for _, drop := range ftpsDrops {
		remote[drop], _ = srv.Drop(t, drop)
	}
	for _, zone := range []string{"dmz", "intranet"} {
		dir := filepath.Join(d.dir, zone, "ftps")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for src, dst := range map[string]string{srv.PasswordFile: "password", srv.CAFile: "ca.pem"} {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, dst), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	block := func(zone, drop string, receive bool) string {
		s := "  type: ftps\n" +
			"  address: " + srv.Addr + "\n" +
			"  user: " + srv.User + "\n" +
			"  password_file: ftps/password\n"
		if zone == "dmz" {
			s += "  ca_file: ftps/ca.pem\n"
		} else {
			s += "  cert_sha256: " + srv.CertSHA256 + "\n"
		}
		s += "  dir: " + remote[drop] + "\n" +
			"  dial_timeout: 2s\n" +
			"  op_timeout: 10s\n"
		if receive {
			s += "  rescan: 100ms\n"
		}
		return s
	}
	dmzCfg := filepath.Join(d.dir, "dmz", "dmz.yaml")
	inCfg := filepath.Join(d.dir, "intranet", "intranet.yaml")
	dirBlock := func(drop string) string { return "  type: dir\n  dir: ../exchange/" + drop + "\n" }
	rewire(t, dmzCfg, dirBlock("requests"), block("dmz", "requests", false))
	rewire(t, dmzCfg, dirBlock("results"), block("dmz", "results", true))
	rewire(t, inCfg, dirBlock("requests"), block("intranet", "requests", true))
	rewire(t, inCfg, dirBlock("results"), block("intranet", "results", false))
}

// ftpsRequests is the number of e2e.effect requests the FTPS round trip
// sends.
const ftpsRequests = 48

// TestFTPS_RoundTrip runs both agents as processes exchanging envelopes
// through a real vsftpd with TLS forced for the login and every data
// connection, one drop per direction. Mid-stream the DMZ agent is
// SIGKILLed and restarted (clients retry with their Idempotency-Key, as
// docs/api.md tells them), and later vsftpd is stopped (killing every
// session) and started again: every accepted request still ends done and
// takes effect on the replica exactly once.
func TestFTPS_RoundTrip(t *testing.T) {
	d := effectsDeployment(t)
	srv := vsftpdtest.Start(t)
	d.viaFTPS(t, srv)

	in := d.start(t, "intranet-agent")
	dz := d.start(t, "dmz-agent")
	d.waitReady(t, dz)
	var connects int // the DMZ agent's connections before its restart
	crash := map[int]func(){
		ftpsRequests / 3: func() {
			connects = logCount(t, dz, "connected to ftp server")
			dz.kill(t)
			dz = d.start(t, "dmz-agent")
		},
		2 * ftpsRequests / 3: func() {
			// Cut live sessions: wait until the restarted DMZ agent
			// has connected (it may have started while nothing was
			// connected yet).
			waitFor(t, 30*time.Second, func() bool {
				return logCount(t, dz, "connected to ftp server") > connects
			})
			srv.Stop(t)
			// Long enough for both agents to fail an operation and
			// back off, short of any re-send deadline.
			time.Sleep(2 * time.Second)
			srv.Restart(t)
		},
	}
	ids := submitEffects(t, d, ftpsRequests, time.Minute, crash)
	checkEffects(t, d, ids)
	if connects == 0 {
		t.Error("the DMZ agent never connected to vsftpd before it was killed")
	}
	// The DMZ agent's log is appended to across its restart. The server's
	// stop cut the restarted agent's live sessions, and it connected
	// again.
	if n := logCount(t, dz, "ftp connection lost"); n == 0 {
		t.Error("the DMZ agent never lost its FTP connection: vsftpd was not stopped mid-stream")
	}
	if n := logCount(t, dz, "connected to ftp server"); n < connects+3 {
		t.Errorf("the DMZ agent connected %d times (%d before its restart), want at least %d (reconnects after the vsftpd restart)", n, connects, connects+3)
	}
	for _, a := range []*agent{dz, in} {
		if n := logCount(t, a, "plain FTP"); n != 0 {
			t.Errorf("%s warned about plain FTP %d times over FTPS", a.name, n)
		}
	}
	dz.stop(t)
	in.stop(t)
}
