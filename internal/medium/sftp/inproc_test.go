package sftp

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	psftp "github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/mediumtest"
)

// testServer is an SSH server on 127.0.0.1 serving the "sftp" subsystem
// with pkg/sftp's server over the real file system, for one test. The
// drop directory is a t.TempDir, named by its absolute path.
type testServer struct {
	addr       string
	hostKeys   []ssh.Signer
	keyFile    string // the client's private key, 0600
	knownHosts string // pins hostKeys[0] for addr

	cfg *ssh.ServerConfig

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
	frozen atomic.Bool // the server reads nothing while set
	// cutRemoves, while above zero, makes the server close the connection
	// instead of taking in a remove request, counting down.
	cutRemoves atomic.Int32
	// readOnly makes new sessions run pkg/sftp's server with its ReadOnly
	// option: every write is refused with SSH_FX_PERMISSION_DENIED. A
	// session keeps the mode it started with.
	readOnly atomic.Bool
}

// sshFxpRemove is the SFTP packet type of a remove request
// (draft-ietf-secsh-filexfer-02, section 3).
const sshFxpRemove = 13

// watchedChannel is an sftp session channel as the server reads it. It
// follows the packet framing (a uint32 length, then the type byte) and,
// while the server's cutRemoves is above zero, closes the connection
// instead of passing on a remove request: a link lost just as the
// request was sent.
type watchedChannel struct {
	ssh.Channel
	s    *testServer
	nc   net.Conn
	hdr  []byte // the current packet's length and type bytes read so far
	left int    // bytes of the current packet's body still to pass
}

func (c *watchedChannel) Read(p []byte) (int, error) {
	n, err := c.Channel.Read(p)
	for b := p[:n]; len(b) > 0; {
		if c.left > 0 {
			k := min(c.left, len(b))
			c.left, b = c.left-k, b[k:]
			continue
		}
		c.hdr, b = append(c.hdr, b[0]), b[1:]
		if len(c.hdr) < 5 {
			continue
		}
		length := int(c.hdr[0])<<24 | int(c.hdr[1])<<16 | int(c.hdr[2])<<8 | int(c.hdr[3])
		typ := c.hdr[4]
		c.hdr, c.left = c.hdr[:0], length-1
		if typ == sshFxpRemove && c.s.cutRemoves.Add(-1) >= 0 {
			c.nc.Close()
			return 0, io.EOF
		}
	}
	return n, err
}

// freezeConn is a server connection that stops reading while the server
// is frozen, as a black-holed link does.
type freezeConn struct {
	net.Conn
	s *testServer
}

func (c freezeConn) Read(p []byte) (int, error) {
	for c.s.frozen.Load() {
		time.Sleep(2 * time.Millisecond)
	}
	return c.Conn.Read(p)
}

// freeze makes the server stop or resume reading from its connections.
func (s *testServer) freeze(on bool) { s.frozen.Store(on) }

// newSigner returns a fresh ed25519 signer.
func newSigner(t testing.TB) (ssh.Signer, ed25519.PrivateKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, priv
}

