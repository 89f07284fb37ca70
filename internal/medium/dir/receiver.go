package dir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/internal/safefs"
)

// ReceiverConfig configures a Receiver.
type ReceiverConfig struct {
	Dir    string        // the drop directory to watch
	Inbox  *medium.Inbox // where claimed files go
	Rescan time.Duration // 0 means DefaultRescanInterval
	Logger *slog.Logger

	// PollOnly turns fsnotify off: the receiver finds files by rescanning
	// alone. The receiver also polls by itself where inotify reports
	// nothing (see the package doc).
	PollOnly bool
	// Debounce is the wait after an event before scanning; 0 means
	// DefaultDebounce.
	Debounce time.Duration
}

// Receiver claims files from a drop directory into an inbox. Run it once
// at a time per inbox.
type Receiver struct {
	dir      string
	inbox    *medium.Inbox
	rescan   time.Duration
	debounce time.Duration
	pollOnly bool
	log      *slog.Logger

	// newWatcher makes the file-system watcher; tests replace it to
	// inject failures and overflows.
	newWatcher func() (watcher, error)
}

var _ medium.Receiver = (*Receiver)(nil)

// watcher is the part of *fsnotify.Watcher the receiver uses.
type watcher interface {
	Add(path string) error
	Events() <-chan fsnotify.Event
	Errors() <-chan error
	Close() error
}

type fsWatcher struct{ *fsnotify.Watcher }

func (w fsWatcher) Events() <-chan fsnotify.Event { return w.Watcher.Events }
func (w fsWatcher) Errors() <-chan error          { return w.Watcher.Errors }

func newFSWatcher() (watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	return fsWatcher{w}, nil
}

