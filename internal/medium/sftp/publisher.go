package sftp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"sync"
	"time"

	psftp "github.com/pkg/sftp"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/internal/safefs"
)

// SFTP extensions the medium uses where the server offers them.
const (
	extFsync    = "fsync@openssh.com"
	extHardlink = "hardlink@openssh.com"
)

// maxOrphans bounds the temporary files remembered for removal after the
// connection that wrote them died; the janitor removes any beyond it.
const maxOrphans = 1000

// Publisher uploads envelope files into a drop directory on an SFTP
// server. It is safe for concurrent use with distinct names; all calls
// share one connection.
type Publisher struct {
	cfg Config
	c   *client
	jan janitor

	// noHardlink makes Publish rename even where the server offers
	// hardlink@openssh.com; tests use it to cover the rename path.
	noHardlink bool

	mu      sync.Mutex
	orphans []string // temporary files a dead connection left behind
}

var _ medium.Publisher = (*Publisher)(nil)

// NewPublisher checks cfg, reads and checks the key file and the
// known_hosts file, and returns a Publisher. It does not dial: the first
// Publish does.
func NewPublisher(cfg Config) (*Publisher, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("new sftp publisher: %w", err)
	}
	c, err := newClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("new sftp publisher: %w", err)
	}
	return &Publisher{cfg: cfg, c: c, jan: janitor{maxAge: cfg.TempMaxAge}}, nil
}

// Close closes the connection. Publish fails after Close.
func (p *Publisher) Close() error { return p.c.close() }

// Publish implements medium.Publisher; see the package doc for the steps.
func (p *Publisher) Publish(ctx context.Context, name string, data []byte) error {
	if !medium.ValidName(name) {
		return fmt.Errorf("publish %q: %w", name, medium.ErrInvalidName)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	cn, err := p.c.get(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("publish %s: %w", name, err)
	}
	p.removeOrphans(ctx, cn)
	if p.jan.due() {
		p.sweep(ctx, cn)
	}
	err = p.publish(ctx, cn, name, data)
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// op runs one SFTP operation on cn within OpTimeout.
func (p *Publisher) op(ctx context.Context, cn *conn, what string, f func(*psftp.Client) error) error {
	// The connection is shared with other publishes: the end of one
	// caller's ctx must not close it. Publish checks ctx between
	// operations instead.
	return p.c.run(ctx, cn, what, false, f)
}

func (p *Publisher) publish(ctx context.Context, cn *conn, name string, data []byte) (err error) {
	final := path.Join(p.cfg.Dir, name)
	same, exists, err := p.compare(ctx, cn, final, data)
	if err != nil {
		return fmt.Errorf("publish %s: compare with the file on the server: %w", name, err)
	}
	if exists {
		if same {
			return nil
		}
		return fmt.Errorf("publish %s: %w", name, medium.ErrExists)
	}

	// Write the whole file under a temporary dot name that no receiver
	// takes. O_EXCL: never write into a file someone else created.
	tmp := path.Join(p.cfg.Dir, safefs.TempName(name))
	var f *psftp.File
	err = p.op(ctx, cn, "create", func(sc *psftp.Client) (err error) {
		f, err = sc.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		return err
	})
	if err != nil {
		if !isAnswer(err) {
			// The server may have created the file before the
			// connection failed.
			p.keepOrphan(tmp)
		}
		return fmt.Errorf("publish %s: create %s: %w", name, tmp, err)
	}
	tmpGone := false
	defer func() {
		if f != nil {
			_ = p.op(context.WithoutCancel(ctx), cn, "close", func(*psftp.Client) error { return f.Close() })
		}
		if !tmpGone {
			// A partial upload is removed, never resumed.
			p.removeTemp(ctx, cn, tmp)
		}
	}()
	for rest := data; len(rest) > 0; {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk := rest[:min(len(rest), chunkSize)]
		err := p.op(ctx, cn, "write", func(*psftp.Client) error {
			_, err := f.Write(chunk)
			return err
		})
		if err != nil {
			return fmt.Errorf("publish %s: write %s: %w", name, tmp, err)
		}
		rest = rest[len(chunk):]
	}
	// fsync before the rename where the server can: otherwise a crash of
	// the server can leave the final name with a short file.
	if v, ok := cn.sftp.HasExtension(extFsync); ok && v == "1" {
		if err := p.op(ctx, cn, "fsync", func(*psftp.Client) error { return f.Sync() }); err != nil {
			return fmt.Errorf("publish %s: fsync %s: %w", name, tmp, err)
		}
	}
	// Close reports a write the server failed late (a full disk).
	err = p.op(ctx, cn, "close", func(*psftp.Client) error { return f.Close() })
	f = nil
	if err != nil {
		return fmt.Errorf("publish %s: close %s: %w", name, tmp, err)
	}
	// Last chance to honour cancellation: after the next step the file is
	// published.
	if err := ctx.Err(); err != nil {
		return err
	}

	// Give it the final name without ever replacing a file (see the
	// package doc on why not posix-rename).
	if _, ok := cn.sftp.HasExtension(extHardlink); ok && !p.noHardlink {
		// link(2) fails if the name exists; the temporary name goes in
		// the deferred removal.
		err = p.op(ctx, cn, "link", func(sc *psftp.Client) error { return sc.Link(tmp, final) })
	} else {
		// OpenSSH refuses SSH_FXP_RENAME onto an existing name.
		err = p.op(ctx, cn, "rename", func(sc *psftp.Client) error { return sc.Rename(tmp, final) })
		tmpGone = err == nil
	}
	if err == nil {
		return nil
	}
	if !isAnswer(err) {
		// The connection failed: whether the file got its name is
		// unknown; a retry finds out by comparing.
		return fmt.Errorf("publish %s: rename into place: %w", name, err)
	}
	// Refused: another publish may have taken the name meanwhile.
	same, exists, cerr := p.compare(ctx, cn, final, data)
	switch {
	case cerr != nil:
		return fmt.Errorf("publish %s: rename into place: %w; then compare: %w", name, err, cerr)
	case exists && same:
		return nil
	case exists:
		return fmt.Errorf("publish %s: %w", name, medium.ErrExists)
	}
	return fmt.Errorf("publish %s: rename into place: %w", name, err)
}

// compare reports whether final exists on the server and holds exactly
// data. Anything but a regular file of that size counts as different.
// It reads the file in chunks, each within OpTimeout, and compares them
// with data as they come.
func (p *Publisher) compare(ctx context.Context, cn *conn, final string, data []byte) (same, exists bool, err error) {
	var fi fs.FileInfo
	err = p.op(ctx, cn, "stat", func(sc *psftp.Client) (err error) {
		fi, err = sc.Lstat(final)
		return err
	})
	if errors.Is(err, fs.ErrNotExist) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	if !fi.Mode().IsRegular() || fi.Size() != int64(len(data)) {
		return false, true, nil
	}
	var f *psftp.File
	err = p.op(ctx, cn, "open", func(sc *psftp.Client) (err error) {
		f, err = sc.Open(final)
		return err
	})
	if err != nil {
		return false, true, err
	}
	defer func() {
		_ = p.op(context.WithoutCancel(ctx), cn, "close", func(*psftp.Client) error { return f.Close() })
	}()
	buf := make([]byte, min(len(data)+1, chunkSize))
	for off := 0; ; {
		if err := ctx.Err(); err != nil {
			return false, true, err
		}
		var n int
		err := p.op(ctx, cn, "read", func(*psftp.Client) (err error) {
			n, err = io.ReadFull(f, buf)
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				err = nil // the end of the file: compared below
			}
			return err
		})
		if err != nil {
			return false, true, err
		}
		if n > len(data)-off || !bytes.Equal(buf[:n], data[off:off+n]) {
			return false, true, nil
		}
		off += n
		if n < len(buf) {
			return off == len(data), true, nil
		}
	}
}

// removeTemp removes a temporary file of a failed upload, best effort.
// If the connection is gone, the name is kept to be removed over the
// next one.
func (p *Publisher) removeTemp(ctx context.Context, cn *conn, tmp string) {
	err := p.op(context.WithoutCancel(ctx), cn, "remove", func(sc *psftp.Client) error { return sc.Remove(tmp) })
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.orphans) < maxOrphans {
		p.orphans = append(p.orphans, tmp)
	}
}

