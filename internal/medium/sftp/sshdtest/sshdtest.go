// Package sshdtest runs a real OpenSSH sshd on 127.0.0.1 for one test, so
// that the SFTP medium is tested against the server it meets in
// production rather than against an imitation. It is an ordinary package
// imported only from _test.go files.
//
// # The server
//
// [Start] writes a fresh ed25519 host key, a fresh ed25519 client key
// authorized for the current user, and an sshd_config that allows nothing
// but SFTP (ForceCommand internal-sftp, no forwarding, no TTY, no
// passwords, UsePAM no, AllowUsers the current user), then runs
// /usr/sbin/sshd -D -e on a free port and waits until it listens.
//
// When the test runs as root the session is chrooted (ChrootDirectory) to
// a root-owned directory holding only the drop directories, as a
// production drop account is; [Server.Drop] then returns remote paths such
// as /requests. An unprivileged sshd cannot chroot, so otherwise the
// client sees the whole file system and Drop returns the local path as the
// remote path.
//
// # Missing sshd
//
// A test that cannot find its server fails; it does not skip. Install
// the openssh-server package (apt-get install openssh-server).
package sshdtest

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHDPath is the sshd the tests run. sshd must be started by its
// absolute path: it re-executes itself for every connection.
const SSHDPath = "/usr/sbin/sshd"

// privSepDir is the privilege-separation directory a root sshd refuses to
// start without.
const privSepDir = "/run/sshd"

// Timeouts of the harness.
const (
	startTimeout = 10 * time.Second // until sshd listens
	stopTimeout  = 5 * time.Second  // SIGTERM, then SIGKILL
	rebindFor    = 5 * time.Second  // Restart retries the bind this long
)

// Server is a running OpenSSH sshd serving SFTP on 127.0.0.1.
type Server struct {
	Addr       string // 127.0.0.1:port
	User       string // the login user (the current user)
	KeyFile    string // a fresh ed25519 client key, 0600, OpenSSH format, authorized on the server
	KnownHosts string // known_hosts with the server's fresh ed25519 host key for Addr

	hostKeyLine string
	base        string // holds etc/ (config, keys) and, when chrooted, root/
	etc         string
	chroot      string // the ChrootDirectory, or "" when not root
	drops       string // where Drop creates directories
	config      string
	uid, gid    int

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd has been waited for
	stderr *logBuffer
	logs   []string // stderr of earlier runs, for the failure log
}

// Start runs a fresh sshd for t and stops it when t ends. It fails t (it
// never skips) if sshd is missing or does not start.
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := os.Stat(SSHDPath); err != nil {
		t.Fatalf("sshdtest: %s not found (%v): install openssh-server (apt-get install openssh-server)", SSHDPath, err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("sshdtest: current user: %v", err)
	}
	s := &Server{User: u.Username, uid: os.Getuid(), gid: os.Getgid()}
	root := s.uid == 0
	if root {
		// sshd checks that every component of the ChrootDirectory path,
		// and with StrictModes of the AuthorizedKeysFile path, is owned
		// by root and not writable by group or others. /tmp (1777) fails
		// that, so the server's files live under a root-owned 0755 base.
		if err := os.MkdirAll(privSepDir, 0o755); err != nil {
			t.Fatalf("sshdtest: privilege separation directory: %v", err)
		}
		s.base, err = os.MkdirTemp(safeBase(), "ferry-sshdtest-")
		if err != nil {
			t.Fatalf("sshdtest: %v", err)
		}
		t.Cleanup(func() { os.RemoveAll(s.base) })
		if err := os.Chmod(s.base, 0o755); err != nil {
			t.Fatalf("sshdtest: %v", err)
		}
		s.chroot = filepath.Join(s.base, "root")
		s.drops = s.chroot
	} else {
		s.base = t.TempDir()
		s.drops = filepath.Join(s.base, "drops")
	}
	s.etc = filepath.Join(s.base, "etc")
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{s.etc, 0o700}, {s.drops, 0o755}} {
		if err := os.Mkdir(d.path, d.mode); err != nil {
			t.Fatalf("sshdtest: %v", err)
		}
		if err := os.Chmod(d.path, d.mode); err != nil { // past the umask
			t.Fatalf("sshdtest: %v", err)
		}
	}

	hostPub := writeKey(t, filepath.Join(s.etc, "ssh_host_ed25519_key"))
	clientDir := t.TempDir()
	s.KeyFile = filepath.Join(clientDir, "id_ed25519")
	clientPub := writeKey(t, s.KeyFile)
	authorized := filepath.Join(s.etc, "authorized_keys")
	if err := os.WriteFile(authorized, ssh.MarshalAuthorizedKey(clientPub), 0o600); err != nil {
		t.Fatalf("sshdtest: %v", err)
	}

	s.Addr = freeAddr(t)
	s.hostKeyLine = knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, hostPub)
	s.KnownHosts = filepath.Join(clientDir, "known_hosts")
	if err := os.WriteFile(s.KnownHosts, []byte(s.hostKeyLine+"\n"), 0o600); err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	s.config = filepath.Join(s.etc, "sshd_config")
	if err := os.WriteFile(s.config, []byte(s.sshdConfig(authorized)), 0o600); err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sshd log:\n%s", s.log())
		}
		s.Stop(t)
	})
	if err := s.start(startTimeout); err != nil {
		t.Fatalf("sshdtest: %v\nsshd log:\n%s", err, s.log())
	}
	return s
}

