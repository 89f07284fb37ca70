// Package daemontest runs a real server process for one test: the
// plumbing that the sshdtest and vsftpdtest harnesses share. It is an
// ordinary package imported only by those harnesses and by the tests of
// the media they serve.
//
// # Lifecycle
//
// A [Daemon] names a command that stays in the foreground and the address
// it listens on. [Daemon.Start] runs it, waits until it is ready (an
// optional line of its output, then a probe of its address that must
// succeed), stops it when the test ends and, if the test failed, logs
// what the daemon wrote. [Daemon.Stop] kills the per-connection session
// processes it forked, found through /proc, then the daemon itself with
// SIGTERM and, after a grace time, SIGKILL, as a crash or reboot would.
// [Daemon.Restart] stops it and starts it again on the same address,
// retrying while the port is not yet free to bind.
//
// # Full disk
//
// [MountTmpfs] mounts a small tmpfs over a drop directory, keeping its
// owner and mode, so that a test meets a full disk on the server side;
// it unmounts it when the test ends.
//
// # Failures
//
// Every failure is reported on the test with the harness's name first
// (such as "sshdtest: restart: ...") and the daemon's output of every run
// so far.
package daemontest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timeouts of the harness.
const (
	StartTimeout = 10 * time.Second // until the daemon is ready
	StopTimeout  = 5 * time.Second  // SIGTERM, then SIGKILL
	RebindFor    = 5 * time.Second  // Restart retries the start this long
)

// Daemon is a server process that a test starts, stops and restarts. Set
// its fields, then call Start; they must not change afterwards.
type Daemon struct {
	Harness string   // the harness's package name, first in every failure: "sshdtest"
	Name    string   // the daemon's name in errors and logs: "sshd"
	Path    string   // the absolute path of the program
	Args    []string // its arguments; it must stay in the foreground
	Addr    string   // host:port it listens on

	// Marker, when not empty, is the start of a line of output the
	// daemon writes once it listens; Start waits for it before probing.
	Marker string
	// Ready probes Addr and returns nil once the daemon serves; nil
	// means a TCP connect.
	Ready func(addr string) error
	// LogFile, when not empty, is a file the daemon logs to besides its
	// output; the failure log shows it after the output.
	LogFile string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd has been waited for
	output *logBuffer
	logs   []string // output of earlier runs, for the failure log
}

// Start runs d for t and stops it when t ends, logging d's output first if
// t failed. It fails t if d does not become ready within StartTimeout.
func (d *Daemon) Start(t testing.TB) {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log:\n%s", d.Name, d.Log())
		}
		d.Stop(t)
	})
	if err := d.start(StartTimeout); err != nil {
		t.Fatalf("%s: %v\n%s log:\n%s", d.Harness, err, d.Name, d.Log())
	}
}

// Stop stops d and kills its sessions. It is idempotent.
func (d *Daemon) Stop(t testing.TB) {
	t.Helper()
	if err := d.stop(); err != nil {
		// Stopped all the same, by SIGKILL: on a loaded machine the exit
		// can take longer than StopTimeout, which is worth a note, not a
		// failed test.
		t.Logf("%s: stop: %v", d.Harness, err)
	}
}

