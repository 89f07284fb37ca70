package sftp

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	psftp "github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/remote"
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
	*remote.Lifetime
	ssh  *ssh.Client
	sftp *psftp.Client
	wg   sync.WaitGroup
}

// Abort implements remote.Link. It makes every operation in flight fail.
func (cn *conn) Abort(reason error) {
	cn.End(reason, func() { _ = cn.ssh.Close() })
}

// Release implements remote.Link: it closes the connection and waits for
// its goroutines.
func (cn *conn) Release(reason error) {
	cn.Abort(reason)
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
		case <-cn.Done():
			return
		case <-tick.C:
		}
		timer := time.AfterFunc(interval, func() {
			cn.Abort(fmt.Errorf("no keepalive reply within %v", interval))
		})
		_, _, err := cn.ssh.SendRequest("keepalive@openssh.com", true, nil)
		timer.Stop()
		if err != nil {
			cn.Abort(fmt.Errorf("keepalive: %w", err))
			return
		}
	}
}

var (
	errClosed     = errors.New("sftp: closed")
	errServerGone = errors.New("server closed the connection")
)

// client dials and keeps the connection of one Publisher or Receiver.
type client struct {
	cfg     Config
	signer  ssh.Signer
	hostKey ssh.HostKeyCallback
	algos   []string

	// rc keeps the connection; its turn is held by the caller that may
	// dial, so that concurrent callers share one new connection and can
	// still give up when their ctx ends.
	rc *remote.Reconnector[*conn]
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
	c := &client{cfg: cfg, signer: signer, hostKey: hostKey, algos: algos}
	c.rc = remote.NewReconnector(remote.ReconnectorConfig[*conn]{
		Address:   cfg.Address,
		Protocol:  "sftp",
		OpTimeout: cfg.OpTimeout,
		Dial:      c.dial,
		IsAnswer:  isAnswer,
		Closed:    errClosed,
		Logger:    cfg.Logger,
	})
	return c, nil
}

// open checks cfg, fills in its defaults and builds its client, for
// NewPublisher and NewReceiver.
func open(cfg Config) (Config, *client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return cfg, nil, err
	}
	c, err := newClient(cfg)
	return cfg, c, err
}

// get returns the live connection, dialing a new one if there is none,
// after the backoff that the failures so far call for.
func (c *client) get(ctx context.Context) (*conn, error) {
	if err := c.rc.Lock(ctx); err != nil {
		return nil, err
	}
	defer c.rc.Unlock()
	return c.rc.Get(ctx)
}

// close closes the connection; later calls fail. A dial in progress
// finishes and closes what it opened.
func (c *client) close() error { return c.rc.Close(nil) }

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
	cn := &conn{Lifetime: remote.NewLifetime(), ssh: sshc, sftp: sftpc}
	cn.wg.Add(2)
	go cn.keepalive(c.cfg.Keepalive)
	go func() {
		defer cn.wg.Done()
		err := sshc.Wait()
		if err == nil {
			err = errServerGone
		}
		cn.Abort(err)
	}()
	return cn, nil
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

// session adapts a client to remote.Client: the remote core's operations
// become SFTP requests, each within OpTimeout.
type session struct {
	c *client
	// exclusive: the connection is this caller's alone (a receiver), so
	// the end of an operation's ctx closes it at once.
	exclusive bool
	// noHardlink, when set and true, makes Place rename even where the
	// server offers hardlink@openssh.com.
	noHardlink *bool
}

// Get implements remote.Client.
func (s session) Get(ctx context.Context) (remote.Conn, error) {
	cn, err := s.c.get(ctx)
	if err != nil {
		return nil, err
	}
	return &fsConn{s: s, cn: cn}, nil
}

// fsConn is one SFTP connection as remote.Conn.
type fsConn struct {
	s  session
	cn *conn
}

var _ remote.Conn = (*fsConn)(nil)

// op runs one SFTP operation within OpTimeout and marks the server's
// answers for the remote core.
func (f *fsConn) op(ctx context.Context, what string, fn func(*psftp.Client) error) error {
	return f.s.c.rc.Run(ctx, f.cn, what, f.s.exclusive, func() error { return fn(f.cn.sftp) })
}

func (f *fsConn) Dead() bool { return f.cn.Dead() }

func entryOf(fi fs.FileInfo) remote.Entry {
	return remote.Entry{Name: fi.Name(), Size: fi.Size(), ModTime: fi.ModTime(), Regular: fi.Mode().IsRegular()}
}

func (f *fsConn) List(ctx context.Context, dir string) ([]remote.Entry, error) {
	var fis []fs.FileInfo
	err := f.op(ctx, "list", func(sc *psftp.Client) (err error) {
		fis, err = sc.ReadDir(dir)
		return err
	})
	if err != nil {
		return nil, err
	}
	entries := make([]remote.Entry, 0, len(fis))
	for _, fi := range fis {
		entries = append(entries, entryOf(fi))
	}
	return entries, nil
}

