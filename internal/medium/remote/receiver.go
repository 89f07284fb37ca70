package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/ferrybridge/ferry/internal/medium"
)

// ReceiverConfig configures a [Receiver].
type ReceiverConfig struct {
	Dir        string        // the drop directory on the server (absolute, clean)
	Rescan     time.Duration // how often the drop directory is listed; must be > 0
	TempMaxAge time.Duration // the janitor removes temporary files older than this; must be > 0
	ChunkSize  int           // bytes per read; 0: DefaultChunkSize
	Logger     *slog.Logger  // nil: slog.Default()
}

// Receiver downloads envelope files from a remote drop directory into an
// inbox over a protocol's [Client]. Run it once at a time per inbox.
type Receiver struct {
	c     Client
	cfg   ReceiverConfig
	inbox *medium.Inbox
	jan   Janitor
	log   *slog.Logger
}

var _ medium.Receiver = (*Receiver)(nil)

// NewReceiver returns a Receiver over c claiming into inbox.
func NewReceiver(c Client, inbox *medium.Inbox, cfg ReceiverConfig) *Receiver {
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	log := logger(cfg.Logger)
	return &Receiver{c: c, cfg: cfg, inbox: inbox, jan: Janitor{MaxAge: cfg.TempMaxAge, Logger: log}, log: log}
}