// NewReceiver validates cfg and returns a Receiver. The drop directory
// need not exist yet (a disc may be mounted later); Run waits for it.
func NewReceiver(cfg ReceiverConfig) (*Receiver, error) {
	switch {
	case cfg.Dir == "":
		return nil, errors.New("new receiver: dir is empty")
	case cfg.Inbox == nil:
		return nil, errors.New("new receiver: inbox is nil")
	case cfg.Rescan < 0:
		return nil, fmt.Errorf("new receiver: rescan interval %v is negative", cfg.Rescan)
	case cfg.Debounce < 0:
		return nil, fmt.Errorf("new receiver: debounce %v is negative", cfg.Debounce)
	}
	r := &Receiver{
		dir:        cfg.Dir,
		inbox:      cfg.Inbox,
		rescan:     cfg.Rescan,
		debounce:   cfg.Debounce,
		pollOnly:   cfg.PollOnly,
		log:        cfg.Logger,
		newWatcher: newFSWatcher,
	}
	if r.rescan == 0 {
		r.rescan = DefaultRescanInterval
	}
	if r.debounce == 0 {
		r.debounce = DefaultDebounce
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r, nil
}

// Run implements medium.Receiver.
func (r *Receiver) Run(ctx context.Context, out chan<- string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := r.inbox.RemoveTemps(); err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wctx, stop := context.WithCancel(ctx)
	defer stop() // runs before wg.Wait: defers run last-in first-out

	// The watcher goroutine only marks the directory dirty through kick, a
	// one-slot channel: any number of events costs one pending scan.
	kick := make(chan struct{}, 1)
	if r.pollOnly {
		r.log.Info("watching disabled by config; polling", slog.String(logDir, r.dir), slog.Duration(logRescan, r.rescan))
	} else if kind, ok := noEventsFS(r.dir); ok {
		r.log.Info("file system reports no events; polling", slog.String(logDir, r.dir), slog.String(logFSType, kind),
			slog.Duration(logRescan, r.rescan))
	} else {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.watch(wctx, kick)
		}()
	}

	// Restart recovery: files claimed before a restart go first.
	left, err := r.inbox.List()
	if err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	s := &scanner{r: r, out: out, stuck: map[string]bool{}}
	if len(left) > 0 {
		r.log.Info("resuming files left in the inbox", slog.Int(logCount, len(left)))
		// A copy of a leftover that reappeared on the medium is a
		// duplicate. Quarantine it now: once the consumer has removed the
		// leftover, the copy would look like a new arrival.
		s.quarantineCopies(left)
	}
	for _, name := range left {
		select {
		case out <- name:
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	tick := time.NewTicker(r.rescan)
	defer tick.Stop()
	for {
		// Drain a pending kick: this scan covers every event so far.
		select {
		case <-kick:
		default:
		}
		if err := s.scan(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		case <-kick:
			// Debounce: let a burst of arrivals land, then scan once.
			t := time.NewTimer(r.debounce)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
	}
}

// signal marks the directory dirty without ever blocking.
func signal(kick chan<- struct{}) {
	select {
	case kick <- struct{}{}:
	default:
	}
}

// watch owns the fsnotify watcher: it turns events and errors into kicks,
// and recreates the watcher after a failure, polling meanwhile. Its work
// per event is bounded: a name check and a non-blocking send.
func (r *Receiver) watch(ctx context.Context, kick chan<- struct{}) {
	for {
		err := r.watchOnce(ctx, kick)
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("fsnotify unavailable; polling until it recovers", slog.String(logDir, r.dir), slog.String(logError, err.Error()))
		signal(kick) // events may have been lost: rescan
		t := time.NewTimer(r.rescan)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// watchOnce runs one watcher until ctx ends (nil) or it fails.
func (r *Receiver) watchOnce(ctx context.Context, kick chan<- struct{}) error {
	w, err := r.newWatcher()
	if err != nil {
		return fmt.Errorf("create watcher: %w", err)
	}
	defer w.Close()
	if err := w.Add(r.dir); err != nil {
		return fmt.Errorf("watch %s: %w", r.dir, err)
	}
	// A file may have arrived after the last scan listed the directory
	// and before the watch began.
	signal(kick)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events():
			if !ok {
				return errors.New("watcher event channel closed")
			}
			if filepath.Clean(ev.Name) == filepath.Clean(r.dir) && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				// The directory itself went away (or was unmounted):
				// inotify drops the watch silently, so start over.
				return fmt.Errorf("watched directory %s removed or renamed", r.dir)
			}
			if ev.Has(fsnotify.Create|fsnotify.Write) && medium.ValidName(filepath.Base(ev.Name)) {
				signal(kick)
			}
		case err, ok := <-w.Errors():
			if !ok {
				return errors.New("watcher error channel closed")
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				r.log.Warn("fsnotify queue overflowed; rescanning", slog.String(logDir, r.dir))
			} else {
				r.log.Warn("fsnotify error; rescanning", slog.String(logDir, r.dir), slog.String(logError, err.Error()))
			}
			signal(kick)
		}
	}
}

// noEventsFS reports whether dir is on a file system where inotify does not
// see changes made by others (network and FUSE file systems, discs).
func noEventsFS(dir string) (string, bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "", false
	}
	kind, ok := noEventsMagic[int64(st.Type)]
	return kind, ok
}

// noEventsMagic maps statfs magic numbers to names for noEventsFS.
var noEventsMagic = map[int64]string{
	unix.NFS_SUPER_MAGIC:      "nfs",
	unix.SMB_SUPER_MAGIC:      "smb",
	unix.CIFS_SUPER_MAGIC:     "cifs",
	unix.SMB2_SUPER_MAGIC:     "smb2",
	unix.FUSE_SUPER_MAGIC:     "fuse",
	unix.V9FS_MAGIC:           "9p",
	unix.ISOFS_SUPER_MAGIC:    "iso9660",
	unix.UDF_SUPER_MAGIC:      "udf",
	unix.AFS_FS_MAGIC:         "afs",
	unix.CEPH_SUPER_MAGIC:     "ceph",
	unix.OCFS2_SUPER_MAGIC:    "ocfs2",
	unix.CODA_SUPER_MAGIC:     "coda",
	unix.NCP_SUPER_MAGIC:      "ncp",
	unix.ECRYPTFS_SUPER_MAGIC: "ecryptfs",
}

// scanner claims the files a scan lists, one at a time.
type scanner struct {
	r   *Receiver
	out chan<- string
	// stuck holds names copied into the inbox whose source could not be
	// removed (a read-only disc), so they are not claimed again. It is
	// pruned to the names still listed, so it stays as small as the
	// directory.
	stuck map[string]bool
	// failing holds names whose claim failed, so that a file that keeps
	// failing is logged at warning level once, not at every scan.
	failing map[string]bool
	// dirErr is the last directory error logged, for the same reason.
	dirErr string
}

// scan lists the drop directory and claims and sends each valid name in
// order. Failures of the medium are logged and left for the next scan; an
// error return means ctx ended or the inbox failed.
func (s *scanner) scan(ctx context.Context) error {
	r := s.r
	drop, err := safefs.OpenDir(r.dir)
	var names []string
	if err == nil {
		defer drop.Close()
		names, err = drop.Readdirnames(-1)
	}
	if err != nil {
		// A directory not there yet (a disc not mounted) is waited
		// for, not a failure.
		if !errors.Is(err, fs.ErrNotExist) {
			r.inbox.ReceiveError()
		}
		if msg := err.Error(); msg != s.dirErr {
			s.dirErr = msg
			r.log.Warn("cannot list drop directory; retrying", slog.String(logDir, r.dir), slog.String(logError, msg))
		}
		return nil
	}
	s.dirErr = ""
	names = slices.DeleteFunc(names, func(n string) bool { return !medium.ValidName(n) })
	slices.Sort(names)
	prune(s.stuck, names)
	prune(s.failing, names)

	inbox, err := safefs.OpenDir(r.inbox.Dir())
	if err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	defer inbox.Close()
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		if s.stuck[name] {
			continue
		}
		ok, err := s.claim(drop, inbox, name)
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		if !ok {
			continue
		}
		select {
		case s.out <- name:
		case <-ctx.Done():
			// Claimed but not sent: it is in the inbox and goes first at
			// the next start.
			return ctx.Err()
		}
	}
	return nil
}

