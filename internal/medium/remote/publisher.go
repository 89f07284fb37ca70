package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path"
	"sync"
	"time"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/internal/safefs"
)

// maxOrphans bounds the temporary files remembered for removal after the
// connection that wrote them died; the janitor removes any beyond it.
const maxOrphans = 1000

// PublisherConfig configures a [Publisher].
type PublisherConfig struct {
	Dir        string        // the drop directory on the server (absolute, clean)
	TempMaxAge time.Duration // the janitor removes temporary files older than this; must be > 0
	ChunkSize  int           // bytes per read when comparing; 0: DefaultChunkSize
	Logger     *slog.Logger  // nil: slog.Default()
}

// Publisher publishes envelope files into a remote drop directory over a
// protocol's [Client]. It is safe for concurrent use with distinct names
// when the protocol's connections are.
type Publisher struct {
	c     Client
	dir   string
	chunk int
	log   *slog.Logger
	jan   Janitor

	mu      sync.Mutex
	orphans []string // temporary files a dead connection left behind
}

var _ medium.Publisher = (*Publisher)(nil)

// NewPublisher returns a Publisher over c.
func NewPublisher(c Client, cfg PublisherConfig) *Publisher {
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	log := logger(cfg.Logger)
	return &Publisher{c: c, dir: cfg.Dir, chunk: cfg.ChunkSize, log: log, jan: Janitor{MaxAge: cfg.TempMaxAge, Logger: log}}
}

// Publish implements medium.Publisher; see the package doc for the steps.
func (p *Publisher) Publish(ctx context.Context, name string, data []byte) error {
	return p.PublishFrom(ctx, name, bytes.NewReader(data), int64(len(data)))
}