// Run implements medium.Receiver; see the package doc.
func (r *Receiver) Run(ctx context.Context, out chan<- string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := r.inbox.RemoveTemps(); err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	// Restart recovery: files claimed before a restart go first.
	left, err := r.inbox.List()
	if err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	s := &scanner{r: r, out: out, stuck: map[string]bool{}, failing: map[string]bool{}, odd: map[string]bool{},
		unremoved: map[string]Entry{}}
	if len(left) > 0 {
		r.log.Info("resuming files left in the inbox", slog.Int(logCount, len(left)))
		// A copy of a leftover found on the server by the first listing
		// is a duplicate (the download finished but the removal from the
		// server did not). The first listing, not a later one: once the
		// consumer has removed the leftover, a copy would look like a
		// new arrival.
		s.leftovers = left
	}
	for _, name := range left {
		select {
		case out <- name:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	tick := time.NewTicker(r.cfg.Rescan)
	defer tick.Stop()
	for {
		if err := s.scan(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// remoteError is a failure to read from the server inside Inbox.Add.
type remoteError struct{ err error }

func (e *remoteError) Error() string { return "read from the server: " + e.err.Error() }
func (e *remoteError) Unwrap() error { return e.err }

// scanner claims the files a listing shows, one at a time.
type scanner struct {
	r   *Receiver
	out chan<- string
	// leftovers are the inbox files found at start, until the first
	// listing has been checked for copies of them (sorted).
	leftovers []string
	// stuck holds names downloaded or quarantined whose removal from the
	// server failed, so they are not taken again; failing holds names
	// whose claim failed, so a file that keeps failing is logged at
	// warning level once; odd holds names that are not regular files,
	// logged once. All are pruned to the names still listed.
	stuck, failing, odd map[string]bool
	// unremoved holds the files downloaded into the inbox whose removal
	// failed because the connection did (not the server's refusal), as
	// the listing showed them: the next scan that lists the same file
	// (same size and modification time) removes it, instead of taking it
	// again. Pruned like the sets above.
	unremoved map[string]Entry
	// listErr is the last listing error logged, for the same reason.
	listErr string
	buf     []byte
}

// scan lists the drop directory and claims and sends each valid name in
// order. Failures of the server are logged and left for the next scan;
// an error return means ctx ended or the inbox failed.
func (s *scanner) scan(ctx context.Context) error {
	r := s.r
	cn, err := r.c.Get(ctx)
	var entries []Entry
	if err == nil {
		entries, err = cn.List(ctx, r.cfg.Dir)
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.inbox.ReceiveError()
		if msg := err.Error(); msg != s.listErr {
			s.listErr = msg
			r.log.Warn("cannot list the drop directory; retrying", slog.String(logDir, r.cfg.Dir), slog.String(logError, msg))
		}
		return nil
	}
	if s.listErr != "" {
		s.listErr = ""
		r.log.Info("drop directory listed again", slog.String(logDir, r.cfg.Dir))
	}
	if r.jan.Due() {
		r.jan.Sweep(ctx, cn, r.cfg.Dir, entries)
	}
	var files []Entry
	var names []string
	for _, e := range entries {
		name := e.Name
		if !medium.ValidName(name) {
			continue
		}
		names = append(names, name)
		if !e.Regular {
			if !s.odd[name] {
				s.odd[name] = true
				r.log.Warn("not a regular file on the server; leaving it alone", slog.String(logFile, name), slog.String(logDir, r.cfg.Dir))
			}
			continue
		}
		files = append(files, e)
	}
	slices.Sort(names)
	slices.SortFunc(files, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	for _, set := range []map[string]bool{s.stuck, s.failing, s.odd} {
		prune(set, names)
	}
	prune(s.unremoved, names)
	leftovers := s.leftovers
	s.leftovers = nil

	for _, e := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := e.Name
		if s.stuck[name] {
			continue
		}
		if was, ok := s.unremoved[name]; ok {
			delete(s.unremoved, name)
			if e.Size == was.Size && e.ModTime.Equal(was.ModTime) {
				// Claimed before the connection was lost: remove it now.
				s.remove(ctx, cn, e, "removed a file claimed before the connection was lost")
				continue
			}
			// Another file under the same name: claimed (or found a
			// duplicate) like any other.
		}
		if cn.Dead() {
			// Lost while a send waited: the next scan reconnects.
			return nil
		}
		if _, found := slices.BinarySearch(leftovers, name); found {
			s.note(ctx, cn, name, medium.ReasonDuplicateName, duplicateDetail)
			continue
		}
		ok, err := s.claim(ctx, cn, e)
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

const duplicateDetail = "the inbox already holds a file of this name; this copy arrived on the medium meanwhile"

// prune deletes from set the names not in sorted.
func prune[V any](set map[string]V, sorted []string) {
	for n := range set {
		if _, found := slices.BinarySearch(sorted, n); !found {
			delete(set, n)
		}
	}
}

// claim downloads the file e names into the inbox and removes it from the
// server, and reports whether it did. An error means the inbox failed;
// problems with the file or the server are logged, and the file is
// quarantined or left for the next scan.
func (s *scanner) claim(ctx context.Context, cn Conn, e Entry) (bool, error) {
	r := s.r
	name := e.Name
	remote := path.Join(r.cfg.Dir, name)
	if e.Size > r.inbox.MaxFileSize() {
		s.tooLarge(ctx, cn, name, e.Size)
		return false, nil
	}
	f, err := cn.Open(ctx, remote)
	switch {
	case errors.Is(err, fs.ErrNotExist) && IsAnswer(err):
		return false, nil // gone since the listing
	case err != nil:
		s.fail(ctx, name, "cannot open file on the server; retrying", err)
		return false, nil
	}
	defer func() { _ = f.Close(context.WithoutCancel(ctx)) }()
	// Check the file opened, not the one listed: it may have been
	// replaced in between.
	st, err := f.Stat(ctx)
	switch {
	case err != nil:
		s.fail(ctx, name, "cannot stat file on the server; retrying", err)
		return false, nil
	case !st.Regular:
		s.fail(ctx, name, "file on the server is no longer a regular file; retrying", errors.New("not a regular file"))
		return false, nil
	case st.Size > r.inbox.MaxFileSize():
		s.tooLarge(ctx, cn, name, st.Size)
		return false, nil
	}

	if s.buf == nil {
		s.buf = make([]byte, r.cfg.ChunkSize)
	}
	// Read until the end of the file; the inbox refuses any byte past the
	// size the server reported, so a file that grows or a server that
	// lies about the size cannot fill the inbox.
	err = r.inbox.Add(name, st.Size, func(w io.Writer) error {
		buf := s.buf[:min(st.Size+1, int64(len(s.buf)))]
		for {
			if err := ctx.Err(); err != nil {
				return &remoteError{err}
			}
			n, err := f.ReadFull(ctx, buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return werr
				}
			}
			if err != nil {
				return &remoteError{err}
			}
			if n < len(buf) {
				return nil
			}
		}
	})
	var re *remoteError
	var fe *medium.FileError
	switch {
	case err == nil:
	case errors.Is(err, medium.ErrInInbox):
		s.note(ctx, cn, name, medium.ReasonDuplicateName, duplicateDetail)
		return false, nil
	case errors.Is(err, medium.ErrSizeMismatch):
		s.fail(ctx, name, "file changed size while downloaded; retrying", err)
		return false, nil
	case errors.As(err, &re):
		s.fail(ctx, name, "cannot download file; retrying", err)
		return false, nil
	case errors.As(err, &fe) && fe.Reason == medium.ReasonTooLarge:
		s.tooLarge(ctx, cn, name, st.Size)
		return false, nil
	default:
		return false, err
	}
	// The file is in the inbox for good: now it may leave the server.
	// Close first: a protocol with one transfer at a time (FTP) must
	// finish the download before it can remove.
	_ = f.Close(context.WithoutCancel(ctx))
	s.remove(ctx, cn, e, "")
	delete(s.failing, name)
	return true, nil
}

// remove removes from the server the file e, which is in the inbox, and
// logs done at INFO level if it is not empty. If the server refuses, the
// name is left alone while Run runs (stuck); if the connection fails, the
// next scan that lists the same file removes it (unremoved).
func (s *scanner) remove(ctx context.Context, cn Conn, e Entry, done string) {
	r := s.r
	name := e.Name
	err := cn.Remove(ctx, path.Join(r.cfg.Dir, name))
	switch {
	case err == nil || errors.Is(err, fs.ErrNotExist) && IsAnswer(err):
		if done != "" {
			r.log.Info(done, slog.String(logFile, name))
		}
	case IsAnswer(err):
		r.log.Warn("file is in the inbox but the server refuses to remove it; not taking it again",
			slog.String(logFile, name), slog.String(logError, err.Error()))
		s.stuck[name] = true
	default:
		if ctx.Err() == nil {
			r.log.Warn("file is in the inbox but the connection failed before it was removed from the server; removing it later",
				slog.String(logFile, name), slog.String(logError, err.Error()))
		}
		s.unremoved[name] = e
	}
}

// tooLarge records a file over the size cap in quarantine and removes it
// from the server.
func (s *scanner) tooLarge(ctx context.Context, cn Conn, name string, size int64) {
	s.r.log.Warn("file on the server is larger than the size cap", slog.String(logFile, name), slog.Int64(logSize, size),
		slog.Int64(logMaxSize, s.r.inbox.MaxFileSize()))
	s.note(ctx, cn, name, medium.ReasonTooLarge, fmt.Sprintf("%d bytes on the server, the size cap is %d", size, s.r.inbox.MaxFileSize()))
}

// note records a refused file in quarantine with a reason file alone (its
// payload is on the server, out of reach), then removes it from the
// server. If the removal fails, the file is left alone while Run runs, so
// that it is not recorded again at every scan.
func (s *scanner) note(ctx context.Context, cn Conn, name, reason, detail string) {
	if err := s.r.inbox.QuarantineNote(name, reason, detail); err != nil {
		s.fail(ctx, name, "cannot quarantine file; retrying", err)
		return
	}
	err := cn.Remove(ctx, path.Join(s.r.cfg.Dir, name))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.r.log.Warn("cannot remove quarantined file from the server; ignoring it until it is removed",
			slog.String(logFile, name), slog.String(logError, err.Error()))
		s.stuck[name] = true
	}
}

// fail logs a claim failure, at warning level the first time for a name;
// not at all once ctx has ended (the failure is the cancellation's).
func (s *scanner) fail(ctx context.Context, name, msg string, err error) {
	if ctx.Err() != nil {
		return
	}
	level := slog.LevelDebug
	if !s.failing[name] {
		s.failing[name] = true
		level = slog.LevelWarn
	}
	s.r.log.Log(ctx, level, msg, slog.String(logFile, name), slog.String(logError, err.Error()))
}