// prune deletes from set the names not in sorted.
func prune(set map[string]bool, sorted []string) {
	for n := range set {
		if _, found := slices.BinarySearch(sorted, n); !found {
			delete(set, n)
		}
	}
}

// claim moves name from drop into inbox and reports whether it did. An
// error means the inbox failed; problems with the file or the medium are
// logged, and the file is quarantined or left for the next scan.
func (s *scanner) claim(drop, inbox *os.File, name string) (bool, error) {
	r := s.r
	// The rename would claim a file the receiver may not read all the
	// same, and the consumer's read would then fail and quarantine it.
	// Leave it on the medium until it can be read (a publisher's umask
	// or ownership that someone fixes).
	if err := readable(drop, name); err != nil {
		s.fail(name, "cannot read file; retrying", err)
		return false, nil
	}
	err := safefs.RenameNoReplace(drop, name, inbox, name)
	switch {
	case err == nil:
	case errors.Is(err, unix.ENOENT):
		return false, nil // gone since the listing
	case errors.Is(err, unix.EEXIST):
		s.duplicate(name)
		return false, nil
	case errors.Is(err, unix.EXDEV):
		return s.copyClaim(drop, inbox, name)
	default:
		s.fail(name, "cannot claim file; retrying", err)
		return false, nil
	}
	// The claim is durable once the inbox holds the entry on disk: from
	// then on a crash leaves the file in the inbox, to be sent first at the
	// next start.
	if err := safefs.Sync(inbox); err != nil {
		return false, err
	}
	// Also make the removal from the drop directory durable, so that the
	// file does not come back there after a crash as a duplicate.
	if err := safefs.Sync(drop); err != nil {
		r.log.Warn("cannot sync drop directory", slog.String(logDir, r.dir), slog.String(logError, err.Error()))
	}
	delete(s.failing, name)
	return true, nil
}

// readable returns the error of opening name in dir for reading if the
// open was refused for permissions (EACCES, EPERM), and nil otherwise:
// any other failure (a missing file, a symbolic link) is the rename's
// and the consumer's to handle, as before. Only a regular file is opened
// (opening a device can have side effects).
func readable(dir *os.File, name string) error {
	if st, err := safefs.Lstat(dir, name); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err == nil {
		_ = unix.Close(fd)
		return nil
	}
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		return &os.PathError{Op: "open", Path: filepath.Join(dir.Name(), name), Err: err}
	}
	return nil
}

// quarantineCopies quarantines, as duplicates, the drop files that have
// the name of one of the inbox leftovers. A drop directory that cannot be
// read is left for the scans, which log it.
func (s *scanner) quarantineCopies(left []string) {
	drop, err := safefs.OpenDir(s.r.dir)
	if err != nil {
		return
	}
	defer drop.Close()
	for _, name := range left {
		if _, err := safefs.Lstat(drop, name); err == nil {
			s.duplicate(name)
		}
	}
}