// sshdConfig is the server's whole configuration: SFTP only, by key only,
// for the current user only.
func (s *Server) sshdConfig(authorized string) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("# written by sshdtest for one test")
	line("ListenAddress %s", s.Addr)
	line("HostKey %s", filepath.Join(s.etc, "ssh_host_ed25519_key"))
	line("PidFile %s", filepath.Join(s.etc, "sshd.pid"))
	line("AuthorizedKeysFile %s", authorized)
	if s.chroot != "" {
		line("StrictModes yes")
	} else {
		// StrictModes checks every directory from the authorized_keys
		// file up to / for group or other write permission; the test's
		// temp dir sits below /tmp (1777), which always fails it.
		line("StrictModes no")
	}
	line("UsePAM no")
	line("PubkeyAuthentication yes")
	line("PasswordAuthentication no")
	line("KbdInteractiveAuthentication no")
	line("HostbasedAuthentication no")
	if s.uid == 0 {
		line("PermitRootLogin prohibit-password") // the tests run as root here
	} else {
		line("PermitRootLogin no")
	}
	line("AllowUsers %s", s.User)
	line("Subsystem sftp internal-sftp")
	line("ForceCommand internal-sftp")
	if s.chroot != "" {
		line("ChrootDirectory %s", s.chroot)
	}
	line("AllowTcpForwarding no")
	line("AllowStreamLocalForwarding no")
	line("AllowAgentForwarding no")
	line("X11Forwarding no")
	line("PermitTunnel no")
	line("PermitTTY no")
	line("PermitUserEnvironment no")
	line("UseDNS no")
	// Reconnect tests open many connections in a row; the default
	// (10:30:100) would drop some of them while unauthenticated.
	line("MaxStartups 200")
	line("LogLevel VERBOSE")
	return b.String()
}

// safeBase returns a directory whose every path component is root-owned
// and not writable by group or others, as sshd requires of a chroot.
func safeBase() string {
	for _, d := range []string{"/run", "/var/lib", "/"} {
		if safePath(d) {
			return d
		}
	}
	return "/"
}