// Restart stops d and starts it again on the same address, retrying for
// RebindFor while the start fails (the old listener's port may not be
// free yet).
func (d *Daemon) Restart(t testing.TB) {
	t.Helper()
	if err := d.stop(); err != nil {
		t.Logf("%s: stop: %v", d.Harness, err) // stopped by SIGKILL (see Stop)
	}
	deadline := time.Now().Add(RebindFor)
	for {
		err := d.start(StartTimeout)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: restart: %v\n%s log:\n%s", d.Harness, err, d.Name, d.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// start runs the daemon and waits until it is ready.
func (d *Daemon) start(within time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd != nil {
		return errors.New("already running")
	}
	cmd := exec.Command(d.Path, d.Args...)
	buf := newLogBuffer(d.Marker)
	cmd.Stdout, cmd.Stderr = buf, buf
	// Session processes inherit the pipe; Wait must not hang on one that
	// outlives the listener.
	cmd.WaitDelay = StopTimeout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", d.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	d.cmd, d.done, d.output = cmd, done, buf

	timer := time.NewTimer(within)
	defer timer.Stop()
	if d.Marker != "" {
		select {
		case <-buf.seen:
		case <-done:
			d.forget()
			return fmt.Errorf("%s exited during start: %v", d.Name, cmd.ProcessState)
		case <-timer.C:
			d.kill()
			return fmt.Errorf("%s did not log %q within %s", d.Name, d.Marker, within)
		}
	}
	ready := d.Ready
	if ready == nil {
		ready = connect
	}
	for {
		err := ready(d.Addr)
		if err == nil {
			return nil
		}
		select {
		case <-timer.C:
			d.kill()
			return fmt.Errorf("%s is not ready on %s within %s: %w", d.Name, d.Addr, within, err)
		case <-done:
			d.forget()
			return fmt.Errorf("%s exited during start: %v", d.Name, cmd.ProcessState)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// connect is the default readiness probe: addr accepts a TCP connection.
func connect(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

func (d *Daemon) stop() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return nil
	}
	return d.kill()
}

// kill stops the running daemon: its sessions first (each connection has
// its own processes, which a SIGTERM to the listener leaves running), then
// the listener with SIGTERM and, after StopTimeout, SIGKILL. d.mu is held.
func (d *Daemon) kill() error {
	pid := d.cmd.Process.Pid
	for _, c := range descendants(pid) {
		_ = syscall.Kill(c, syscall.SIGKILL)
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case <-d.done:
	case <-time.After(StopTimeout):
		_ = d.cmd.Process.Kill()
		<-d.done
		err = fmt.Errorf("%s (pid %d) ignored SIGTERM for %s; killed", d.Name, pid, StopTimeout)
	}
	// Sessions accepted while the listener was stopping.
	for _, c := range descendants(pid) {
		_ = syscall.Kill(c, syscall.SIGKILL)
	}
	d.forget()
	return err
}

// forget records the stopped daemon's output and clears it. d.mu is held.
func (d *Daemon) forget() {
	d.logs = append(d.logs, d.output.String())
	d.cmd, d.done, d.output = nil, nil, nil
}

// Log returns the daemon's output of every run so far and, with a
// LogFile, that file.
func (d *Daemon) Log() string {
	d.mu.Lock()
	parts := append([]string(nil), d.logs...)
	if d.output != nil {
		parts = append(parts, d.output.String())
	}
	d.mu.Unlock()
	out := strings.Join(parts, "--- "+d.Name+" restarted ---\n")
	if d.LogFile == "" {
		return out
	}
	out = "stderr:\n" + out
	if b, err := os.ReadFile(d.LogFile); err == nil {
		out += "\n" + d.LogFile + ":\n" + string(b)
	}
	return out
}

// FreeAddr returns a 127.0.0.1 address whose port is free now. It fails t,
// naming harness, if there is none.
func FreeAddr(t testing.TB, harness string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("%s: free port: %v", harness, err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Drop creates the drop directory name below parent, mode 0700 and owned
// by uid and gid, and returns its path. It fails t, naming harness, if
// name is not a single path component or the directory cannot be made.
func Drop(t testing.TB, harness, parent, name string, uid, gid int) string {
	t.Helper()
	if name == "" || strings.ContainsAny(name, "/\\") || name == "." || name == ".." {
		t.Fatalf("%s: invalid drop name %q", harness, name)
	}
	local := filepath.Join(parent, name)
	if err := os.Mkdir(local, 0o700); err != nil {
		t.Fatalf("%s: drop: %v", harness, err)
	}
	if err := os.Chown(local, uid, gid); err != nil {
		t.Fatalf("%s: drop: %v", harness, err)
	}
	return local
}

// Dir is a directory for Mkdirs to create with its mode.
type Dir struct {
	Path string
	Mode os.FileMode
}

// Mkdirs creates each directory with exactly its mode, past the umask. It
// fails t, naming harness, on the first error.
func Mkdirs(t testing.TB, harness string, dirs ...Dir) {
	t.Helper()
	for _, d := range dirs {
		if err := os.Mkdir(d.Path, d.Mode); err != nil {
			t.Fatalf("%s: %v", harness, err)
		}
		if err := os.Chmod(d.Path, d.Mode); err != nil {
			t.Fatalf("%s: %v", harness, err)
		}
	}
}

// descendants returns the pids of every process below pid, from /proc.
func descendants(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command name in parentheses may hold spaces: the fields
		// after its closing parenthesis are state, then ppid.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		if pp, err := strconv.Atoi(f[1]); err == nil {
			children[pp] = append(children[pp], p)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// logBuffer collects a daemon's output and, when marker is not empty,
// closes seen when a line starting with marker arrives.
type logBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	partial []byte
	marker  string
	seen    chan struct{}
	once    sync.Once
}

func newLogBuffer(marker string) *logBuffer {
	return &logBuffer{marker: marker, seen: make(chan struct{})}
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if l.marker == "" {
		return len(p), nil
	}
	l.partial = append(l.partial, p...)
	last := bytes.LastIndexByte(l.partial, '\n')
	if last < 0 {
		return len(p), nil
	}
	sc := bufio.NewScanner(bytes.NewReader(l.partial[:last+1]))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), l.marker) {
			l.once.Do(func() { close(l.seen) })
		}
	}
	l.partial = append(l.partial[:0], l.partial[last+1:]...)
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// MountTmpfs mounts a tmpfs of size bytes over the directory dir, owned by
// dir's owner and group and with dir's mode, so that the server's user
// writes to it as before, into a small file system: a full disk on the
// server side. It unmounts it when t ends, after the cleanups registered
// later (the clients' and the sessions' ends). It needs root; it fails t
// otherwise.
func MountTmpfs(t testing.TB, dir string, size int64) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("daemontest: mounting a tmpfs needs root (CI runs as root)")
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatalf("daemontest: tmpfs: %v", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Fatalf("daemontest: tmpfs: no owner for %s", dir)
	}
	opts := fmt.Sprintf("size=%d,mode=%04o,uid=%d,gid=%d", size, fi.Mode().Perm(), st.Uid, st.Gid)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("daemontest: mount a tmpfs (%s) on %s: %v: %s", opts, dir, err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() { unmount(t, dir) })
}

// unmount unmounts dir, retrying for StopTimeout while a session process
// that is still ending holds it; then it detaches it (umount -l), which
// the kernel completes once the last user is gone, so that no mount
// outlives the test.
func unmount(t testing.TB, dir string) {
	t.Helper()
	deadline := time.Now().Add(StopTimeout)
	for {
		out, err := exec.Command("umount", dir).CombinedOutput()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Logf("daemontest: umount %s: %v: %s; detaching it", dir, err, bytes.TrimSpace(out))
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
		t.Errorf("daemontest: umount -l %s: %v: %s", dir, err, bytes.TrimSpace(out))
	}
}