// removeOrphans removes the temporary files that earlier failed uploads
// could not remove.
func (p *Publisher) removeOrphans(ctx context.Context, cn *conn) {
	p.mu.Lock()
	orphans := p.orphans
	p.orphans = nil
	p.mu.Unlock()
	if len(orphans) == 0 {
		return
	}
	removed := 0
	for _, tmp := range orphans {
		if cn.dead() || ctx.Err() != nil {
			p.keepOrphan(tmp)
			continue
		}
		err := p.op(ctx, cn, "remove", func(sc *psftp.Client) error { return sc.Remove(tmp) })
		switch {
		case err == nil:
			removed++
		case errors.Is(err, fs.ErrNotExist):
		default:
			p.keepOrphan(tmp)
		}
	}
	if removed > 0 {
		p.c.log.Info("removed temporary files of failed uploads", slog.String(logDir, p.cfg.Dir), slog.Int(logCount, removed))
	}
}

func (p *Publisher) keepOrphan(tmp string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.orphans) < maxOrphans {
		p.orphans = append(p.orphans, tmp)
	}
}

// sweep runs the janitor over the drop directory.
func (p *Publisher) sweep(ctx context.Context, cn *conn) {
	var entries []fs.FileInfo
	err := p.op(ctx, cn, "list", func(sc *psftp.Client) (err error) {
		entries, err = sc.ReadDir(p.cfg.Dir)
		return err
	})
	if err != nil {
		p.c.log.Warn("janitor cannot list the drop directory", slog.String(logDir, p.cfg.Dir), slog.String(logError, err.Error()))
		return
	}
	p.jan.sweep(ctx, p.c, cn, p.cfg.Dir, entries, false)
}

// janitor removes stale temporary files of our pattern from a drop
// directory, at most every maxAge/4.
type janitor struct {
	maxAge time.Duration

	mu   sync.Mutex
	last time.Time
}

// due reports whether a sweep is due, and if so counts it as done.
func (j *janitor) due() bool {
	now := time.Now()
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.last.IsZero() && now.Sub(j.last) < j.maxAge/4 {
		return false
	}
	j.last = now
	return true
}

// sweep removes the regular files among entries (a listing of dir) that
// have our temporary pattern and were last modified more than maxAge ago.
// It is best effort: a failure leaves a dot file that receivers ignore.
func (j *janitor) sweep(ctx context.Context, c *client, cn *conn, dir string, entries []fs.FileInfo, abortOnCancel bool) {
	cutoff := time.Now().Add(-j.maxAge)
	removed := 0
	for _, fi := range entries {
		if !safefs.IsTempName(fi.Name()) || !fi.Mode().IsRegular() || fi.ModTime().After(cutoff) {
			continue
		}
		if ctx.Err() != nil || cn.dead() {
			break
		}
		p := path.Join(dir, fi.Name())
		err := c.run(ctx, cn, "remove", abortOnCancel, func(sc *psftp.Client) error { return sc.Remove(p) })
		if err == nil {
			removed++
		}
	}
	if removed > 0 {
		c.log.Info("janitor removed stale temporary files", slog.String(logDir, dir), slog.Int(logCount, removed))
	}
}
