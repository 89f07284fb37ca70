package sftp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	psftp "github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/remote"
)

// extStatVFS is the SFTP extension that reports a file system's free
// space.
const extStatVFS = "statvfs@openssh.com"

// Check checks the SFTP drop cfg names for `ferryctl medium check`. It
// connects exactly as the medium does (the key file, the pinned host key,
// the same timeouts) and reports the fingerprint of the host key the
// server showed (ssh.FingerprintSHA256), whether a probe file can be
// written, fsynced (fsync@openssh.com where offered), renamed to another
// dot name and removed in the drop directory, the free space where the
// server offers statvfs@openssh.com (else -1), and the final-named files
// waiting, with the oldest by modification time, and the temporary files
// of interrupted uploads.
//
// Every failure to connect or to work is a problem in the report, not an
// error: a host key that is not pinned or has changed is a problem that
// names the key the server showed. Check returns an error only for an
// invalid cfg or when ctx has ended. It never touches a file but its own
// probe.
func Check(ctx context.Context, cfg Config) (*medium.CheckReport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("check sftp medium: %w", err)
	}
	r := &medium.CheckReport{Medium: "sftp " + cfg.User + "@" + cfg.Address + cfg.Dir, FreeBytes: -1}
	var (
		mu   sync.Mutex
		seen ssh.PublicKey
	)
	c, cn, closeConn, err := checkDial(ctx, cfg, func(k ssh.PublicKey) {
		mu.Lock()
		seen = k
		mu.Unlock()
	})
	if ctx.Err() != nil {
		if closeConn != nil {
			closeConn()
		}
		return nil, ctx.Err()
	}
	mu.Lock()
	shown := seen
	mu.Unlock()
	if shown == nil && errors.Is(err, ErrHostKey) {
		// No key pinned for the address: newClient refused before
		// dialing. Ask the server for its key to name it.
		shown = serverHostKey(ctx, cfg)
	}
	if shown != nil {
		r.Identity = ssh.FingerprintSHA256(shown)
	}
	if err != nil {
		switch {
		case errors.Is(err, ErrHostKey) && shown != nil:
			r.Problemf("the server at %s showed host key %s %s, which %s does not pin for it: the key changed or this is another server; if the change is expected, compare the fingerprint with the server's administrator before replacing the pin (%v)",
				cfg.Address, shown.Type(), r.Identity, cfg.KnownHosts, err)
		case errors.Is(err, ErrHostKey):
			r.Problemf("the host key of %s is not accepted: %v", cfg.Address, err)
		case errors.Is(err, ErrKeyPermissions):
			r.Problemf("the key file is refused: %v", err)
		default:
			r.Problemf("cannot connect to %s: %v", cfg.Address, err)
		}
		return r, nil
	}
	defer closeConn()
	r.Reachable = true
	sc := cn.sftp

	// Each step is bounded by OpTimeout, and the end of ctx, like an
	// overrun, closes the connection, which fails the step in progress.
	stop := context.AfterFunc(ctx, closeConn)
	defer stop()
	op := func(f func() error) error {
		t := time.AfterFunc(cfg.OpTimeout, closeConn)
		defer t.Stop()
		return f()
	}

	var fi os.FileInfo
	err = op(func() (err error) { fi, err = sc.Stat(cfg.Dir); return err })
	if !remote.CheckDirStat(r, cfg.Dir, err == nil && fi.IsDir(), err) {
		return r, ctx.Err()
	}
	// The probe goes through the medium's own operations, placing with
	// SSH_FXP_RENAME (which OpenSSH refuses onto an existing name), as the
	// medium places where the server lacks hardlink@openssh.com.
	rename := true
	f := &fsConn{s: session{c: c, exclusive: true, noHardlink: &rename}, cn: cn}
	if err := remote.ProbeDrop(ctx, f, cfg.Dir); err != nil {
		r.Problemf("cannot write, rename and remove a probe file in %s: %v", cfg.Dir, err)
	} else {
		r.Writable = true
	}
	if _, ok := sc.HasExtension(extStatVFS); ok {
		var st *psftp.StatVFS
		if err := op(func() (err error) { st, err = sc.StatVFS(cfg.Dir); return err }); err == nil {
			r.SetFree(int64(st.Bavail * st.Frsize))
		}
	}
	list, err := f.List(ctx, cfg.Dir)
	if err != nil {
		r.Problemf("cannot list the drop directory %s: %v", cfg.Dir, err)
		return r, ctx.Err()
	}
	remote.CountFiles(r, list, time.Now())
	return r, ctx.Err()
}

// checkDial connects as the medium does (newClient, client.dial: the key
// file, the pinned host key and its algorithms, DialTimeout) and calls
// seen with the host key the server shows, before the pin is checked. It
// returns the client, the connection (not the client's current one) and
// what closes the connection (safe to call more than once, from any
// goroutine).
func checkDial(ctx context.Context, cfg Config, seen func(ssh.PublicKey)) (*client, *conn, func(), error) {
	c, err := newClient(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	pinned := c.hostKey
	c.hostKey = func(host string, remote net.Addr, key ssh.PublicKey) error {
		seen(key)
		return pinned(host, remote, key)
	}
	cn, err := c.dial(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	var once sync.Once
	return c, cn, func() { once.Do(func() { cn.Release(errClosed) }) }, nil
}

// errShown ends the handshake of serverHostKey once the server has shown
// its key.
var errShown = errors.New("host key shown")

// serverHostKey returns the host key the server at cfg.Address shows, or
// nil. It is for a report only: it ends the handshake as soon as the key
// is shown, never authenticates, and trusts nothing it learns.
func serverHostKey(ctx context.Context, cfg Config) ssh.PublicKey {
	ctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", cfg.Address)
	if err != nil {
		return nil
	}
	defer nc.Close()
	deadline, _ := ctx.Deadline()
	_ = nc.SetDeadline(deadline)
	var shown ssh.PublicKey
	config := &ssh.ClientConfig{
		User: cfg.User,
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			shown = key
			return errShown
		},
	}
	_, _, _, _ = ssh.NewClientConn(nc, cfg.Address, config)
	return shown
}
