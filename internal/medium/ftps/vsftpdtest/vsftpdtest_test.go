package vsftpdtest

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
)

// tlsConfig verifies s's certificate against its CA and resumes the
// control connection's TLS session on the data connections, which vsftpd's
// require_ssl_reuse demands (the cache is keyed by ServerName, the same
// for the control and data connections).
//
// Under TLS 1.3 the server sends session tickets after the handshake of
// every data connection, which an upload never reads; closing a socket
// with unread input sends a TCP reset, and vsftpd loses the upload's tail
// ("426 Failure reading network stream"). dial's data connections
// therefore end with a drain (drainingConn).
func tlsConfig(t *testing.T, s *Server) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", s.CAFile)
	}
	return &tls.Config{
		RootCAs:            pool,
		ServerName:         "127.0.0.1",
		MinVersion:         tls.VersionTLS12,
		ClientSessionCache: tls.NewLRUClientSessionCache(4),
	}
}

func password(t *testing.T, s *Server) string {
	t.Helper()
	b, err := os.ReadFile(s.PasswordFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(s.PasswordFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("password file %s: %v, %v; want mode 0600", s.PasswordFile, fi, err)
	}
	return strings.TrimSuffix(string(b), "\n")
}

// dial logs in to s, over explicit TLS when cfg is not nil.
func dial(t *testing.T, s *Server, cfg *tls.Config) (*ftp.ServerConn, error) {
	t.Helper()
	opts := []ftp.DialOption{ftp.DialWithTimeout(5 * time.Second)}
	if cfg != nil {
		// With a dial function the library leaves the data connections'
		// TLS to it; the first connection is the control connection,
		// which AUTH TLS upgrades.
		first := true
		opts = append(opts, ftp.DialWithDialFunc(func(network, addr string) (net.Conn, error) {
			c, err := net.DialTimeout(network, addr, 5*time.Second)
			if err != nil || first {
				first = false
				return c, err
			}
			return drainingConn{tls.Client(c, cfg)}, nil
		}))
	}
	if cfg != nil {
		opts = append(opts, ftp.DialWithExplicitTLS(cfg))
	}
	c, err := ftp.Dial(s.Addr, opts...)
	if err != nil {
		return nil, err
	}
	if err := c.Login(s.User, password(t, s)); err != nil {
		c.Quit()
		return nil, err
	}
	return c, nil
}

// drainingConn is a TLS data connection that closes cleanly: it sends
// close_notify, half-closes the TCP connection, and reads what the server
// still sends (TLS 1.3 session tickets, its close_notify) before closing,
// so that no unread input turns the close into a reset.
type drainingConn struct{ *tls.Conn }

func (c drainingConn) Close() error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.CloseWrite(); err == nil {
		if tc, ok := c.NetConn().(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		_, _ = io.Copy(io.Discard, c.Conn)
	}
	return c.Conn.Close()
}

func mustDial(t *testing.T, s *Server, cfg *tls.Config) *ftp.ServerConn {
	t.Helper()
	c, err := dial(t, s, cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Quit() })
	return c
}

func retr(t *testing.T, c *ftp.ServerConn, path string) []byte {
	t.Helper()
	r, err := c.Retr(path)
	if err != nil {
		t.Fatalf("retr %s: %v", path, err)
	}
	b, err := io.ReadAll(r)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("retr %s: %v", path, err)
	}
	return b
}

