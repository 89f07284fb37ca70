package sftp

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	psftp "github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// readSigner reads an unencrypted private key from a file that only its
// owner may access.
func readSigner(file string) (ssh.Signer, error) {
	fi, err := os.Stat(file)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key file %s has mode %04o, want 0600 or stricter: %w", file, fi.Mode().Perm(), ErrKeyPermissions)
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			return nil, fmt.Errorf("key file %s is encrypted; an unencrypted key is required", file)
		}
		// The parse error says what is wrong with the format, never the
		// key's bytes.
		return nil, fmt.Errorf("key file %s: %w", file, err)
	}
	return signer, nil
}

// hostKeys builds the host key check for address from a known_hosts file,
// and the host key algorithms of the keys pinned for it. An address with
// no pinned key fails with ErrHostKey.
func hostKeys(file, address string) (ssh.HostKeyCallback, []string, error) {
	check, err := knownhosts.New(file)
	if err != nil {
		return nil, nil, fmt.Errorf("known_hosts: %w", err)
	}
	// The file's matching rules (hashed names, wildcards, ports) live in
	// knownhosts; ask it with a key that cannot be pinned, and it lists
	// the keys that are.
	_, probe, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("known_hosts: %w", err)
	}
	probeSigner, err := ssh.NewSignerFromKey(probe)
	if err != nil {
		return nil, nil, fmt.Errorf("known_hosts: %w", err)
	}
	err = check(address, &net.TCPAddr{IP: net.IPv4zero}, probeSigner.PublicKey())
	var keyErr *knownhosts.KeyError
	if !errors.As(err, &keyErr) {
		return nil, nil, fmt.Errorf("known_hosts %s: unexpected answer for a probe key: %v", file, err)
	}
	if len(keyErr.Want) == 0 {
		return nil, nil, fmt.Errorf("known_hosts %s pins no host key for %s: %w", file, knownhosts.Normalize(address), ErrHostKey)
	}
	var algos []string
	for _, k := range keyErr.Want {
		for _, a := range algorithmsFor(k.Key.Type()) {
			if !slices.Contains(algos, a) {
				algos = append(algos, a)
			}
		}
	}
	callback := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		if err := check(hostname, remote, key); err != nil {
			return fmt.Errorf("%w: %w", ErrHostKey, err)
		}
		return nil
	}
	return callback, algos, nil
}

// algorithmsFor returns the host key signature algorithms for a key type:
// an RSA key signs with SHA-2 (SHA-1 "ssh-rsa" signatures are not
// accepted), every other type with its own name.
func algorithmsFor(keyType string) []string {
	switch keyType {
	case ssh.KeyAlgoRSA:
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	case ssh.CertAlgoRSAv01:
		return []string{ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01}
	}
	return []string{keyType}
}

// conn is one SSH connection with its SFTP session and the goroutines that
// watch it.
type conn struct {
	ssh  *ssh.Client
	sftp *psftp.Client
	done chan struct{} // closed once the connection is closed

	once   sync.Once
	reason error // why it was closed; set before done is closed
	wg     sync.WaitGroup
}

// abort closes the connection, recording why; the first reason wins. It
// is safe from any goroutine, and makes every operation in flight fail.
func (cn *conn) abort(reason error) {
	cn.once.Do(func() {
		cn.reason = reason
		close(cn.done)
		_ = cn.ssh.Close()
	})
}

// dead reports whether the connection has been closed.
func (cn *conn) dead() bool {
	select {
	case <-cn.done:
		return true
	default:
		return false
	}
}

// release closes the connection and waits for its goroutines. It must not
// be called from those goroutines.
func (cn *conn) release(reason error) {
	cn.abort(reason)
	_ = cn.sftp.Close()
	cn.wg.Wait()
}

// keepalive sends keepalive@openssh.com every interval and closes the
// connection when a reply does not come within interval. Any reply,
// including a refusal, shows the server is alive.
func (cn *conn) keepalive(interval time.Duration) {
	defer cn.wg.Done()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-cn.done:
			return
		case <-tick.C:
		}
		timer := time.AfterFunc(interval, func() {
			cn.abort(fmt.Errorf("no keepalive reply within %v", interval))
		})
		_, _, err := cn.ssh.SendRequest("keepalive@openssh.com", true, nil)
		timer.Stop()
		if err != nil {
			cn.abort(fmt.Errorf("keepalive: %w", err))
			return
		}
	}
}

