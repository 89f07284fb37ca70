package ftps

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/textproto"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/remote"
)

// FTP reply codes the medium tells apart.
const (
	codeUnavailable    = 550 // file unavailable: missing, a directory, or refused
	codeNameNotAllowed = 553 // vsftpd: could not create the file
)

// parsePin decodes a hex SHA-256 with or without colons.
func parsePin(s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	if err != nil || len(b) != sha256.Size {
		return nil, errors.New("cert sha256 is not 64 hex digits")
	}
	return b, nil
}

// tlsConfig builds the TLS configuration from cfg; seen receives the hex
// SHA-256 of every leaf certificate the server shows.
func tlsConfig(cfg Config, seen *atomic.Pointer[string]) (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: cfg.ServerName,
		// Data connections resume the control connection's session
		// (vsftpd's require_ssl_reuse).
		ClientSessionCache: tls.NewLRUClientSessionCache(8),
	}
	var pin []byte
	if cfg.CertSHA256 != "" {
		var err error
		if pin, err = parsePin(cfg.CertSHA256); err != nil {
			return nil, err
		}
		// The pin replaces the chain and name checks, which a pinned
		// (usually self-signed) certificate would fail:
		// InsecureSkipVerify turns off only those, and VerifyConnection
		// below refuses every certificate but the pinned one. The two
		// are set together or not at all.
		tc.InsecureSkipVerify = true
	} else {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca file %s holds no PEM certificate", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%w: the server showed no certificate", ErrCertificate)
		}
		sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
		h := hex.EncodeToString(sum[:])
		seen.Store(&h)
		if pin != nil && subtle.ConstantTimeCompare(sum[:], pin) != 1 {
			return fmt.Errorf("%w: certificate sha256 %s is not the pinned one", ErrCertificate, h)
		}
		return nil
	}
	return tc, nil
}

// certError wraps err with ErrCertificate if it is a failed certificate
// check.
func certError(err error) error {
	var cve *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	if !errors.Is(err, ErrCertificate) && (errors.As(err, &cve) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)) {
		return fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	return err
}

// conn is one FTP session: its control connection and the data
// connections opened on it.
type conn struct {
	*remote.Lifetime
	sc *ftp.ServerConn

	mu   sync.Mutex
	raws []net.Conn // the TCP connections (control first), closed by Abort
	last time.Time  // when an operation last ended
}

// track records a TCP connection of the session; after Abort it closes
// it at once.
func (cn *conn) track(nc net.Conn) bool {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.Dead() {
		_ = nc.Close()
		return false
	}
	// Forget the data connections that are closed already; there is at
	// most one in flight.
	if len(cn.raws) > 1 {
		cn.raws = cn.raws[:1]
	}
	cn.raws = append(cn.raws, nc)
	return true
}

// Abort implements remote.Link. It makes every operation in flight fail.
func (cn *conn) Abort(reason error) {
	cn.End(reason, func() {
		// A track after this sees the connection dead and closes its
		// own; one before it is in raws.
		cn.mu.Lock()
		raws := cn.raws
		cn.mu.Unlock()
		for _, nc := range raws {
			_ = nc.Close()
		}
	})
}

// Release implements remote.Link; a connection has no goroutines to wait
// for.
func (cn *conn) Release(reason error) { cn.Abort(reason) }

// touch records that an operation ended.
func (cn *conn) touch() {
	cn.mu.Lock()
	cn.last = time.Now()
	cn.mu.Unlock()
}

var (
	errClosed    = errors.New("ftps: closed")
	errIdleProbe = errors.New("idle connection did not answer NOOP")
)

// client dials and keeps the connection of one Publisher or Receiver.
// FTP runs one command at a time: the caller holds the turn (rc.Lock)
// across the operations of one publish or one scan.
type client struct {
	cfg      Config
	password string
	tls      *tls.Config            // nil: plain FTP
	seen     atomic.Pointer[string] // hex SHA-256 of the last certificate the server showed
	rc       *remote.Reconnector[*conn]
}