func TestServer_Drop(t *testing.T) {
	s := Start(t)
	remote, local := s.Drop(t, "requests")
	if remote != "/requests" {
		t.Fatalf("remote %q, want /requests", remote)
	}
	if fi, err := os.Stat(local); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("local drop %s: %v, %v; want a 0700 directory", local, fi, err)
	}
	c := mustDial(t, s, tlsConfig(t, s))

	// Stored remotely under a temp name, renamed, seen locally.
	want := bytes.Repeat([]byte("envelope bytes\n"), 10000)
	if err := c.Stor(remote+"/.a.fxe.tmp-0123456789abcdef", bytes.NewReader(want)); err != nil {
		t.Fatalf("stor: %v", err)
	}
	if err := c.Rename(remote+"/.a.fxe.tmp-0123456789abcdef", remote+"/a.fxe"); err != nil {
		t.Fatalf("rename: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(local, "a.fxe"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("local copy: %d bytes, %v; want %d", len(got), err, len(want))
	}
	fi, err := os.Stat(filepath.Join(local, "a.fxe"))
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("uploaded file: %v, %v; want mode 0660 (local_umask 007)", fi, err)
	}
	// Written locally, listed and read remotely.
	if err := os.WriteFile(filepath.Join(local, "b.fxe"), []byte("result\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	names, err := c.NameList(remote)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if strings.Join(names, " ") != "/requests/a.fxe /requests/b.fxe" && strings.Join(names, " ") != "a.fxe b.fxe" {
		t.Fatalf("list %s: %q, want a.fxe and b.fxe", remote, names)
	}
	if got := retr(t, c, remote+"/b.fxe"); string(got) != "result\n" {
		t.Fatalf("retr: %q", got)
	}
	// An empty file goes through too (the data connection's TLS
	// handshake happens without a write).
	if err := c.Stor(remote+"/empty", bytes.NewReader(nil)); err != nil {
		t.Fatalf("stor empty: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(local, "empty")); err != nil || fi.Size() != 0 {
		t.Fatalf("empty file: %v, %v", fi, err)
	}
	for _, name := range []string{"a.fxe", "b.fxe", "empty"} {
		if err := c.Delete(remote + "/" + name); err != nil {
			t.Fatalf("delete %s: %v", name, err)
		}
		if _, err := os.Stat(filepath.Join(local, name)); !os.IsNotExist(err) {
			t.Fatalf("%s after DELE: %v", name, err)
		}
	}
	// Chrooted: the drops are all the client sees.
	entries, err := c.List("/")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name != "requests" {
		var ns []string
		for _, e := range entries {
			ns = append(ns, e.Name)
		}
		t.Fatalf("client sees %v at /, want only the drop [requests]", ns)
	}
	if err := c.ChangeDir("/.."); err == nil {
		if dir, _ := c.CurrentDir(); dir != "/" {
			t.Fatalf("left the chroot: %s", dir)
		}
	}
}

func TestServer_Certificate(t *testing.T) {
	s := Start(t)
	cfg := tlsConfig(t, s)
	var leaf []byte
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		leaf = cs.PeerCertificates[0].Raw
		return nil
	}
	mustDial(t, s, cfg)
	sum := sha256.Sum256(leaf)
	if got := hex.EncodeToString(sum[:]); got != s.CertSHA256 {
		t.Fatalf("server certificate SHA-256 %s, want CertSHA256 %s", got, s.CertSHA256)
	}
	// Verified for localhost too.
	cfg = tlsConfig(t, s)
	cfg.ServerName = "localhost"
	mustDial(t, s, cfg)

	// Another server's CA does not verify it.
	other := Start(t)
	if _, err := dial(t, s, tlsConfig(t, other)); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("dial with another CA: %v; want a certificate error", err)
	}
}

// TestServer_TLSRequired checks that the TLS server refuses a plain login
// and a data connection that does not resume the control session.
func TestServer_TLSRequired(t *testing.T) {
	s := Start(t)
	if c, err := dial(t, s, nil); err == nil {
		c.Quit()
		t.Fatal("plain login accepted by the TLS server")
	} else if !strings.Contains(err.Error(), "530") && !strings.Contains(err.Error(), "encryption") {
		t.Logf("plain login refused: %v", err)
	}

	remote, _ := s.Drop(t, "d")
	cfg := tlsConfig(t, s)
	cfg.ClientSessionCache = nil // no session resumption
	c := mustDial(t, s, cfg)
	if err := c.Stor(remote+"/x", strings.NewReader("x")); err == nil {
		t.Fatal("data connection without TLS session reuse accepted")
	}
}

func TestStartPlain(t *testing.T) {
	s := StartPlain(t)
	if s.CAFile != "" || s.CertSHA256 != "" {
		t.Fatalf("plain server has a certificate: %q %q", s.CAFile, s.CertSHA256)
	}
	remote, local := s.Drop(t, "results")
	c := mustDial(t, s, nil)
	if err := c.Stor(remote+"/r.fxe", strings.NewReader("plain")); err != nil {
		t.Fatalf("stor: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(local, "r.fxe")); err != nil || string(b) != "plain" {
		t.Fatalf("local copy: %q, %v", b, err)
	}
	// A wrong password is refused.
	c2, err := ftp.Dial(s.Addr, ftp.DialWithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Quit()
	if err := c2.Login(s.User, "wrong"); err == nil {
		t.Fatal("wrong password accepted")
	}
}

func TestServer_Restart(t *testing.T) {
	s := Start(t)
	remote, local := s.Drop(t, "results")
	cfg := tlsConfig(t, s)
	c := mustDial(t, s, cfg)
	if err := c.Stor(remote+"/before.fxe", strings.NewReader("1")); err != nil {
		t.Fatal(err)
	}

	s.Restart(t)
	// The old session died with the server.
	if err := c.NoOp(); err == nil {
		t.Fatal("session survived the restart")
	}
	c2 := mustDial(t, s, cfg)
	if err := c2.Stor(remote+"/after.fxe", strings.NewReader("2")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"before.fxe", "after.fxe"} {
		if _, err := os.Stat(filepath.Join(local, name)); err != nil {
			t.Fatal(err)
		}
	}

	s.Stop(t)
	s.Stop(t) // idempotent
	if c, err := dial(t, s, cfg); err == nil {
		c.Quit()
		t.Fatal("dialled a stopped server")
	}
	s.Restart(t)
	mustDial(t, s, tlsConfig(t, s))
}
