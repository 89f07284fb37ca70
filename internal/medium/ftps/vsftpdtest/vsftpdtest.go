// Package vsftpdtest runs a real vsftpd on 127.0.0.1 for one test, so that
// the FTPS medium is tested against the boundary server it meets in
// production rather than against an imitation. It is an ordinary package
// imported only from _test.go files.
//
// # The server
//
// [Start] generates a fresh certificate authority and a server certificate
// it issued for 127.0.0.1 and localhost, writes a vsftpd.conf that forces
// explicit TLS for the login and for every data connection, allows passive
// mode only (on a port range of its own), no anonymous login, and chroots
// the session to a root-owned directory that holds only the drop
// directories, then runs /usr/sbin/vsftpd in the foreground on a free
// port and waits until it answers "220". [StartPlain] does the same
// without TLS, for the medium's insecure_plain_ftp mode.
//
// # Behind a proxy
//
// The passive range is Server.PasvMin..PasvMax on 127.0.0.1. A test that
// puts a TCP proxy in front of the server listens on another loopback
// address (such as 127.0.0.2) on a port for the control connection and
// on every port of that range, forwarding each to 127.0.0.1: the FTP
// client dials the data connections to the host of its control
// connection (EPSV names only a port; the address in a PASV reply is not
// trusted), so they cross the proxy too, and vsftpd sees both come from
// 127.0.0.1, as its pasv_promiscuous=NO requires. pasv_address stays
// 127.0.0.1.
//
// # Authentication
//
// vsftpd authenticates through PAM only, so the login is a real system
// account with a real password, checked by pam_unix:
//
//   - Start creates, once, the system user ferrytest (useradd --system
//     --no-create-home --home-dir / --shell /usr/sbin/nologin) and gives
//     it a fresh random password (chpasswd), kept in
//     /run/ferry-vsftpdtest/password (root only) for every server started
//     until the next reboot. Test processes running at once share it: a
//     file lock orders them, so none changes the password under another's
//     feet. Server.User is ferrytest, the only user in the server's
//     user_list (userlist_deny=NO).
//   - The PAM service /etc/pam.d/ferry-vsftpdtest (written idempotently,
//     named by pam_service_name) holds pam_unix for auth and account and
//     nothing else, so the nologin shell, which is not in /etc/shells, is
//     no obstacle. (A password per server through pam_exec was tried: the
//     login hangs, vsftpd's privileged process blocked in wait4.)
//
// All of this needs root: a test that does not run as root fails and says
// so.
//
// # Missing vsftpd
//
// A test that cannot find its server fails; it does not skip. Install the
// vsftpd package (apt-get install vsftpd).
package vsftpdtest

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/medium/internal/daemontest"
)

// VsftpdPath is the vsftpd the tests run.
const VsftpdPath = "/usr/sbin/vsftpd"

// SystemUser is the system account the tests log in as.
const SystemUser = "ferrytest"

// Authentication files shared by every server on the machine.
const (
	pamService   = "ferry-vsftpdtest"
	pamFile      = "/etc/pam.d/" + pamService
	authDir      = "/run/ferry-vsftpdtest"
	passwordFile = authDir + "/password" // SystemUser's password, set once per boot
	lockFile     = authDir + "/lock"
)

// pasvPorts is the width of each server's passive port range: enough for
// every data connection a test opens at once.
const pasvPorts = 32

// Server is a running vsftpd serving FTP (with explicit TLS unless started
// with StartPlain) on 127.0.0.1.
type Server struct {
	Addr         string // 127.0.0.1:port
	User         string // the login name (SystemUser)
	PasswordFile string // the password, one line, 0600
	CAFile       string // PEM of the self-signed CA that issued the server certificate; "" when plain
	CertSHA256   string // hex SHA-256 of the server's leaf certificate (DER); "" when plain
	// PasvMin and PasvMax bound the ports, on 127.0.0.1, that vsftpd
	// listens on for passive data connections: a proxy in front of the
	// server forwards each of them (see mediumtest.StartProxyRoutes).
	PasvMin, PasvMax int

	base     string // holds etc/ (config, certificate, logs), empty/ and root/
	etc      string
	chroot   string // the session's root: root-owned, holds the drops
	config   string
	logFile  string // vsftpd_log_file
	xferLog  string
	uid, gid int // of SystemUser

	daemon *daemontest.Daemon
}

// Start runs a fresh vsftpd with TLS for t and stops it when t ends. It
// fails t (it never skips) if vsftpd is missing, the test is not root, or
// the server does not start.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, true)
}

// StartPlain is Start without TLS: plain FTP, as the medium allows only
// with insecure_plain_ftp on a closed network.
func StartPlain(t testing.TB) *Server {
	t.Helper()
	return start(t, false)
}