func newClient(cfg Config) (*client, error) {
	pw, err := readPassword(cfg.PasswordFile)
	if err != nil {
		return nil, err
	}
	c := &client{cfg: cfg, password: pw}
	if !cfg.Plain {
		if c.tls, err = tlsConfig(cfg, &c.seen); err != nil {
			return nil, err
		}
	}
	c.rc = remote.NewReconnector(remote.ReconnectorConfig[*conn]{
		Address:        cfg.Address,
		Protocol:       "ftp",
		OpTimeout:      cfg.OpTimeout,
		Dial:           c.dial,
		Probe:          c.probe,
		IsAnswer:       isAnswer,
		Closed:         errClosed,
		ConnectedAttrs: []any{slog.Bool("tls", c.tls != nil)},
		Logger:         cfg.Logger,
	})
	return c, nil
}

// open checks cfg, fills in its defaults and builds its client, for
// NewPublisher and NewReceiver; for plain FTP it logs a warning.
func open(cfg Config) (Config, *client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return cfg, nil, err
	}
	c, err := newClient(cfg)
	if err != nil {
		return cfg, nil, err
	}
	if cfg.Plain {
		cfg.Logger.Warn(plainWarning, slog.String(logAddr, cfg.Address))
	}
	return cfg, c, nil
}

// probe checks a live connection before it is used again: one idle for
// idleCheck or longer may have been closed by the server, so it must
// answer NOOP, or Get dials afresh without counting a failure.
func (c *client) probe(ctx context.Context, cn *conn) error {
	cn.mu.Lock()
	idle := time.Since(cn.last)
	cn.mu.Unlock()
	if idle < idleCheck {
		return nil
	}
	if err := c.run(ctx, cn, "noop", false, func(sc *ftp.ServerConn) error { return sc.NoOp() }); err != nil {
		return errIdleProbe
	}
	return nil
}

// dial opens a session: TCP, greeting, AUTH TLS and the handshake with
// the certificate check, login, PBSZ/PROT P; all of it within
// DialTimeout or until ctx ends.
func (c *client) dial(ctx context.Context) (*conn, error) {
	cn := &conn{Lifetime: remote.NewLifetime(), last: time.Now()}
	d := net.Dialer{Timeout: c.cfg.DialTimeout}
	first := true
	// The library hands data connections to this function too; with a
	// dial function it leaves their TLS to it, so data connections are
	// wrapped here (with the same config: resumed session, same checks)
	// and the control connection is left raw for AUTH TLS.
	dialFunc := func(network, address string) (net.Conn, error) {
		dctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
		defer cancel()
		if !first {
			// Data connections outlive the dial's ctx.
			dctx, cancel = context.WithTimeout(context.Background(), c.cfg.OpTimeout)
			defer cancel()
		}
		nc, err := d.DialContext(dctx, network, address)
		if err != nil {
			return nil, err
		}
		if !cn.track(nc) {
			return nil, remote.ErrDropped
		}
		if first {
			first = false
			return nc, nil
		}
		if c.tls != nil {
			return &dataConn{Conn: tls.Client(nc, c.tls), linger: min(c.cfg.OpTimeout, 5*time.Second)}, nil
		}
		return nc, nil
	}
	// The library has no deadlines of its own: this one covers the
	// greeting, the handshake and the login; the end of ctx cuts them.
	timer := time.AfterFunc(c.cfg.DialTimeout, func() {
		cn.Abort(fmt.Errorf("no login within %v", c.cfg.DialTimeout))
	})
	stop := context.AfterFunc(ctx, func() { cn.Abort(context.Cause(ctx)) })
	opts := []ftp.DialOption{
		ftp.DialWithDialFunc(dialFunc),
		ftp.DialWithForceListHidden(true),
		ftp.DialWithDisabledMLSD(true),
	}
	if c.tls != nil {
		opts = append(opts, ftp.DialWithExplicitTLS(c.tls))
	}
	sc, err := ftp.Dial(c.cfg.Address, opts...)
	if err == nil {
		cn.sc = sc
		// Login sends PBSZ 0 and PROT P after the login when TLS is on:
		// the data connections are protected.
		err = sc.Login(c.cfg.User, c.password)
	}
	timer.Stop()
	stopped := stop()
	if err == nil && !stopped {
		err = ctx.Err()
	}
	if err == nil && cn.Dead() {
		err = cn.Reason()
	}
	if err != nil {
		cn.Abort(remote.ErrDropped)
		if reason := cn.Reason(); reason != nil && !errors.Is(reason, remote.ErrDropped) && !errors.Is(err, reason) {
			err = fmt.Errorf("%w (%v)", err, reason)
		}
		return nil, certError(err)
	}
	return cn, nil
}

