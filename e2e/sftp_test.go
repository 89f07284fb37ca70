package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/medium/sftp/sshdtest"
)

// TestSFTP_RoundTrip runs both agents as processes exchanging envelopes
// through a real OpenSSH sshd, one drop per direction. Mid-stream the
// intranet agent is SIGKILLed and restarted, and later sshd is stopped
// (killing every session) and started again: every accepted request still
// ends done and takes effect on the replica exactly once.
func TestSFTP_RoundTrip(t *testing.T) {
	d := effectsDeployment(t)
	srv := sshdtest.Start(t)
	// Each zone gets its own copy of the client key and the pinned
	// known_hosts.
	d.roundTripVia(t, boundary{
		server:   "sshd",
		medium:   "sftp",
		protocol: "SFTP",
		addr:     srv.Addr,
		user:     srv.User,
		files:    map[string]string{srv.KeyFile: "id_ed25519", srv.KnownHosts: "known_hosts"},
		auth: func(string) string {
			return "  key: sftp/id_ed25519\n" +
				"  known_hosts: sftp/known_hosts\n"
		},
		tail:    "  keepalive: 1s\n",
		drop:    srv.Drop,
		stop:    srv.Stop,
		restart: srv.Restart,
	})
}

// remoteDrops are the drop directories on a boundary server: the DMZ
// uploads requests and downloads results, the intranet the other way.
var remoteDrops = []string{"requests", "results"}

// remoteRequests is the number of e2e.effect requests a round trip through
// a boundary server sends.
const remoteRequests = 48

// boundary is a real boundary server that a round trip runs both agents
// through (TestSFTP_RoundTrip, TestFTPS_RoundTrip), and what the agents
// log about it.
type boundary struct {
	server   string // the daemon, in failure messages: "sshd"
	medium   string // the medium type, and the zones' directory for its files: "sftp"
	protocol string // as the agents log it, in upper case: "SFTP"
	addr     string
	user     string
	// files maps the client files the server's harness wrote to the
	// names each zone's copy gets under <zone>/<medium>/.
	files map[string]string
	// auth returns the medium settings of zone that name those copies
	// (relative to its config file) or otherwise authenticate.
	auth func(zone string) string
	tail string // settings after dial_timeout and op_timeout
	// restartDMZ makes the crash a third of the way the DMZ agent's
	// (with its connections counted) rather than the intranet agent's.
	restartDMZ bool
	// neverLogged, if not empty, is a message neither agent may log.
	neverLogged string

	drop          func(t testing.TB, name string) (remote, local string)
	stop, restart func(t testing.TB)
}

// via makes both agents of d exchange envelopes through drops on b instead
// of the exchange directories, as an operator would set them up: each zone
// has its own copy of b's client files under <zone>/<medium>/.
func (d *deployment) via(t testing.TB, b boundary) {
	t.Helper()
	remote := map[string]string{}
	for _, drop := range remoteDrops {
		remote[drop], _ = b.drop(t, drop)
	}
	for _, zone := range []string{"dmz", "intranet"} {
		dir := filepath.Join(d.dir, zone, b.medium)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for src, dst := range b.files {
			data, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, dst), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	block := func(zone, drop string, receive bool) string {
		s := "  type: " + b.medium + "\n" +
			"  address: " + b.addr + "\n" +
			"  user: " + b.user + "\n" +
			b.auth(zone) +
			"  dir: " + remote[drop] + "\n" +
			"  dial_timeout: 2s\n" +
			"  op_timeout: 10s\n" +
			b.tail
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

// roundTripVia runs both agents of d as processes exchanging envelopes
// through b, one drop per direction, and sends remoteRequests e2e.effect
// requests. A third of the way one agent is SIGKILLed and restarted;
// two thirds of the way the server is stopped (killing every session)
// and started again. Every accepted request must still end done and take
// effect on the replica exactly once, and the DMZ agent must have lost its
// connection and connected again.
func (d *deployment) roundTripVia(t *testing.T, b boundary) {
	t.Helper()
	d.via(t, b)
	connected := "connected to " + strings.ToLower(b.protocol) + " server"

	in := d.start(t, "intranet-agent")
	dz := d.start(t, "dmz-agent")
	d.waitReady(t, dz)
	var connects int // the DMZ agent's connections before its restart
	crash := map[int]func(){
		remoteRequests / 3: func() {
			if !b.restartDMZ {
				in.kill(t)
				in = d.start(t, "intranet-agent")
				return
			}
			connects = logCount(t, dz, connected)
			dz.kill(t)
			dz = d.start(t, "dmz-agent")
		},
		2 * remoteRequests / 3: func() {
			if b.restartDMZ {
				// Cut live sessions: wait until the restarted DMZ
				// agent has connected (it may have started while
				// nothing was connected yet).
				waitFor(t, 30*time.Second, func() bool {
					return logCount(t, dz, connected) > connects
				})
			}
			b.stop(t)
			// Long enough for both agents to fail an operation and
			// back off, short of any re-send deadline.
			time.Sleep(2 * time.Second)
			b.restart(t)
		},
	}
	ids := submitEffects(t, d, remoteRequests, time.Minute, crash)
	checkEffects(t, d, ids)
	if b.restartDMZ && connects == 0 {
		t.Errorf("the DMZ agent never connected to %s before it was killed", b.server)
	}
	// The DMZ agent's log is appended to across a restart. The server's
	// stop cut the DMZ agent's live sessions, and it connected again: two
	// media connected at start, then at least one more after the restart.
	if n := logCount(t, dz, strings.ToLower(b.protocol)+" connection lost"); n == 0 {
		t.Errorf("the DMZ agent never lost its %s connection: %s was not stopped mid-stream", b.protocol, b.server)
	}
	if n := logCount(t, dz, connected); n < connects+3 {
		t.Errorf("the DMZ agent connected %d times (%d before its restart), want at least %d (reconnects after the %s restart)", n, connects, connects+3, b.server)
	}
	if b.neverLogged != "" {
		for _, a := range []*agent{dz, in} {
			if n := logCount(t, a, b.neverLogged); n != 0 {
				t.Errorf("%s logged %q %d times", a.name, b.neverLogged, n)
			}
		}
	}
	dz.stop(t)
	in.stop(t)
}