func safePath(p string) bool {
	for {
		fi, err := os.Stat(p)
		if err != nil {
			return false
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || st.Uid != 0 || fi.Mode().Perm()&0o022 != 0 || !fi.IsDir() {
			return false
		}
		if p == "/" {
			return true
		}
		p = filepath.Dir(p)
	}
}

// writeKey writes a fresh ed25519 private key in OpenSSH format, mode
// 0600, and returns its public key.
func writeKey(t testing.TB, path string) ssh.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("sshdtest: generate key: %v", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatalf("sshdtest: marshal key: %v", err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	return sshPub
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("sshdtest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// HostKeyLine returns the known_hosts line of the server's host key.
func (s *Server) HostKeyLine() string { return s.hostKeyLine }

// Drop creates the drop directory name (mode 0700, owned by the login
// user) and returns the path the client names it by and its local path.
func (s *Server) Drop(t testing.TB, name string) (remote, local string) {
	t.Helper()
	if name == "" || strings.ContainsAny(name, "/\\") || name == "." || name == ".." {
		t.Fatalf("sshdtest: invalid drop name %q", name)
	}
	local = filepath.Join(s.drops, name)
	if err := os.Mkdir(local, 0o700); err != nil {
		t.Fatalf("sshdtest: drop: %v", err)
	}
	if err := os.Chown(local, s.uid, s.gid); err != nil {
		t.Fatalf("sshdtest: drop: %v", err)
	}
	if s.chroot != "" {
		return "/" + name, local
	}
	return local, local
}

// Stop stops sshd and kills its sessions, as a server crash or reboot
// would. It is idempotent.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Errorf("sshdtest: stop: %v", err)
	}
}

// Restart stops sshd and starts it again on the same address with the
// same keys and configuration.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatalf("sshdtest: stop: %v", err)
	}
	deadline := time.Now().Add(rebindFor)
	for {
		err := s.start(startTimeout)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshdtest: restart: %v\nsshd log:\n%s", err, s.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// start runs sshd and waits until it listens.
func (s *Server) start(within time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("already running")
	}
	cmd := exec.Command(SSHDPath, "-D", "-e", "-f", s.config)
	buf := newLogBuffer("Server listening on ")
	cmd.Stdout, cmd.Stderr = buf, buf
	// Session processes inherit the pipe; Wait must not hang on one that
	// outlives the listener.
	cmd.WaitDelay = stopTimeout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start sshd: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done, s.stderr = cmd, done, buf

	timer := time.NewTimer(within)
	defer timer.Stop()
	select {
	case <-buf.seen:
	case <-done:
		s.forget()
		return fmt.Errorf("sshd exited during start: %v", cmd.ProcessState)
	case <-timer.C:
		s.kill()
		return fmt.Errorf("sshd did not log %q within %s", "Server listening", within)
	}
	// The log line comes after listen(2); a connect confirms it.
	for {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-timer.C:
			s.kill()
			return fmt.Errorf("sshd does not accept on %s: %w", s.Addr, err)
		case <-done:
			s.forget()
			return fmt.Errorf("sshd exited during start: %v", cmd.ProcessState)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *Server) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	return s.kill()
}

// kill stops the running sshd: its sessions first (each connection has
// its own process, which SIGTERM to the listener leaves running), then
// the listener with SIGTERM and, after stopTimeout, SIGKILL. s.mu is held.
func (s *Server) kill() error {
	pid := s.cmd.Process.Pid
	for _, c := range descendants(pid) {
		_ = syscall.Kill(c, syscall.SIGKILL)
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.done
		err = fmt.Errorf("sshd (pid %d) ignored SIGTERM for %s; killed", pid, stopTimeout)
	}
	// Sessions accepted while the listener was stopping.
	for _, c := range descendants(pid) {
		_ = syscall.Kill(c, syscall.SIGKILL)
	}
	s.forget()
	return err
}

// forget records the stopped sshd's log and clears it. s.mu is held.
func (s *Server) forget() {
	s.logs = append(s.logs, s.stderr.String())
	s.cmd, s.done, s.stderr = nil, nil, nil
}

// log returns sshd's stderr of every run so far.
func (s *Server) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	parts := append([]string(nil), s.logs...)
	if s.stderr != nil {
		parts = append(parts, s.stderr.String())
	}
	return strings.Join(parts, "--- sshd restarted ---\n")
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

// logBuffer collects sshd's stderr and closes seen when a line starting
// with marker arrives.
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