// dataConn is a TLS data connection that closes in order: close_notify,
// then the server's close_notify (or EOF) read, then the TCP close.
// Closing a socket with unread bytes in its buffer (TLS 1.3 session
// tickets the server sent after the handshake, which an upload never
// reads) sends a reset that can reach the server before it has read the
// close_notify; vsftpd's strict_ssl_read_eof then calls the upload
// truncated (426).
type dataConn struct {
	*tls.Conn
	linger time.Duration // how long Close waits for the server's side
	eof    bool          // a read reached the end
}

func (d *dataConn) Read(p []byte) (int, error) {
	n, err := d.Conn.Read(p)
	if err != nil {
		d.eof = true
	}
	return n, err
}

func (d *dataConn) Close() error {
	if !d.eof {
		if err := d.CloseWrite(); err == nil {
			_ = d.SetReadDeadline(time.Now().Add(d.linger))
			// An upload has nothing to read but tickets and the
			// server's close_notify; a download closed early (a
			// comparison that differs) stops at the deadline.
			_, _ = io.CopyN(io.Discard, d.Conn, 1<<20)
		}
	}
	return d.Conn.Close()
}

// run runs op, one FTP command (or one chunk of a transfer), on cn within
// OpTimeout (see remote.Reconnector.Run); an answer comes back marked
// with remote.Answer, a failed certificate check with ErrCertificate.
func (c *client) run(ctx context.Context, cn *conn, what string, exclusive bool, op func(*ftp.ServerConn) error) error {
	return c.runProgress(ctx, cn, what, exclusive, func(sc *ftp.ServerConn, _ func()) error { return op(sc) })
}

// runProgress is run for a transfer in one command: op calls progress at
// every piece it moves, and fails only when it stalls for OpTimeout (see
// remote.Reconnector.RunProgress).
func (c *client) runProgress(ctx context.Context, cn *conn, what string, exclusive bool, op func(sc *ftp.ServerConn, progress func()) error) error {
	err := c.rc.RunProgress(ctx, cn, what, exclusive, func(progress func()) error {
		err := op(cn.sc, progress)
		cn.touch()
		return err
	})
	if remote.IsAnswer(err) {
		return err
	}
	return certError(err)
}

// isAnswer reports whether err holds a reply of the server (an FTP reply
// code) rather than a failure of the connection.
func isAnswer(err error) bool {
	var te *textproto.Error
	return errors.As(err, &te)
}