var (
	errClosed     = errors.New("sftp: closed")
	errDropped    = errors.New("connection dropped after a failure")
	errServerGone = errors.New("server closed the connection")
)

// client dials and keeps the connection of one Publisher or Receiver.
type client struct {
	cfg     Config
	signer  ssh.Signer
	hostKey ssh.HostKeyCallback
	algos   []string
	log     *slog.Logger

	// backoffMin and backoffMax shape the reconnect backoff; tests
	// shorten them.
	backoffMin, backoffMax time.Duration

	// dialing is a one-slot semaphore held by the caller that may dial,
	// so that concurrent callers share one new connection and can still
	// give up when their ctx ends.
	dialing chan struct{}
	// quit is closed by close, to end a backoff wait.
	quit chan struct{}

	mu       sync.Mutex
	cur      *conn
	failures int // consecutive connection failures, for the backoff
	closed   bool
}

func newClient(cfg Config) (*client, error) {
	signer, err := readSigner(cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	hostKey, algos, err := hostKeys(cfg.KnownHosts, cfg.Address)
	if err != nil {
		return nil, err
	}
	return &client{
		cfg:        cfg,
		signer:     signer,
		hostKey:    hostKey,
		algos:      algos,
		log:        cfg.Logger,
		backoffMin: backoffMin,
		backoffMax: backoffMax,
		dialing:    make(chan struct{}, 1),
		quit:       make(chan struct{}),
	}, nil
}

// get returns the live connection, dialing a new one if there is none,
// after the backoff that the failures so far call for.
func (c *client) get(ctx context.Context) (*conn, error) {
	select {
	case c.dialing <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.dialing }()
	c.mu.Lock()
	cn, closed := c.cur, c.closed
	c.mu.Unlock()
	if closed {
		return nil, errClosed
	}
	if cn != nil {
		if !cn.dead() {
			return cn, nil
		}
		c.drop(cn, cn.reason, true)
	}
	c.mu.Lock()
	failures := c.failures
	c.mu.Unlock()
	if d := c.backoff(failures); d > 0 {
		c.log.Debug("waiting before reconnecting", slog.String(logAddr, c.cfg.Address), slog.Duration(logDelay, d))
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-c.quit:
			t.Stop()
			return nil, errClosed
		}
	}
	cn, err := c.dial(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		c.mu.Lock()
		c.failures++
		c.mu.Unlock()
		return nil, fmt.Errorf("connect to %s: %w", c.cfg.Address, err)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		cn.release(errClosed)
		return nil, errClosed
	}
	c.cur = cn
	c.mu.Unlock()
	c.log.Info("connected to sftp server", slog.String(logAddr, c.cfg.Address))
	return cn, nil
}

// backoff returns the wait before a dial after n consecutive failures.
func (c *client) backoff(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	d := c.backoffMin
	for i := 1; i < n && d < c.backoffMax; i++ {
		d *= 2
	}
	d = min(d, c.backoffMax)
	// Jitter: anywhere in [d/2, d], so that clients that failed together
	// do not come back together.
	return d/2 + time.Duration(mrand.Int64N(int64(d/2)+1))
}