// PublishFrom implements medium.Publisher: Publish, reading src a chunk
// at a time.
func (p *Publisher) PublishFrom(ctx context.Context, name string, src io.ReaderAt, size int64) error {
	if !medium.ValidName(name) {
		return fmt.Errorf("publish %q: %w", name, medium.ErrInvalidName)
	}
	if size < 0 {
		return fmt.Errorf("publish %s: negative size %d", name, size)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	cn, err := p.c.Get(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("publish %s: %w", name, err)
	}
	p.removeOrphans(ctx, cn)
	if p.jan.Due() {
		p.sweep(ctx, cn)
	}
	err = p.publish(ctx, cn, name, src, size)
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func (p *Publisher) publish(ctx context.Context, cn Conn, name string, src io.ReaderAt, size int64) error {
	final := path.Join(p.dir, name)
	same, exists, err := Compare(ctx, cn, final, src, size, p.chunk)
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
	// takes.
	tmp := path.Join(p.dir, safefs.TempName(name))
	created, err := cn.Upload(ctx, tmp, src, size)
	if err != nil {
		if created {
			// A partial upload is removed, never resumed.
			p.removeTemp(ctx, cn, tmp)
		}
		return fmt.Errorf("publish %s: upload %s: %w", name, tmp, err)
	}
	// Last chance to honour cancellation: after the next step the file is
	// published.
	if err := ctx.Err(); err != nil {
		p.removeTemp(ctx, cn, tmp)
		return err
	}
	tmpGone, err := cn.Place(ctx, tmp, final)
	if !tmpGone {
		p.removeTemp(ctx, cn, tmp)
	}
	if err == nil {
		return nil
	}
	if !IsAnswer(err) {
		// The connection failed: whether the file got its name is
		// unknown; a retry finds out by comparing.
		return fmt.Errorf("publish %s: place under the final name: %w", name, err)
	}
	// Refused: another publish may have taken the name meanwhile.
	same, exists, cerr := Compare(ctx, cn, final, src, size, p.chunk)
	switch {
	case cerr != nil:
		return fmt.Errorf("publish %s: place under the final name: %w; then compare: %w", name, err, cerr)
	case exists && same:
		return nil
	case exists:
		return fmt.Errorf("publish %s: %w", name, medium.ErrExists)
	}
	return fmt.Errorf("publish %s: place under the final name: %w", name, err)
}

// Compare reports whether the file p exists on the server and holds
// exactly the size bytes of src. Anything but a regular file of that size
// counts as different. It reads the file and src in chunks of chunk bytes
// and compares them as they come.
func Compare(ctx context.Context, cn Conn, p string, src io.ReaderAt, size int64, chunk int) (same, exists bool, err error) {
	e, err := cn.Stat(ctx, p)
	if errors.Is(err, fs.ErrNotExist) && IsAnswer(err) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	if !e.Regular || e.Size != size {
		return false, true, nil
	}
	f, err := cn.Open(ctx, p)
	if errors.Is(err, fs.ErrNotExist) && IsAnswer(err) {
		return false, false, nil // removed since the stat
	}
	if err != nil {
		return false, true, err
	}
	defer func() { _ = f.Close(context.WithoutCancel(ctx)) }()
	// One byte more than the file should hold tells a file that grew.
	n := min(size+1, int64(max(chunk, 1)))
	got, want := make([]byte, n), make([]byte, n)
	for off := int64(0); ; {
		if err := ctx.Err(); err != nil {
			return false, true, err
		}
		n, err := f.ReadFull(ctx, got)
		if err != nil {
			return false, true, err
		}
		if int64(n) > size-off {
			return false, true, nil
		}
		if err := medium.ReadSource(src, off, want[:n]); err != nil {
			return false, true, err
		}
		if !bytes.Equal(got[:n], want[:n]) {
			return false, true, nil
		}
		off += int64(n)
		if n < len(got) {
			return off == size, true, nil
		}
	}
}

// removeTemp removes a temporary file of a failed upload, best effort.
// If the connection is gone, the name is kept to be removed over the
// next one.
func (p *Publisher) removeTemp(ctx context.Context, cn Conn, tmp string) {
	err := cn.Remove(context.WithoutCancel(ctx), tmp)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return
	}
	p.keepOrphan(tmp)
}

// removeOrphans removes the temporary files that earlier failed uploads
// could not remove.
func (p *Publisher) removeOrphans(ctx context.Context, cn Conn) {
	p.mu.Lock()
	orphans := p.orphans
	p.orphans = nil
	p.mu.Unlock()
	if len(orphans) == 0 {
		return
	}
	removed := 0
	for _, tmp := range orphans {
		if cn.Dead() || ctx.Err() != nil {
			p.keepOrphan(tmp)
			continue
		}
		err := cn.Remove(ctx, tmp)
		switch {
		case err == nil:
			removed++
		case errors.Is(err, fs.ErrNotExist):
		case IsAnswer(err):
			// Refused for good (permissions): the janitor's business now,
			// not a reason to try at every publish.
		default:
			p.keepOrphan(tmp)
		}
	}
	if removed > 0 {
		p.log.Info("removed temporary files of failed uploads", slog.String(logDir, p.dir), slog.Int(logCount, removed))
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
func (p *Publisher) sweep(ctx context.Context, cn Conn) {
	entries, err := cn.List(ctx, p.dir)
	if err != nil {
		p.log.Warn("janitor cannot list the drop directory", slog.String(logDir, p.dir), slog.String(logError, err.Error()))
		return
	}
	p.jan.Sweep(ctx, cn, p.dir, entries)
}

// Janitor removes stale temporary files of our pattern from a drop
// directory, at most every MaxAge/4.
type Janitor struct {
	MaxAge time.Duration
	Logger *slog.Logger // nil: slog.Default()

	mu   sync.Mutex
	last time.Time
}

// Due reports whether a sweep is due, and if so counts it as done.
func (j *Janitor) Due() bool {
	now := time.Now()
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.last.IsZero() && now.Sub(j.last) < j.MaxAge/4 {
		return false
	}
	j.last = now
	return true
}

// Sweep removes the regular files among entries (a listing of dir) that
// have our temporary pattern and were last modified more than MaxAge
// ago, and returns how many it removed. It is best effort: a failure
// leaves a dot file that receivers ignore.
func (j *Janitor) Sweep(ctx context.Context, cn Conn, dir string, entries []Entry) int {
	cutoff := time.Now().Add(-j.MaxAge)
	removed := 0
	for _, e := range entries {
		if !safefs.IsTempName(e.Name) || !e.Regular || e.ModTime.After(cutoff) {
			continue
		}
		if ctx.Err() != nil || cn.Dead() {
			break
		}
		if err := cn.Remove(ctx, path.Join(dir, e.Name)); err == nil {
			removed++
		}
	}
	if removed > 0 {
		logger(j.Logger).Info("janitor removed stale temporary files", slog.String(logDir, dir), slog.Int(logCount, removed))
	}
	return removed
}