func start(t testing.TB, tls bool) *Server {
	t.Helper()
	if _, err := os.Stat(VsftpdPath); err != nil {
		t.Fatalf("vsftpdtest: %s not found (%v): install vsftpd (apt-get install vsftpd)", VsftpdPath, err)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("vsftpdtest: the vsftpd tests need root (vsftpd authenticates through PAM, chroots and switches to the %s user); run them as root", SystemUser)
	}
	uid, gid, password, err := ensureLogin()
	if err != nil {
		t.Fatalf("vsftpdtest: %v", err)
	}
	s := &Server{User: SystemUser, uid: uid, gid: gid}

	// vsftpd refuses a chroot the user can write to, so the session root
	// is root-owned and the drops inside it belong to the user.
	// The base is not a t.TempDir: vsftpd changes into local_root as the
	// logged-in user, who must be able to walk the path to it.
	s.base, err = os.MkdirTemp("", "ferry-vsftpdtest-")
	if err != nil {
		t.Fatalf("vsftpdtest: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(s.base) })
	if err := os.Chmod(s.base, 0o711); err != nil {
		t.Fatalf("vsftpdtest: %v", err)
	}
	s.etc = filepath.Join(s.base, "etc")
	s.chroot = filepath.Join(s.base, "root")
	empty := filepath.Join(s.base, "empty") // secure_chroot_dir: empty, not writable by the user
	daemontest.Mkdirs(t, "vsftpdtest",
		daemontest.Dir{Path: s.etc, Mode: 0o700}, daemontest.Dir{Path: s.chroot, Mode: 0o755}, daemontest.Dir{Path: empty, Mode: 0o555})

	clientDir := t.TempDir()
	s.PasswordFile = filepath.Join(clientDir, "password")
	if err := os.WriteFile(s.PasswordFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatalf("vsftpdtest: %v", err)
	}

	var certFile, keyFile string
	if tls {
		certFile, keyFile = filepath.Join(s.etc, "server.pem"), filepath.Join(s.etc, "server.key")
		s.CAFile = filepath.Join(clientDir, "ca.pem")
		s.CertSHA256 = writeCertificates(t, s.CAFile, certFile, keyFile)
	}

	s.Addr = daemontest.FreeAddr(t, "vsftpdtest")
	s.PasvMin, s.PasvMax = pasvRange(t)
	s.logFile = filepath.Join(s.etc, "vsftpd.log")
	s.xferLog = filepath.Join(s.etc, "xferlog")
	s.config = filepath.Join(s.etc, "vsftpd.conf")
	if err := os.WriteFile(filepath.Join(s.etc, "user_list"), []byte(SystemUser+"\n"), 0o600); err != nil {
		t.Fatalf("vsftpdtest: %v", err)
	}
	conf := s.vsftpdConfig(empty, s.PasvMin, s.PasvMax, certFile, keyFile)
	if err := os.WriteFile(s.config, []byte(conf), 0o600); err != nil {
		t.Fatalf("vsftpdtest: %v", err)
	}
	s.daemon = &daemontest.Daemon{
		Harness: "vsftpdtest",
		Name:    "vsftpd",
		Path:    VsftpdPath,
		Args:    []string{s.config},
		Addr:    s.Addr,
		Ready:   greeting,
		LogFile: s.logFile,
	}
	s.daemon.Start(t)
	return s
}

// vsftpdConfig is the server's whole configuration: the drop accounts'
// configuration of docs/media.md, on test paths and ports.
func (s *Server) vsftpdConfig(empty string, pasvMin, pasvMax int, certFile, keyFile string) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	_, port, _ := net.SplitHostPort(s.Addr)
	line("# written by vsftpdtest for one test")
	line("listen=YES")
	line("listen_ipv6=NO")
	line("listen_address=127.0.0.1")
	line("listen_port=%s", port)
	line("background=NO")
	line("ftpd_banner=ferry vsftpdtest")
	// Reconnect tests open many connections in a row and at once.
	line("max_clients=0")
	line("max_per_ip=0")
	line("delay_failed_login=0")

	line("anonymous_enable=NO")
	line("local_enable=YES")
	line("write_enable=YES")
	line("local_umask=007")
	line("pam_service_name=%s", pamService)
	line("userlist_enable=YES")
	line("userlist_deny=NO") // only the users listed may log in
	line("userlist_file=%s", filepath.Join(s.etc, "user_list"))
	// The system user's shell is nologin, which is not in /etc/shells.
	line("check_shell=NO")
	line("local_root=%s", s.chroot)
	line("chroot_local_user=YES")
	line("secure_chroot_dir=%s", empty)
	// vsftpd 3.0.3's seccomp filter predates the system calls a current
	// glibc makes, and some container runtimes refuse to stack another
	// filter: either way the session dies with "500 OOPS: child died".
	// The privilege separation and chroot above stay in force.
	line("seccomp_sandbox=NO")

	// Passive mode only, on a range of our own, announcing the loopback
	// address.
	line("port_enable=NO")
	line("connect_from_port_20=NO")
	line("pasv_enable=YES")
	line("pasv_min_port=%d", pasvMin)
	line("pasv_max_port=%d", pasvMax)
	line("pasv_address=127.0.0.1")

	line("syslog_enable=NO")
	line("xferlog_enable=YES")
	line("xferlog_file=%s", s.xferLog)
	line("dual_log_enable=YES")
	line("vsftpd_log_file=%s", s.logFile)
	line("log_ftp_protocol=YES") // vsftpd logs PASS as "PASS <password>"

	if certFile == "" {
		line("ssl_enable=NO")
		return b.String()
	}
	line("ssl_enable=YES")
	// The "rsa_" options load any key OpenSSL reads; ours is ECDSA P-256.
	line("rsa_cert_file=%s", certFile)
	line("rsa_private_key_file=%s", keyFile)
	// vsftpd 3.0.3's default cipher list is DES-CBC3-SHA alone, which
	// OpenSSL 3 refuses. vsftpd 3.0.3 has no ssl_tlsv1_2 option: TLS 1.2
	// and 1.3 come with ssl_tlsv1, and the client refuses anything older.
	line("ssl_ciphers=ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305")
	line("ssl_sslv2=NO")
	line("ssl_sslv3=NO")
	line("ssl_tlsv1=YES")
	line("allow_anon_ssl=NO")
	line("force_local_logins_ssl=YES")
	line("force_local_data_ssl=YES")
	// Every data connection must resume the control connection's TLS
	// session, so that nobody but the client that logged in can open
	// one. The medium's client resumes it (a ClientSessionCache shared
	// by the control and data connections, with ServerName set).
	line("require_ssl_reuse=YES")
	// An upload that ends without the client's close_notify is truncated,
	// not complete; a download ends with ours.
	line("strict_ssl_read_eof=YES")
	line("strict_ssl_write_shutdown=YES")
	return b.String()
}

// ensureLogin makes sure SystemUser exists with the password in
// passwordFile and the PAM service is in place, and returns the user's ids
// and password. Test processes running at once take turns under a file
// lock: the first creates what is missing, the others find it.
func ensureLogin() (uid, gid int, password string, err error) {
	if err := os.MkdirAll(authDir, 0o700); err != nil {
		return 0, 0, "", fmt.Errorf("%s: %w", authDir, err)
	}
	if err := os.Chmod(authDir, 0o700); err != nil {
		return 0, 0, "", fmt.Errorf("%s: %w", authDir, err)
	}
	lock, err := os.OpenFile(lockFile, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return 0, 0, "", fmt.Errorf("lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return 0, 0, "", fmt.Errorf("lock %s: %w", lockFile, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	if err := writeIfChanged(pamFile, pamConfig, 0o644); err != nil {
		return 0, 0, "", err
	}
	u, err := user.Lookup(SystemUser)
	if err != nil {
		out, err := exec.Command("useradd", "--system", "--no-create-home", "--home-dir", "/",
			"--shell", "/usr/sbin/nologin", "--user-group", SystemUser).CombinedOutput()
		if err != nil {
			return 0, 0, "", fmt.Errorf("create the system user %s: %w: %s", SystemUser, err, bytes.TrimSpace(out))
		}
		os.Remove(passwordFile) // a new account has no password yet
		if u, err = user.Lookup(SystemUser); err != nil {
			return 0, 0, "", fmt.Errorf("system user %s: %w", SystemUser, err)
		}
	}
	// vsftpd changes to the home directory before the chroot (local_root),
	// so it must exist.
	if u.HomeDir != "/" {
		if out, err := exec.Command("usermod", "--home", "/", SystemUser).CombinedOutput(); err != nil {
			return 0, 0, "", fmt.Errorf("set the home of %s: %w: %s", SystemUser, err, bytes.TrimSpace(out))
		}
	}
	if uid, err = strconv.Atoi(u.Uid); err != nil {
		return 0, 0, "", fmt.Errorf("uid of %s: %w", SystemUser, err)
	}
	if gid, err = strconv.Atoi(u.Gid); err != nil {
		return 0, 0, "", fmt.Errorf("gid of %s: %w", SystemUser, err)
	}
	if b, err := os.ReadFile(passwordFile); err == nil && len(bytes.TrimSpace(b)) > 0 {
		return uid, gid, string(bytes.TrimSpace(b)), nil
	}
	pw := make([]byte, 16)
	if _, err := rand.Read(pw); err != nil {
		return 0, 0, "", err
	}
	password = hex.EncodeToString(pw)
	cmd := exec.Command("chpasswd")
	cmd.Stdin = strings.NewReader(SystemUser + ":" + password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, 0, "", fmt.Errorf("set the password of %s: %w: %s", SystemUser, err, bytes.TrimSpace(out))
	}
	if err := os.WriteFile(passwordFile, []byte(password+"\n"), 0o600); err != nil {
		return 0, 0, "", fmt.Errorf("write %s: %w", passwordFile, err)
	}
	return uid, gid, password, nil
}

// pamConfig is the PAM service every server logs its user in with.
const pamConfig = `# written by ferry's vsftpdtest (a test harness) for its vsftpd servers
auth     required pam_unix.so
account  required pam_unix.so
session  required pam_permit.so
password required pam_deny.so
`

// writeIfChanged writes content to path atomically unless it is there
// already.
func writeIfChanged(path, content string, mode os.FileMode) error {
	if b, err := os.ReadFile(path); err == nil && string(b) == content {
		return nil
	}
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	if err := os.WriteFile(tmp, []byte(content), mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// writeCertificates writes a fresh CA certificate to caFile and a server
// certificate for 127.0.0.1 and localhost it issued, with its key, to
// certFile and keyFile. It returns the hex SHA-256 of the server
// certificate's DER.
func writeCertificates(t testing.TB, caFile, certFile, keyFile string) string {
	t.Helper()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("vsftpdtest: CA key: %v", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "ferry vsftpdtest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("vsftpdtest: CA certificate: %v", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatalf("vsftpdtest: CA certificate: %v", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("vsftpdtest: server key: %v", err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatalf("vsftpdtest: server certificate: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("vsftpdtest: server key: %v", err)
	}
	for _, f := range []struct {
		path, typ string
		der       []byte
	}{{caFile, "CERTIFICATE", caDER}, {certFile, "CERTIFICATE", leafDER}, {keyFile, "PRIVATE KEY", keyDER}} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
			t.Fatalf("vsftpdtest: %v", err)
		}
	}
	sum := sha256.Sum256(leafDER)
	return hex.EncodeToString(sum[:])
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatalf("vsftpdtest: serial: %v", err)
	}
	return n
}

// pasvRange picks pasvPorts consecutive ports below the kernel's ephemeral
// range (so outgoing connections do not take them) that are free now.
// Servers in other test processes may pick overlapping ranges: vsftpd
// tries another port of its range when one is taken.
func pasvRange(t testing.TB) (lo, hi int) {
	t.Helper()
	const first, last = 20000, 32000
	for range 50 {
		n, err := rand.Int(rand.Reader, big.NewInt(last-first-pasvPorts))
		if err != nil {
			t.Fatalf("vsftpdtest: %v", err)
		}
		lo = first + int(n.Int64())
		free := true
		for p := lo; p < lo+pasvPorts && free; p++ {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				free = false
				continue
			}
			l.Close()
		}
		if free {
			return lo, lo + pasvPorts - 1
		}
	}
	t.Fatalf("vsftpdtest: no free range of %d passive ports in %d-%d", pasvPorts, first, last)
	return 0, 0
}

