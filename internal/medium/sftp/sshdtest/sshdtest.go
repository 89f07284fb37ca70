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
// # Refusals
//
// The login user is root when the tests run as root, so file modes do not
// stop it. [Server.SetSFTPFlags] makes the server refuse instead: it runs
// internal-sftp read-only (-R) or with a denylist of request types (-P),
// and the client gets real SSH_FX_PERMISSION_DENIED answers.
//
// # Missing sshd
//
// A test that cannot find its server fails; it does not skip. Install
// the openssh-server package (apt-get install openssh-server).
package sshdtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ferrybridge/ferry/internal/medium/internal/daemontest"
)

// SSHDPath is the sshd the tests run. sshd must be started by its
// absolute path: it re-executes itself for every connection.
const SSHDPath = "/usr/sbin/sshd"

// privSepDir is the privilege-separation directory a root sshd refuses to
// start without.
const privSepDir = "/run/sshd"

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
	authorized  string
	uid, gid    int
	sftpFlags   []string // arguments of internal-sftp; see SetSFTPFlags

	daemon *daemontest.Daemon
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
	daemontest.Mkdirs(t, "sshdtest", daemontest.Dir{Path: s.etc, Mode: 0o700}, daemontest.Dir{Path: s.drops, Mode: 0o755})

	hostPub := writeKey(t, filepath.Join(s.etc, "ssh_host_ed25519_key"))
	clientDir := t.TempDir()
	s.KeyFile = filepath.Join(clientDir, "id_ed25519")
	clientPub := writeKey(t, s.KeyFile)
	s.authorized = filepath.Join(s.etc, "authorized_keys")
	if err := os.WriteFile(s.authorized, ssh.MarshalAuthorizedKey(clientPub), 0o600); err != nil {
		t.Fatalf("sshdtest: %v", err)
	}

	s.Addr = daemontest.FreeAddr(t, "sshdtest")
	s.hostKeyLine = knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, hostPub)
	s.KnownHosts = filepath.Join(clientDir, "known_hosts")
	if err := os.WriteFile(s.KnownHosts, []byte(s.hostKeyLine+"\n"), 0o600); err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	s.config = filepath.Join(s.etc, "sshd_config")
	s.writeConfig(t)
	s.daemon = &daemontest.Daemon{
		Harness: "sshdtest",
		Name:    "sshd",
		Path:    SSHDPath,
		Args:    []string{"-D", "-e", "-f", s.config},
		Addr:    s.Addr,
		// Logged after listen(2); the default probe, a connect,
		// confirms it.
		Marker: "Server listening on ",
	}
	s.daemon.Start(t)
	return s
}

// writeConfig writes the server's sshd_config.
func (s *Server) writeConfig(t testing.TB) {
	t.Helper()
	if err := os.WriteFile(s.config, []byte(s.sshdConfig()), 0o600); err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
}

// sshdConfig is the server's whole configuration: SFTP only, by key only,
// for the current user only.
func (s *Server) sshdConfig() string {
	authorized := s.authorized
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
	sftp := strings.Join(append([]string{"internal-sftp"}, s.sftpFlags...), " ")
	line("Subsystem sftp %s", sftp)
	line("ForceCommand %s", sftp)
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

// HostKeyLine returns the known_hosts line of the server's host key.
func (s *Server) HostKeyLine() string { return s.hostKeyLine }

// Drop creates the drop directory name (mode 0700, owned by the login
// user) and returns the path the client names it by and its local path.
func (s *Server) Drop(t testing.TB, name string) (remote, local string) {
	t.Helper()
	local = daemontest.Drop(t, "sshdtest", s.drops, name, s.uid, s.gid)
	if s.chroot != "" {
		return "/" + name, local
	}
	return local, local
}

// Stop stops sshd and kills its sessions, as a server crash or reboot
// would. It is idempotent.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.daemon.Stop(t)
}

// SetSFTPFlags restarts sshd (killing its sessions) with flags passed
// to internal-sftp, which then refuses requests with real
// SSH_FX_PERMISSION_DENIED answers: "-R" refuses every request that
// would change the file system, and "-P", "remove,rename" refuses the
// requests named (sftp-server -Q requests lists them). No flags restore
// the default, which refuses nothing. A flag must be one word without
// spaces.
func (s *Server) SetSFTPFlags(t testing.TB, flags ...string) {
	t.Helper()
	for _, f := range flags {
		if f == "" || strings.ContainsAny(f, " \t\n\"'\\") {
			t.Fatalf("sshdtest: internal-sftp flag %q: want one word", f)
		}
	}
	s.sftpFlags = flags
	s.writeConfig(t)
	s.daemon.Restart(t)
}

// Restart stops sshd and starts it again on the same address with the
// same keys and configuration.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.daemon.Restart(t)
}