// dial opens a connection: TCP, SSH handshake with the pinned host key,
// SFTP session; all of it within DialTimeout or until ctx ends.
func (c *client) dial(ctx context.Context) (*conn, error) {
	d := net.Dialer{Timeout: c.cfg.DialTimeout}
	nc, err := d.DialContext(ctx, "tcp", c.cfg.Address)
	if err != nil {
		return nil, err
	}
	// ssh.ClientConfig.Timeout covers the TCP connect only; this deadline
	// covers the handshake and the SFTP start as well.
	_ = nc.SetDeadline(time.Now().Add(c.cfg.DialTimeout))
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	config := &ssh.ClientConfig{
		User:              c.cfg.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(c.signer)},
		HostKeyCallback:   c.hostKey,
		HostKeyAlgorithms: c.algos,
		Timeout:           c.cfg.DialTimeout,
	}
	sc, chans, reqs, err := ssh.NewClientConn(nc, c.cfg.Address, config)
	if err != nil {
		stop()
		_ = nc.Close()
		return nil, err
	}
	sshc := ssh.NewClient(sc, chans, reqs)
	sftpc, err := psftp.NewClient(sshc, psftp.UseConcurrentWrites(true), psftp.UseConcurrentReads(true))
	if err != nil {
		stop()
		_ = sshc.Close()
		return nil, fmt.Errorf("start sftp: %w", err)
	}
	if !stop() {
		// ctx ended during the dial: the deadline is in the past.
		_ = sshc.Close()
		_ = sftpc.Close()
		return nil, ctx.Err()
	}
	_ = nc.SetDeadline(time.Time{})
	cn := &conn{ssh: sshc, sftp: sftpc, done: make(chan struct{})}
	cn.wg.Add(2)
	go cn.keepalive(c.cfg.Keepalive)
	go func() {
		defer cn.wg.Done()
		err := sshc.Wait()
		if err == nil {
			err = errServerGone
		}
		cn.abort(err)
	}()
	return cn, nil
}

// run runs op, one SFTP operation on cn, within OpTimeout: an overrun
// closes the connection, which fails op. With abortOnCancel, the end of
// ctx closes the connection too (for a connection only this caller uses).
// A failure that is not an answer of the server drops the connection.
func (c *client) run(ctx context.Context, cn *conn, what string, abortOnCancel bool, op func(*psftp.Client) error) error {
	timer := time.AfterFunc(c.cfg.OpTimeout, func() {
		cn.abort(fmt.Errorf("%s: no answer within %v", what, c.cfg.OpTimeout))
	})
	if abortOnCancel {
		stop := context.AfterFunc(ctx, func() { cn.abort(context.Cause(ctx)) })
		defer stop()
	}
	err := op(cn.sftp)
	timer.Stop()
	if err == nil {
		c.mu.Lock()
		c.failures = 0
		c.mu.Unlock()
		return nil
	}
	if !cn.dead() && isAnswer(err) {
		return err
	}
	// A connection this caller closed because its ctx ended is no failure
	// of the server.
	c.drop(cn, err, !(abortOnCancel && ctx.Err() != nil))
	if cn.reason != nil && cn.reason != err {
		return fmt.Errorf("%w (connection closed: %v)", err, cn.reason)
	}
	return err
}

// isAnswer reports whether err is the server's answer to a request (the
// connection works) rather than a failure of the connection. pkg/sftp
// turns the status codes "no such file" and "permission denied" into
// fs.ErrNotExist and fs.ErrPermission and keeps the others as
// *StatusError. (Its io.EOF is no sure answer: a closed channel gives it
// too, so the operations here turn the end of a file into a count.)
func isAnswer(err error) bool {
	var st *psftp.StatusError
	return errors.As(err, &st) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission)
}

// drop closes cn and forgets it, if it is the current connection; a
// failure counts towards the backoff and is logged.
func (c *client) drop(cn *conn, cause error, failure bool) {
	c.mu.Lock()
	mine := c.cur == cn
	if mine {
		c.cur = nil
		if failure {
			c.failures++
		}
	}
	c.mu.Unlock()
	if cause == nil {
		cause = errDropped
	}
	if mine && failure {
		c.log.Warn("sftp connection lost", slog.String(logAddr, c.cfg.Address), slog.String(logError, cause.Error()))
	}
	cn.release(errDropped)
}

// close closes the connection; later calls fail. A dial in progress
// finishes and closes what it opened.
func (c *client) close() error {
	c.mu.Lock()
	cn := c.cur
	wasClosed := c.closed
	c.cur, c.closed = nil, true
	c.mu.Unlock()
	if !wasClosed {
		close(c.quit)
	}
	if cn != nil {
		cn.release(errClosed)
	}
	return nil
}
