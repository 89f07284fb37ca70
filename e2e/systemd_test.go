package e2e

import (
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// notifyListener is where systemd would listen for an agent's sd_notify
// messages ($NOTIFY_SOCKET).
type notifyListener struct {
	path string
	msgs chan string
}

func listenNotify(t *testing.T, name string) *notifyListener {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	n := &notifyListener{path: path, msgs: make(chan string, 1000)}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.msgs <- string(buf[:k])
		}
	}()
	return n
}

// await returns the first message holding want, failing after within; it
// returns every message read on the way.
func (n *notifyListener) await(t *testing.T, want string, within time.Duration) []string {
	t.Helper()
	var seen []string
	deadline := time.After(within)
	for {
		select {
		case m := <-n.msgs:
			seen = append(seen, m)
			if strings.Contains(m, want) {
				return seen
			}
		case <-deadline:
			t.Fatalf("no %q from the agent within %s; got %q", want, within, seen)
		}
	}
}

// TestSystemdNotify runs both agents as systemd would start them with
// Type=notify and WatchdogSec: each says READY=1 once it serves (the DMZ's
// API answers by then), feeds the watchdog, says RELOADING=1 and READY=1
// around a SIGHUP, and STOPPING=1 at SIGTERM before it exits 0.
func TestSystemdNotify(t *testing.T) {
	d := newDeployment(t)
	watchdog := "WATCHDOG_USEC=400000" // fed every 200ms
	inN, dzN := listenNotify(t, "intranet.sock"), listenNotify(t, "dmz.sock")
	in := d.start(t, "intranet-agent", "NOTIFY_SOCKET="+inN.path, watchdog)
	dz := d.start(t, "dmz-agent", "NOTIFY_SOCKET="+dzN.path, watchdog)

	inN.await(t, "READY=1", 30*time.Second)
	dzN.await(t, "READY=1", 30*time.Second)
	// Ready means the API answers (whether it is ready for traffic is
	// /readyz's to say: it waits for the intranet's catalogue).
	if st := d.do(t, "GET", "/healthz", nil); st.code != 200 {
		t.Fatalf("healthz after READY=1: HTTP %d", st.code)
	}
	for _, n := range []*notifyListener{inN, dzN} {
		n.await(t, "WATCHDOG=1", 5*time.Second)
		n.await(t, "WATCHDOG=1", 5*time.Second)
	}

	if err := in.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	seen := inN.await(t, "RELOADING=1", 10*time.Second)
	if !strings.Contains(seen[len(seen)-1], "MONOTONIC_USEC=") {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", seen[len(seen)-1])
	}
	inN.await(t, "READY=1", 10*time.Second)

	dz.stop(t)
	dzN.await(t, "STOPPING=1", 5*time.Second)
	in.stop(t)
	inN.await(t, "STOPPING=1", 5*time.Second)
}

// TestSignals_underLoad: while 16 clients submit writes, both agents are
// reloaded (SIGHUP) and each is stopped (SIGTERM) and started again, as
// `systemctl reload` and `systemctl restart` would. Every stop drains and
// exits 0, every reload succeeds, and every request is accepted (clients
// retry through the restart as docs/api.md says), reaches done and takes
// effect exactly once; both audit logs then verify and reconcile.
func TestSignals_underLoad(t *testing.T) {
	d := effectsDeployment(t)
	in := d.start(t, "intranet-agent")
	dz := d.start(t, "dmz-agent")
	d.waitReady(t, dz)
	hup := func(a *agent) {
		if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	ids := submitEffects(t, d, effectsTotal, time.Minute, map[int]func(){
		effectsTotal / 5: func() { hup(in); hup(dz) },
		2 * effectsTotal / 5: func() {
			dz.stop(t)
			dz = d.start(t, "dmz-agent")
		},
		3 * effectsTotal / 5: func() {
			in.stop(t)
			in = d.start(t, "intranet-agent")
			// The next SIGHUP must not come before the process has even
			// set up its signal handling (the instant after exec): wait
			// for its first line, which it writes after.
			waitFor(t, 30*time.Second, func() bool { return logCount(t, in, `"msg":"policy in force"`) == 2 })
		},
		4 * effectsTotal / 5: func() { hup(in); hup(dz) },
	})
	checkEffects(t, d, ids)
	dz.stop(t)
	in.stop(t)
	for _, a := range []*agent{dz, in} {
		if n := logCount(t, a, `"msg":"reloaded"`); n != 2 {
			t.Errorf("%s: %d reloads logged, want 2", a.name, n)
		}
		if n := logCount(t, a, `"msg":"reload failed`); n != 0 {
			t.Errorf("%s: %d failed reloads", a.name, n)
		}
	}
	checkAudit(t, d, ids)
}