// newECDSASigner returns a fresh ecdsa-sha2-nistp256 signer.
func newECDSASigner(t testing.TB) ssh.Signer {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startServer starts a server with the given host keys (one fresh ed25519
// key if none) and stops it at cleanup.
func startServer(t testing.TB, hostKeys ...ssh.Signer) *testServer {
	t.Helper()
	if len(hostKeys) == 0 {
		k, _ := newSigner(t)
		hostKeys = []ssh.Signer{k}
	}
	dir := t.TempDir()
	clientSigner, clientPriv := newSigner(t)
	block, err := ssh.MarshalPrivateKey(clientPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{hostKeys: hostKeys, keyFile: filepath.Join(dir, "id_ed25519"), conns: map[net.Conn]bool{}}
	if err := os.WriteFile(s.keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	authorized := string(clientSigner.PublicKey().Marshal())
	s.cfg = &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) == authorized {
				return nil, nil
			}
			return nil, errors.New("key not authorized")
		},
	}
	for _, k := range hostKeys {
		s.cfg.AddHostKey(k)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.knownHosts = filepath.Join(dir, "known_hosts")
	s.pin(t, hostKeys[0].PublicKey())
	s.serve(ln)
	t.Cleanup(s.stop)
	return s
}

// pin rewrites the known_hosts file to pin keys for the server's address.
func (s *testServer) pin(t testing.TB, keys ...ssh.PublicKey) {
	t.Helper()
	var text string
	for _, k := range keys {
		text += knownhosts.Line([]string{knownhosts.Normalize(s.addr)}, k) + "\n"
	}
	if err := os.WriteFile(s.knownHosts, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (s *testServer) serve(ln net.Listener) {
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			if s.ln != ln {
				s.mu.Unlock()
				nc.Close()
				return
			}
			s.conns[nc] = true
			s.wg.Add(1)
			s.mu.Unlock()
			go s.serveConn(freezeConn{nc, s})
		}
	}()
}

func (s *testServer) serveConn(nc net.Conn) {
	raw := nc
	defer s.wg.Done()
	defer func() {
		nc.Close()
		s.mu.Lock()
		delete(s.conns, nc.(freezeConn).Conn)
		s.mu.Unlock()
	}()
	sc, chans, reqs, err := ssh.NewServerConn(nc, s.cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { ssh.DiscardRequests(reqs) })
	for nch := range chans {
		if nch.ChannelType() != "session" {
			_ = nch.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			continue
		}
		wg.Go(func() {
			for req := range creqs {
				if req.Type != "subsystem" || len(req.Payload) < 4 || string(req.Payload[4:]) != "sftp" {
					_ = req.Reply(false, nil)
					continue
				}
				_ = req.Reply(true, nil)
				var opts []psftp.ServerOption
				if s.readOnly.Load() {
					opts = append(opts, psftp.ReadOnly())
				}
				wg.Go(func() {
					defer ch.Close()
					srv, err := psftp.NewServer(&watchedChannel{Channel: ch, s: s, nc: raw}, opts...)
					if err != nil {
						return
					}
					_ = srv.Serve()
					_ = srv.Close()
				})
			}
		})
	}
}

// stop closes the listener and every connection (a crash of the server)
// and waits for the server's goroutines.
func (s *testServer) stop() {
	s.freeze(false)
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	for nc := range s.conns {
		nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// cut closes every connection but keeps listening.
func (s *testServer) cut() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for nc := range s.conns {
		nc.Close()
	}
}

// restart starts listening again on the same address after stop.
func (s *testServer) restart(t testing.TB) {
	t.Helper()
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen again on %s: %v", s.addr, err)
	}
	s.serve(ln)
}

// env is one SFTP medium over a testServer: a drop directory, an inbox
// and the config that reaches them.
type env struct {
	srv  *testServer
	drop string // the drop directory, local path = remote path
	in   *medium.Inbox
	cfg  Config
}

type envOptions struct {
	maxSize int64
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	srv := startServer(t)
	return newEnvOn(t, srv, o)
}

func newEnvOn(t testing.TB, srv *testServer, o envOptions) *env {
	t.Helper()
	drop := t.TempDir()
	e := newEnvAt(t, srv.addr, "ferry", srv.keyFile, srv.knownHosts, drop, drop, o)
	e.srv = srv
	return e
}

// newEnvAt makes an env for any server: remote is the drop directory as
// the server names it, local the same directory on this machine.
func newEnvAt(t testing.TB, addr, user, keyFile, knownHosts, remote, local string, o envOptions) *env {
	t.Helper()
	e := &env{drop: local}
	base := t.TempDir()
	var err error
	e.in, err = medium.OpenInbox(medium.InboxConfig{Dir: filepath.Join(base, "inbox"), QuarantineDir: filepath.Join(base, "quarantine"),
		MaxFileSize: o.maxSize, Logger: mediumtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	e.cfg = Config{
		Address:     addr,
		User:        user,
		KeyFile:     keyFile,
		KnownHosts:  knownHosts,
		Dir:         remote,
		DialTimeout: 5 * time.Second,
		OpTimeout:   5 * time.Second,
		Keepalive:   time.Second,
		Rescan:      20 * time.Millisecond,
		Logger:      mediumtest.Logger(t),
	}
	return e
}

// fastBackoff makes reconnects quick for tests.
func fastBackoff(c *client) {
	c.rc.SetBackoff(time.Millisecond, 20*time.Millisecond)
}

func (e *env) publisher(t testing.TB) *Publisher {
	t.Helper()
	p, err := NewPublisher(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	fastBackoff(p.c)
	t.Cleanup(func() { p.Close() })
	return p
}

func (e *env) receiver(t testing.TB) *Receiver {
	t.Helper()
	r, err := NewReceiver(e.cfg, e.in)
	if err != nil {
		t.Fatal(err)
	}
	fastBackoff(r.c)
	t.Cleanup(func() { r.Close() })
	return r
}
