// Package dir is the directory transfer medium: a directory that an optical
// disc ferry, a data diode or a shared mount carries across the boundary.
//
// # Publishing
//
// [Publisher.Publish] writes each file under a temporary name starting
// with '.', fsyncs it, renames it to its final name without ever replacing
// a file, and fsyncs the directory. A final name therefore only ever
// appears complete. Producers that are not this Publisher must follow the
// same rule (write elsewhere or under a dot name, then rename into place):
// the receiver claims any valid final name it sees.
//
// # Receiving
//
// [Receiver.Run] claims each arrived file by renaming it into the inbox.
// fsnotify is only a hint that makes arrival fast: the receiver also scans
// the directory at start, after every watcher error (an inotify queue
// overflow loses events), and every rescan interval, and it keeps working
// by polling alone when the watcher cannot be created, fails, or the file
// system is one where inotify reports nothing (NFS, SMB, FUSE, optical
// discs). Names that fail [medium.ValidName] are never touched: temporary
// files of a publisher in progress start with '.'. A file the receiver
// may not read (a publisher's umask or ownership gone wrong) is left in
// the drop with a warning and tried again at every scan, instead of
// being claimed and then refused by the consumer's read; a drop the
// receiver may not write (so it cannot rename out of it) is the same.
//
// # Another file system
//
// When the drop directory is on another file system than the inbox (a
// mounted disc), a rename fails with EXDEV and the receiver copies
// instead: it opens the source without following symlinks, checks it is a
// regular file with one link within the size cap, copies it into an inbox
// temporary file, fsyncs it, renames it into place, fsyncs the inbox, and
// only then removes the source. A source that fails the checks is recorded
// in quarantine with a reason file but without its payload, and removed.
// If the source cannot be removed (a read-only disc), Run does not claim
// it again while it stays in the directory; after a restart it is
// delivered once more and the consumer's deduplication drops it.
//
// # Stale temporary files
//
// A publisher that crashes mid-write leaves a temporary file. The
// Publisher removes its own kind of temporary file (".<name>.tmp-<16
// hex>") once it is older than [StaleTempAge], checking at most once per
// StaleTempAge while publishing. No writer keeps a temporary file that long.
package dir

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/internal/safefs"
)

// DefaultRescanInterval is how often a Receiver rescans its directory
// whether or not fsnotify reported anything.
const DefaultRescanInterval = 2 * time.Second

// DefaultDebounce is how long a Receiver waits after a file-system event
// before it scans, so that a burst of arrivals costs one scan.
const DefaultDebounce = 5 * time.Millisecond

// StaleTempAge is the age past which a Publisher removes a temporary file
// left by a crashed publisher.
const StaleTempAge = time.Hour

// publishPerm is the mode of published files: the receiving side's user
// may read them through the group.
const publishPerm = 0o640

// writeChunk is how much Publish writes between checks of ctx.
const writeChunk = 1 << 20

// Attribute keys for log records.
const (
	logFile   = "file"
	logDir    = "dir"
	logError  = "error"
	logCount  = "count"
	logRescan = "rescan"
	logFSType = "fs"
)

// Publisher publishes envelope files into a directory. It is safe for
// concurrent use with distinct names.
type Publisher struct {
	dir string

	mu        sync.Mutex
	lastSweep time.Time
}

var _ medium.Publisher = (*Publisher)(nil)