// Drop creates the drop directory name (mode 0700, owned by the system
// user the logins map to) and returns the path the client names it by
// (such as /requests: the session is chrooted) and its local path.
func (s *Server) Drop(t testing.TB, name string) (remote, local string) {
	t.Helper()
	local = daemontest.Drop(t, "vsftpdtest", s.chroot, name, s.uid, s.gid)
	return "/" + name, local
}

// Stop stops vsftpd and kills its sessions, as a server crash or reboot
// would. It is idempotent.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.daemon.Stop(t)
}

// Restart stops vsftpd and starts it again on the same address with the
// same certificate, user and configuration.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.daemon.Restart(t)
}

// Log returns what vsftpd wrote so far: its output of every run, then its
// log file, which records every transfer, such as
//
//	FAIL UPLOAD: Client "127.0.0.1", "/d/.a.fxe.tmp-…", 65536 bytes, …
//
// and, with log_ftp_protocol, every command, the password included: a
// test logs it only when it fails.
func (s *Server) Log() string { return s.daemon.Log() }

// greeting connects to addr and reads the server's first reply, which
// must be 220.
func greeting(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read greeting: %w", err)
	}
	if !strings.HasPrefix(line, "220") {
		return fmt.Errorf("greeting %q, want 220", strings.TrimSpace(line))
	}
	_, _ = c.Write([]byte("QUIT\r\n"))
	return nil
}