func (f *fsConn) Stat(ctx context.Context, p string) (remote.Entry, error) {
	var fi fs.FileInfo
	err := f.op(ctx, "stat", func(sc *psftp.Client) (err error) {
		fi, err = sc.Lstat(p)
		return err
	})
	if err != nil {
		return remote.Entry{}, err
	}
	return entryOf(fi), nil
}

func (f *fsConn) Open(ctx context.Context, p string) (remote.File, error) {
	var file *psftp.File
	err := f.op(ctx, "open", func(sc *psftp.Client) (err error) {
		file, err = sc.Open(p)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &readFile{c: f, f: file}, nil
}

func (f *fsConn) Upload(ctx context.Context, p string, src io.ReaderAt, size int64) (created bool, err error) {
	// O_EXCL: never write into a file someone else created.
	var file *psftp.File
	err = f.op(ctx, "create", func(sc *psftp.Client) (err error) {
		file, err = sc.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		return err
	})
	if err != nil {
		// Unless the server refused, it may have created the file
		// before the connection failed.
		return !remote.IsAnswer(err), fmt.Errorf("create: %w", err)
	}
	defer func() {
		if file != nil {
			_ = f.op(context.WithoutCancel(ctx), "close", func(*psftp.Client) error { return file.Close() })
		}
	}()
	buf := make([]byte, min(size, chunkSize))
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return true, err
		}
		chunk := buf[:min(size-off, chunkSize)]
		if err := medium.ReadSource(src, off, chunk); err != nil {
			return true, err
		}
		err := f.op(ctx, "write", func(*psftp.Client) error {
			_, err := file.Write(chunk)
			return err
		})
		if err != nil {
			return true, fmt.Errorf("write: %w", err)
		}
		off += int64(len(chunk))
	}
	// fsync before the rename where the server can: otherwise a crash of
	// the server can leave the final name with a short file.
	if v, ok := f.cn.sftp.HasExtension(extFsync); ok && v == "1" {
		if err := f.op(ctx, "fsync", func(*psftp.Client) error { return file.Sync() }); err != nil {
			return true, fmt.Errorf("fsync: %w", err)
		}
	}
	// Close reports a write the server failed late (a full disk).
	err = f.op(ctx, "close", func(*psftp.Client) error { return file.Close() })
	file = nil
	if err != nil {
		return true, fmt.Errorf("close: %w", err)
	}
	return true, nil
}

// Place gives tmp the final name without ever replacing a file (see the
// package doc on why not posix-rename).
func (f *fsConn) Place(ctx context.Context, tmp, final string) (tmpGone bool, err error) {
	if _, ok := f.cn.sftp.HasExtension(extHardlink); ok && (f.s.noHardlink == nil || !*f.s.noHardlink) {
		// link(2) fails if the name exists; the caller removes the
		// temporary name.
		return false, f.op(ctx, "link", func(sc *psftp.Client) error { return sc.Link(tmp, final) })
	}
	// OpenSSH refuses SSH_FXP_RENAME onto an existing name.
	err = f.op(ctx, "rename", func(sc *psftp.Client) error { return sc.Rename(tmp, final) })
	return err == nil, err
}

func (f *fsConn) Remove(ctx context.Context, p string) error {
	return f.op(ctx, "remove", func(sc *psftp.Client) error { return sc.Remove(p) })
}

// readFile is an SFTP file open for reading, as remote.File.
type readFile struct {
	c      *fsConn
	f      *psftp.File
	closed bool
}

func (r *readFile) Stat(ctx context.Context) (remote.Entry, error) {
	var fi fs.FileInfo
	err := r.c.op(ctx, "stat", func(*psftp.Client) (err error) {
		fi, err = r.f.Stat()
		return err
	})
	if err != nil {
		return remote.Entry{}, err
	}
	return entryOf(fi), nil
}

func (r *readFile) ReadFull(ctx context.Context, p []byte) (n int, err error) {
	err = r.c.op(ctx, "read", func(*psftp.Client) (err error) {
		n, err = io.ReadFull(r.f, p)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			// The end of the file. (pkg/sftp's io.EOF is no sure answer:
			// a closed channel gives it too, so it is turned into a count
			// here and never reaches isAnswer.)
			err = nil
		}
		return err
	})
	return n, err
}

func (r *readFile) Close(ctx context.Context) error {
	if r.closed {
		return nil
	}
	r.closed = true
	return r.c.op(ctx, "close", func(*psftp.Client) error { return r.f.Close() })
}