// NewPublisher returns a Publisher writing into dir, which must exist.
func NewPublisher(dir string) (*Publisher, error) {
	if dir == "" {
		return nil, errors.New("new publisher: dir is empty")
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("new publisher: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("new publisher: %s is not a directory", dir)
	}
	return &Publisher{dir: dir}, nil
}

// Publish implements medium.Publisher.
func (p *Publisher) Publish(ctx context.Context, name string, data []byte) error {
	return p.PublishFrom(ctx, name, bytes.NewReader(data), int64(len(data)))
}

// PublishFrom implements medium.Publisher.
func (p *Publisher) PublishFrom(ctx context.Context, name string, src io.ReaderAt, size int64) (err error) {
	if !medium.ValidName(name) {
		return fmt.Errorf("publish %q: %w", name, medium.ErrInvalidName)
	}
	if size < 0 {
		return fmt.Errorf("publish %s: negative size %d", name, size)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	d, err := safefs.OpenDir(p.dir)
	if err != nil {
		return fmt.Errorf("publish %s: %w", name, err)
	}
	defer d.Close()
	p.maybeSweep(d)

	// Write the whole file under a temporary dot name, created with O_EXCL,
	// and fsync and close it (WriteTemp): receivers ignore dot names, so
	// nobody sees the file until it is complete. WriteTemp removes the
	// temporary file on any failure.
	tmp, err := safefs.WriteTemp(d, name, publishPerm, func(f *os.File) error {
		buf := make([]byte, min(size, writeChunk))
		for off := int64(0); off < size; {
			if err := ctx.Err(); err != nil {
				return err
			}
			chunk := buf[:min(size-off, writeChunk)]
			if err := medium.ReadSource(src, off, chunk); err != nil {
				return err
			}
			if _, err := f.Write(chunk); err != nil {
				return err
			}
			off += int64(len(chunk))
		}
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("publish %s: %w", name, err)
	}
	renamed := false
	defer func() {
		if !renamed {
			_ = safefs.Unlink(d, tmp)
		}
	}()
	// Last chance to honour cancellation: after the rename the file is
	// published and Publish finishes the job.
	if err := ctx.Err(); err != nil {
		return err
	}
	// Rename without replacing: a final name is never overwritten, so a
	// reader that opened it keeps reading one consistent file, and a
	// clash with other bytes is reported instead of destroying them.
	err = safefs.RenameNoReplace(d, tmp, d, name)
	switch {
	case err == nil:
		renamed = true
	case errors.Is(err, unix.EEXIST):
		same, cerr := sameContent(d, name, src, size)
		if cerr != nil {
			return fmt.Errorf("publish %s: compare with the existing file: %w", name, cerr)
		}
		if !same {
			return fmt.Errorf("publish %s: %w", name, medium.ErrExists)
		}
		// Same bytes: an earlier Publish got this far. It may have crashed
		// before its directory fsync, so do that fsync now.
	default:
		return fmt.Errorf("publish %s: %w", name, err)
	}
	// fsync the directory: the rename lives in the directory, and until it
	// is on disk a crash can make the published file vanish after the
	// caller was told it is there.
	if err := safefs.Sync(d); err != nil {
		return fmt.Errorf("publish %s: %w", name, err)
	}
	return nil
}

// sameContent reports whether name in d holds exactly the size bytes of
// src, comparing a piece at a time. Anything but a regular file with one
// link counts as different.
func sameContent(d *os.File, name string, src io.ReaderAt, size int64) (bool, error) {
	f, got, err := safefs.OpenRegular(d, name, size)
	if err != nil {
		var re *safefs.RefusedError
		if errors.As(err, &re) && re.Reason != safefs.ReasonReadError {
			return false, nil
		}
		return false, err
	}
	defer f.Close()
	if got != size {
		return false, nil
	}
	a, b := make([]byte, min(size, writeChunk)), make([]byte, min(size, writeChunk))
	for off := int64(0); off < size; {
		n := min(size-off, writeChunk)
		if err := medium.ReadSource(src, off, a[:n]); err != nil {
			return false, err
		}
		if _, err := io.ReadFull(f, b[:n]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return false, nil // shrank while read
			}
			return false, err
		}
		if !bytes.Equal(a[:n], b[:n]) {
			return false, nil
		}
		off += n
	}
	// One more byte would mean it grew while read.
	var one [1]byte
	m, _ := f.Read(one[:])
	return m == 0, nil
}

// maybeSweep removes this publisher kind's temporary files older than
// StaleTempAge, at most once per StaleTempAge. It is best effort: a
// failure only leaves a stale dot file that receivers ignore anyway.
func (p *Publisher) maybeSweep(d *os.File) {
	now := time.Now()
	p.mu.Lock()
	if !p.lastSweep.IsZero() && now.Sub(p.lastSweep) < StaleTempAge {
		p.mu.Unlock()
		return
	}
	p.lastSweep = now
	p.mu.Unlock()
	sweepTemps(d, now.Add(-StaleTempAge))
}

// sweepTemps removes regular temporary files in d last modified before
// cutoff and returns how many it removed.
func sweepTemps(d *os.File, cutoff time.Time) int {
	names, err := d.Readdirnames(-1)
	// Readdirnames moved the directory offset; later *at calls do not care.
	if err != nil {
		return 0
	}
	removed := 0
	for _, n := range names {
		if !safefs.IsTempName(n) {
			continue
		}
		st, err := safefs.Lstat(d, n)
		if err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			continue
		}
		if time.Unix(st.Mtim.Unix()).After(cutoff) {
			continue
		}
		if safefs.Unlink(d, n) == nil {
			removed++
		}
	}
	if removed > 0 {
		_ = safefs.Sync(d)
	}
	return removed
}