// replyCode returns the FTP reply code in err, or 0.
func replyCode(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

// close says goodbye to the server (QUIT, briefly, if no operation holds
// the connection) and closes the connection; later calls fail. An
// operation in flight fails.
func (c *client) close() error {
	return c.rc.Close(func(cn *conn) {
		timer := time.AfterFunc(time.Second, func() { cn.Abort(errClosed) })
		_ = cn.sc.Quit()
		timer.Stop()
	})
}

// session adapts a client to remote.Client. The caller of the remote
// core holds the client's turn.
type session struct {
	c *client
	// exclusive: the connection is this caller's alone (a receiver), so
	// the end of an operation's ctx closes it at once.
	exclusive bool
}

// Get implements remote.Client.
func (s session) Get(ctx context.Context) (remote.Conn, error) {
	cn, err := s.c.rc.Get(ctx)
	if err != nil {
		return nil, err
	}
	return &fsConn{s: s, cn: cn}, nil
}

// fsConn is one FTP session as remote.Conn.
type fsConn struct {
	s  session
	cn *conn
}

var _ remote.Conn = (*fsConn)(nil)

func (f *fsConn) op(ctx context.Context, what string, fn func(*ftp.ServerConn) error) error {
	return f.s.c.run(ctx, f.cn, what, f.s.exclusive, fn)
}

func (f *fsConn) Dead() bool { return f.cn.Dead() }

// List lists dir with "LIST -a" (vsftpd has no MLSD).
func (f *fsConn) List(ctx context.Context, dir string) ([]remote.Entry, error) {
	var list []*ftp.Entry
	err := f.op(ctx, "list", func(sc *ftp.ServerConn) (err error) {
		list, err = sc.List(dir)
		return err
	})
	if err != nil {
		return nil, err
	}
	entries := make([]remote.Entry, 0, len(list))
	for _, e := range list {
		if e.Name == "." || e.Name == ".." || strings.Contains(e.Name, "/") {
			continue
		}
		entries = append(entries, remote.Entry{Name: e.Name, Size: int64(e.Size), ModTime: e.Time, Regular: e.Type == ftp.EntryTypeFile})
	}
	return entries, nil
}

// Stat tells a regular file (SIZE answers), a directory (CWD succeeds)
// and nothing apart. FTP has no lstat: a symbolic link is followed.
func (f *fsConn) Stat(ctx context.Context, p string) (remote.Entry, error) {
	var size int64
	err := f.op(ctx, "size", func(sc *ftp.ServerConn) (err error) {
		size, err = sc.FileSize(p)
		return err
	})
	if err == nil {
		return remote.Entry{Name: path.Base(p), Size: size, Regular: true}, nil
	}
	if replyCode(err) != codeUnavailable {
		return remote.Entry{}, err
	}
	err = f.op(ctx, "cwd", func(sc *ftp.ServerConn) error { return sc.ChangeDir(p) })
	if err == nil {
		return remote.Entry{Name: path.Base(p)}, nil
	}
	if replyCode(err) == codeUnavailable {
		return remote.Entry{}, remote.Answer(fmt.Errorf("%s: %w (%v)", p, fs.ErrNotExist, err))
	}
	return remote.Entry{}, err
}

// Open checks the size (SIZE) and starts the download (RETR).
func (f *fsConn) Open(ctx context.Context, p string) (remote.File, error) {
	e, err := f.Stat(ctx, p)
	if err != nil {
		return nil, err
	}
	if !e.Regular {
		return nil, remote.Answer(fmt.Errorf("%s: not a regular file", p))
	}
	var resp *ftp.Response
	err = f.op(ctx, "retr", func(sc *ftp.ServerConn) (err error) {
		resp, err = sc.Retr(p)
		return err
	})
	if replyCode(err) == codeUnavailable {
		// vsftpd answers 550 both for a missing file and for one it may
		// not read; a stat tells them apart.
		switch _, serr := f.Stat(ctx, p); {
		case errors.Is(serr, fs.ErrNotExist):
			return nil, remote.Answer(fmt.Errorf("%s: %w (%v)", p, fs.ErrNotExist, err))
		case serr != nil && !remote.IsAnswer(serr):
			return nil, serr // the connection failed
		}
		return nil, remote.Answer(fmt.Errorf("%s: %w (%v)", p, fs.ErrPermission, err))
	}
	if err != nil {
		return nil, err
	}
	return &readFile{c: f, resp: resp, entry: e}, nil
}

// progress feeds the size bytes of src to STOR a chunk at a time,
// restarting the operation timer at each one, and stops when ctx ends.
type progress struct {
	ctx     context.Context
	src     io.ReaderAt
	off     int64
	size    int64
	touch   func()
	started bool
	err     error // the source's failure, which STOR may not report
}

func (r *progress) Read(p []byte) (int, error) {
	r.started = true
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	if r.off >= r.size {
		return 0, io.EOF
	}
	r.touch()
	p = p[:min(int64(len(p)), chunkSize, r.size-r.off)]
	if err := medium.ReadSource(r.src, r.off, p); err != nil {
		r.err = err
		return 0, err
	}
	r.off += int64(len(p))
	return len(p), nil
}

// Upload stores the size bytes of src under p with STOR. FTP has no
// exclusive create: p is a fresh temporary name with 64 random bits.
func (f *fsConn) Upload(ctx context.Context, p string, src io.ReaderAt, size int64) (created bool, err error) {
	// The operation timeout is pushed back at every chunk the data
	// connection takes: a stall of OpTimeout closes the connection, a
	// long transfer does not.
	r := &progress{ctx: ctx, src: src, size: size}
	err = f.s.c.runProgress(ctx, f.cn, "stor", f.s.exclusive, func(sc *ftp.ServerConn, progress func()) error {
		r.touch = progress
		return sc.Stor(p, r)
	})
	if err == nil && ctx.Err() != nil {
		// The library closes the data connection cleanly when the
		// reader fails, and the server may call the short file complete.
		err = ctx.Err()
	}
	if err == nil && r.err != nil {
		err = r.err // the same for a source that failed
	}
	if c := replyCode(err); !r.started && (c == codeUnavailable || c == codeNameNotAllowed) {
		// Refused before any data moved: vsftpd answers 553 when it
		// cannot create the file (mode bits, a read-only directory).
		return false, remote.Answer(fmt.Errorf("stor: %w (%v)", fs.ErrPermission, err))
	}
	if err != nil {
		return r.started || !remote.IsAnswer(err), fmt.Errorf("stor: %w", err)
	}
	return true, nil
}

// Place renames tmp to final after checking that final does not exist;
// see the package doc for the window between the two.
func (f *fsConn) Place(ctx context.Context, tmp, final string) (tmpGone bool, err error) {
	_, err = f.Stat(ctx, final)
	switch {
	case err == nil:
		return false, remote.Answer(fmt.Errorf("%s: %w", final, fs.ErrExist))
	case !errors.Is(err, fs.ErrNotExist):
		return false, err
	}
	err = f.op(ctx, "rename", func(sc *ftp.ServerConn) error { return sc.Rename(tmp, final) })
	return err == nil, err
}

// Remove deletes p. vsftpd answers 550 both for a missing file and for a
// refused delete; a stat tells them apart.
func (f *fsConn) Remove(ctx context.Context, p string) error {
	err := f.op(ctx, "dele", func(sc *ftp.ServerConn) error { return sc.Delete(p) })
	if replyCode(err) != codeUnavailable {
		return err
	}
	if _, serr := f.Stat(ctx, p); errors.Is(serr, fs.ErrNotExist) {
		return remote.Answer(fmt.Errorf("%s: %w (%v)", p, fs.ErrNotExist, err))
	}
	return remote.Answer(fmt.Errorf("%s: %w (%v)", p, fs.ErrPermission, err))
}

// readFile is a download in progress, as remote.File.
type readFile struct {
	c      *fsConn
	resp   *ftp.Response
	entry  remote.Entry
	closed bool
}

// Stat returns what SIZE said just before RETR.
func (r *readFile) Stat(context.Context) (remote.Entry, error) { return r.entry, nil }

func (r *readFile) ReadFull(ctx context.Context, p []byte) (n int, err error) {
	err = r.c.op(ctx, "read", func(*ftp.ServerConn) (err error) {
		n, err = io.ReadFull(r.resp, p)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = nil // the end of the file; the caller checks the size
		}
		return err
	})
	return n, err
}

// Close ends the download and reads the server's final reply.
func (r *readFile) Close(ctx context.Context) error {
	if r.closed {
		return nil
	}
	r.closed = true
	return r.c.op(ctx, "close", func(*ftp.ServerConn) error { return r.resp.Close() })
}