// duplicate quarantines a drop file whose name the inbox already holds.
func (s *scanner) duplicate(name string) {
	err := s.r.inbox.QuarantineFrom(s.r.dir, name, medium.ReasonDuplicateName,
		"the inbox already holds a file of this name; this copy arrived on the medium meanwhile")
	if err != nil && !errors.Is(err, unix.ENOENT) {
		s.fail(name, "cannot quarantine duplicate; retrying", err)
	}
}

// fail logs a claim failure, at warning level the first time for a name.
func (s *scanner) fail(name, msg string, err error) {
	level := slog.LevelDebug
	if s.failing == nil {
		s.failing = map[string]bool{}
	}
	if !s.failing[name] {
		s.failing[name] = true
		level = slog.LevelWarn
	}
	s.r.log.Log(context.Background(), level, msg, slog.String(logFile, name), slog.String(logError, err.Error()))
}

// copyClaim claims name by copying it from drop, on another file system,
// into inbox, then removing it from drop. See the package doc.
func (s *scanner) copyClaim(drop, inbox *os.File, name string) (bool, error) {
	r := s.r
	src, size, err := safefs.OpenRegular(drop, name, r.inbox.MaxFileSize())
	var refused *safefs.RefusedError
	switch {
	case errors.Is(err, unix.ENOENT):
		return false, nil
	case errors.As(err, &refused) && refused.Reason != safefs.ReasonReadError:
		s.refuse(name, refused)
		return false, nil
	case err != nil:
		s.fail(name, "cannot open file to copy; retrying", err)
		return false, nil
	}
	defer src.Close()
	var srcStat unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &srcStat); err != nil {
		s.fail(name, "cannot stat file to copy; retrying", err)
		return false, nil
	}

	// A failure inside the copy may be the source's (a disc read error, a
	// file still being written) or the inbox's (disk full): either way log
	// it and try again at the next scan. A failure to create, fsync or
	// close the inbox file is the inbox's and stops Run.
	var copyErr error
	tmp, err := safefs.WriteTemp(inbox, name, 0o600, func(f *os.File) error {
		// Read at most one byte past the size fstat saw, so a source that
		// keeps growing cannot fill the inbox.
		n, err := io.Copy(f, io.LimitReader(src, size+1))
		switch {
		case err != nil:
			copyErr = err
		case n != size:
			// Someone is still writing or truncating the source: it was
			// not renamed into place complete.
			copyErr = fmt.Errorf("size changed from %d to %d bytes while copied", size, n)
		}
		return copyErr
	})
	if copyErr != nil {
		s.fail(name, "cannot copy file; retrying", copyErr)
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("copy %s into inbox: %w", name, err)
	}
	err = safefs.RenameNoReplace(inbox, tmp, inbox, name)
	if err != nil {
		_ = safefs.Unlink(inbox, tmp)
		if errors.Is(err, unix.EEXIST) {
			s.duplicate(name)
			return false, nil
		}
		return false, fmt.Errorf("copy %s into inbox: %w", name, err)
	}
	// As for a rename claim: durable in the inbox before anything else.
	if err := safefs.Sync(inbox); err != nil {
		return false, err
	}
	// Remove the source only if it is still the file we copied.
	if cur, err := safefs.Lstat(drop, name); err == nil && cur.Dev == srcStat.Dev && cur.Ino == srcStat.Ino {
		if err := safefs.Unlink(drop, name); err != nil && !errors.Is(err, unix.ENOENT) {
			r.log.Warn("copied file into inbox but cannot remove it from the medium; not claiming it again",
				slog.String(logFile, name), slog.String(logError, err.Error()))
			s.stuck[name] = true
		} else if err := safefs.Sync(drop); err != nil {
			r.log.Warn("cannot sync drop directory", slog.String(logDir, r.dir), slog.String(logError, err.Error()))
		}
	}
	delete(s.failing, name)
	return true, nil
}

// refuse records a source that cannot be copied in quarantine.
func (s *scanner) refuse(name string, refused *safefs.RefusedError) {
	err := s.r.inbox.QuarantineFrom(s.r.dir, name, refused.Reason, refused.Error())
	if err != nil && !errors.Is(err, unix.ENOENT) {
		// The reason file may already be written; trying again at every
		// scan would write another each time. Leave the file alone until
		// an operator removes it (stuck is pruned when the name goes).
		s.r.log.Warn("cannot remove refused file from the medium; ignoring it until it is removed",
			slog.String(logFile, name), slog.String(logError, err.Error()))
		s.stuck[name] = true
	}
}
