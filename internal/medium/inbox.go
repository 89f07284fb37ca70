package medium

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/ferrybridge/ferry/internal/medium/internal/safefs"
)

// Reasons a file is refused or quarantined. FileError.Reason holds one of
// the first five; receivers quarantine with ReasonDuplicateName; callers
// add their own (an envelope's reason codes).
const (
	ReasonNotRegular    = safefs.ReasonNotRegular // a FIFO, device, socket or directory
	ReasonSymlink       = safefs.ReasonSymlink
	ReasonTooLarge      = safefs.ReasonTooLarge // larger than the size cap
	ReasonHardLink      = safefs.ReasonHardLink // more than one link: may alias a file elsewhere
	ReasonReadError     = safefs.ReasonReadError
	ReasonDuplicateName = "duplicate_name" // the inbox already holds a file of that name
)

// ReasonExt is appended to a quarantined file's name to name its reason file.
const ReasonExt = ".reason"

// Limits on what a reason file records, so that a hostile error text
// cannot fill the disk.
const (
	maxReasonLen = 64
	maxDetailLen = 4096
	// maxQuarantineSuffix bounds the search for a free quarantine name.
	maxQuarantineSuffix = 1000
)

// Attribute keys for log records.
const (
	logFile   = "file"
	logReason = "reason"
	logError  = "error"
	logDir    = "dir"
	logKept   = "kept"
	logCount  = "count"
)

// filePerm is the mode of files the inbox writes (reason files, copies).
const filePerm = 0o600

// InboxConfig configures an Inbox.
type InboxConfig struct {
	Dir           string // claimed files
	QuarantineDir string // rejected files and their .reason files
	MaxFileSize   int64  // 0 means DefaultMaxFileSize
	Logger        *slog.Logger
	// OnQuarantine, if set, is called with the reason of every file
	// quarantined, after its record is durable (for metrics and alarms).
	OnQuarantine func(reason string)
	// OnReceiveError, if set, is called each time the receiver claiming
	// into this inbox fails to read its medium (a listing that fails,
	// and is retried), for metrics.
	OnReceiveError func()
}

// Inbox is a local directory of claimed envelope files, with a quarantine
// directory beside it on the same file system. An inbox has one owner: one
// Receiver claims into it and one consumer reads, removes and quarantines.
// Its methods are safe for concurrent use on distinct names.
type Inbox struct {
	dir     string
	qdir    string
	maxSize int64
	log     *slog.Logger
	onQuar  func(reason string)
	onRecv  func()
}

// OpenInbox creates the directories if needed (0700) and returns the inbox.
// Dir and QuarantineDir must differ and be on the same file system, since
// quarantining is a rename.
func OpenInbox(cfg InboxConfig) (*Inbox, error) {
	switch {
	case cfg.Dir == "":
		return nil, errors.New("open inbox: dir is empty")
	case cfg.QuarantineDir == "":
		return nil, errors.New("open inbox: quarantine dir is empty")
	case cfg.MaxFileSize < 0:
		return nil, fmt.Errorf("open inbox: max file size %d is negative", cfg.MaxFileSize)
	}
	if filepath.Clean(cfg.Dir) == filepath.Clean(cfg.QuarantineDir) {
		return nil, fmt.Errorf("open inbox: dir and quarantine dir are both %s", cfg.Dir)
	}
	var devs [2]uint64
	for i, d := range []string{cfg.Dir, cfg.QuarantineDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open inbox: %w", err)
		}
		var st unix.Stat_t
		if err := unix.Stat(d, &st); err != nil {
			return nil, fmt.Errorf("open inbox: stat %s: %w", d, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return nil, fmt.Errorf("open inbox: %s is not a directory", d)
		}
		devs[i] = st.Dev
	}
	if devs[0] != devs[1] {
		return nil, fmt.Errorf("open inbox: %s and %s are on different file systems", cfg.Dir, cfg.QuarantineDir)
	}
	in := &Inbox{dir: cfg.Dir, qdir: cfg.QuarantineDir, maxSize: cfg.MaxFileSize, log: cfg.Logger, onQuar: cfg.OnQuarantine, onRecv: cfg.OnReceiveError}
	if in.maxSize == 0 {
		in.maxSize = DefaultMaxFileSize
	}
	if in.log == nil {
		in.log = slog.New(slog.DiscardHandler)
	}
	return in, nil
}

// ReceiveError reports that the receiver failed to read its medium; see
// InboxConfig.OnReceiveError.
func (in *Inbox) ReceiveError() {
	if in.onRecv != nil {
		in.onRecv()
	}
}

// Dir returns the inbox directory.
func (in *Inbox) Dir() string { return in.dir }

// QuarantineDir returns the quarantine directory.
func (in *Inbox) QuarantineDir() string { return in.qdir }

// MaxFileSize returns the size cap for files in the inbox.
func (in *Inbox) MaxFileSize() int64 { return in.maxSize }

// List returns the names of files in the inbox that pass ValidName, sorted.
func (in *Inbox) List() ([]string, error) {
	names, err := listValid(in.dir)
	if err != nil {
		return nil, fmt.Errorf("list inbox: %w", err)
	}
	return names, nil
}

// listValid returns the sorted names in dir that pass ValidName.
func listValid(dir string) ([]string, error) {
	f, err := safefs.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	all, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read directory %s: %w", dir, err)
	}
	names := slices.DeleteFunc(all, func(n string) bool { return !ValidName(n) })
	slices.Sort(names)
	return names, nil
}

// Read reads a claimed file without following symlinks. It fails with a
// *FileError (reason "not_regular", "too_large", ...) for anything but a
// regular file with one link within the size cap. The checks are made on
// the open descriptor and the data is read from it, so a file swapped in
// meanwhile is never read. A missing file fails with an error matching
// fs.ErrNotExist that is not a *FileError; an invalid name fails with
// ErrInvalidName.
func (in *Inbox) Read(name string) ([]byte, error) {
	if !ValidName(name) {
		return nil, fmt.Errorf("read %q: %w", name, ErrInvalidName)
	}
	d, err := safefs.OpenDir(in.dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	defer d.Close()
	f, size, err := safefs.OpenRegular(d, name, in.maxSize)
	if err != nil {
		return nil, fileError(name, err)
	}
	defer f.Close()
	data, err := safefs.ReadAll(f, size, in.maxSize)
	if err != nil {
		return nil, fileError(name, err)
	}
	return data, nil
}

// Open opens a claimed file for reading with the checks of [Inbox.Read],
// for a file too large to read into memory at once, and returns it with
// its size as checked. The caller reads no more than size bytes (the
// file is not expected to grow, but nothing stops a writer with access
// to the inbox) and closes the file.
func (in *Inbox) Open(name string) (*os.File, int64, error) {
	if !ValidName(name) {
		return nil, 0, fmt.Errorf("open %q: %w", name, ErrInvalidName)
	}
	d, err := safefs.OpenDir(in.dir)
	if err != nil {
		return nil, 0, fmt.Errorf("open %s: %w", name, err)
	}
	defer d.Close()
	f, size, err := safefs.OpenRegular(d, name, in.maxSize)
	if err != nil {
		return nil, 0, fileError(name, err)
	}
	return f, size, nil
}

// fileError turns a refusal into a *FileError and wraps anything else.
func fileError(name string, err error) error {
	var re *safefs.RefusedError
	if errors.As(err, &re) {
		return &FileError{Name: name, Reason: re.Reason, Err: re.Err}
	}
	return fmt.Errorf("read %s: %w", name, err)
}

// Remove deletes a processed file and syncs the directory. A missing file
// fails with an error matching fs.ErrNotExist.
func (in *Inbox) Remove(name string) error {
	if !ValidName(name) {
		return fmt.Errorf("remove %q: %w", name, ErrInvalidName)
	}
	d, err := safefs.OpenDir(in.dir)
	if err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	defer d.Close()
	if err := safefs.Unlink(d, name); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	// Make the removal durable, so that the file does not come back after
	// a crash to be processed a second time.
	if err := safefs.Sync(d); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}

// Quarantine moves a file into the quarantine directory with a
// NAME.reason file beside it holding reason and detail. If the quarantine
// already holds NAME, the file is kept as NAME.1, NAME.2, ... (with
// NAME.1.reason, ...). Reason and detail are sanitized: the reason to
// [a-z0-9_.-] and 64 bytes, the detail to printable text and 4 KiB. A
// missing file fails with an error matching fs.ErrNotExist.
func (in *Inbox) Quarantine(name, reason, detail string) error {
	return in.QuarantineFrom(in.dir, name, reason, detail)
}

// QuarantineFrom moves dir/name into the quarantine directory like
// Quarantine; receivers use it for files they refuse before claiming
// them. If dir is on another file system, the file cannot be moved: the
// reason file is written alone (saying the payload was not kept) and the
// file is removed from dir.
func (in *Inbox) QuarantineFrom(dir, name, reason, detail string) error {
	if !ValidName(name) {
		return fmt.Errorf("quarantine %q: %w", name, ErrInvalidName)
	}
	reason, detail = sanitizeReason(reason), sanitizeDetail(detail)
	src, err := safefs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("quarantine %s: %w", name, err)
	}
	defer src.Close()
	q, err := safefs.OpenDir(in.qdir)
	if err != nil {
		return fmt.Errorf("quarantine %s: %w", name, err)
	}
	defer q.Close()

	kept := true
	target, err := in.moveToQuarantine(src, q, name)
	if errors.Is(err, unix.EXDEV) {
		kept = false
		target, err = freeQuarantineName(q, name)
	}
	if err != nil {
		return fmt.Errorf("quarantine %s: %w", name, err)
	}
	text := reasonText(name, reason, detail, "")
	if !kept {
		text = reasonText(name, reason, detail, "not kept (it was on another file system)")
	}
	tmp, err := safefs.WriteTemp(q, target+ReasonExt, filePerm, func(f *os.File) error {
		_, err := io.WriteString(f, text)
		return err
	})
	if err != nil {
		return fmt.Errorf("quarantine %s: write reason file: %w", name, err)
	}
	if kept {
		// target is ours now; a stale reason file for it may be replaced.
		err = safefs.Rename(q, tmp, target+ReasonExt)
	} else {
		// No file holds target, so claim the name with the reason file
		// without ever replacing anything.
		err = safefs.RenameNoReplace(q, tmp, q, target+ReasonExt)
	}
	if err != nil {
		_ = safefs.Unlink(q, tmp)
		return fmt.Errorf("quarantine %s: write reason file: %w", name, err)
	}
	// Sync the quarantine before the source, so that a crash in between
	// leaves the file in quarantine (or in both places), never nowhere.
	if err := safefs.Sync(q); err != nil {
		return fmt.Errorf("quarantine %s: %w", name, err)
	}
	if !kept {
		// The reason is durable; now the refused file may go.
		err := safefs.Unlink(src, name)
		if errors.Is(err, unix.EISDIR) {
			// A directory planted under an envelope name: remove it if
			// it is empty. A non-empty one stays; the caller is told.
			err = safefs.RemoveDir(src, name)
		}
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("quarantine %s: remove from %s: %w", name, dir, err)
		}
	}
	if err := safefs.Sync(src); err != nil {
		return fmt.Errorf("quarantine %s: %w", name, err)
	}
	if in.onQuar != nil {
		in.onQuar(reason)
	}
	in.log.Warn("file quarantined", slog.String(logFile, name), slog.String(logReason, reason), slog.String(logDir, in.qdir),
		slog.Bool(logKept, kept))
	return nil
}

// QuarantineNote records in quarantine a refused file whose payload cannot
// be kept there, such as a file on a remote medium (SFTP) or one too large
// to copy: it writes a NAME.reason file alone, saying the payload was not
// kept, under the first name of NAME, NAME.1, ... that neither a file nor
// a reason file holds, and fsyncs the quarantine directory. Reason and
// detail are sanitized as by Quarantine. The caller removes the file from
// the medium afterwards, once the record is durable.
func (in *Inbox) QuarantineNote(name, reason, detail string) error {
	if !ValidName(name) {
		return fmt.Errorf("quarantine %q: %w", name, ErrInvalidName)
	}
	reason, detail = sanitizeReason(reason), sanitizeDetail(detail)
	q, err := safefs.OpenDir(in.qdir)
	if err != nil {
		return fmt.Errorf("quarantine %s: %w", name, err)
	}
	defer q.Close()
	target, err := freeQuarantineName(q, name)
	if err != nil {
		return fmt.Errorf("quarantine %s: %w", name, err)
	}
	text := reasonText(name, reason, detail, "not kept (it was on a remote medium)")
	tmp, err := safefs.WriteTemp(q, target+ReasonExt, filePerm, func(f *os.File) error {
		_, err := io.WriteString(f, text)
		return err
	})
	if err != nil {
		return fmt.Errorf("quarantine %s: write reason file: %w", name, err)
	}
	// No file holds target: claim the name with the reason file without
	// ever replacing anything.
	if err := safefs.RenameNoReplace(q, tmp, q, target+ReasonExt); err != nil {
		_ = safefs.Unlink(q, tmp)
		return fmt.Errorf("quarantine %s: write reason file: %w", name, err)
	}
	if err := safefs.Sync(q); err != nil {
		return fmt.Errorf("quarantine %s: %w", name, err)
	}
	if in.onQuar != nil {
		in.onQuar(reason)
	}
	in.log.Warn("file quarantined", slog.String(logFile, name), slog.String(logReason, reason), slog.String(logDir, in.qdir),
		slog.Bool(logKept, false))
	return nil
}

// reasonText is the content of a reason file. payload, when not empty,
// says why the payload is not kept beside it.
func reasonText(name, reason, detail, payload string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "reason: %s\ndetail: %s\nfile: %s\ntime: %s\n", reason, detail, name, time.Now().UTC().Format(time.RFC3339Nano))
	if payload != "" {
		fmt.Fprintf(&b, "payload: %s\n", payload)
	}
	return b.String()
}

// ErrInInbox is returned, wrapped, by [Inbox.Add] when the inbox already
// holds a file of the name.
var ErrInInbox = errors.New("medium: name already in the inbox")

// ErrSizeMismatch is returned, wrapped, by [Inbox.Add] when the bytes
// written are more or fewer than the size announced.
var ErrSizeMismatch = errors.New("medium: size differs from the size announced")

// Add puts a file that does not come from a local directory (a download
// from a remote medium) into the inbox durably. It checks that the inbox
// does not hold name yet, creates a fresh temporary file in the inbox
// (O_EXCL, mode 0600) and calls write with a writer to it; write must
// write exactly size bytes. Add then fsyncs and closes the file, renames
// it to name without ever replacing a file, and fsyncs the inbox
// directory. When Add returns nil the file is in the inbox for good; on
// any failure nothing of it stays there.
//
// Add fails with ErrInvalidName for an invalid name; with a *FileError of
// reason ReasonTooLarge when size exceeds the size cap, before write is
// called; with ErrInInbox when the inbox holds name, checked before write
// is called and again, atomically, by the rename; and with
// ErrSizeMismatch when write wrote fewer bytes than size, or tried to
// write more (the writer refuses those bytes with an error wrapping
// ErrSizeMismatch). An error that write returns is returned wrapped, so
// the caller recognizes its own errors. Every other error, including a
// failure of the writer itself (a full disk), is a failure of the inbox.
func (in *Inbox) Add(name string, size int64, write func(w io.Writer) error) error {
	if !ValidName(name) {
		return fmt.Errorf("add %q: %w", name, ErrInvalidName)
	}
	if size < 0 || size > in.maxSize {
		return &FileError{Name: name, Reason: ReasonTooLarge,
			Err: fmt.Errorf("%d bytes, the size cap is %d", size, in.maxSize)}
	}
	d, err := safefs.OpenDir(in.dir)
	if err != nil {
		return fmt.Errorf("add %s: %w", name, err)
	}
	defer d.Close()
	switch _, err := safefs.Lstat(d, name); {
	case err == nil:
		return fmt.Errorf("add %s: %w", name, ErrInInbox)
	case !errors.Is(err, unix.ENOENT):
		return fmt.Errorf("add %s: %w", name, err)
	}
	var cbErr error // write's own error, as opposed to the inbox's
	tmp, err := safefs.WriteTemp(d, name, filePerm, func(f *os.File) error {
		w := &sizedWriter{f: f, left: size}
		err := write(w)
		switch {
		case w.err != nil:
			// The writer failed or refused: that error, not write's
			// wrapping of it, says what happened.
			return w.err
		case err != nil:
			cbErr = err
			return err
		case w.left != 0:
			return fmt.Errorf("%w: %d bytes written, %d announced", ErrSizeMismatch, size-w.left, size)
		}
		return nil
	})
	if cbErr != nil {
		return fmt.Errorf("add %s: %w", name, cbErr)
	}
	if err != nil {
		return fmt.Errorf("add %s: %w", name, err)
	}
	if err := safefs.RenameNoReplace(d, tmp, d, name); err != nil {
		_ = safefs.Unlink(d, tmp)
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add %s: %w", name, ErrInInbox)
		}
		return fmt.Errorf("add %s: %w", name, err)
	}
	// The file is in the inbox once the directory entry is on disk.
	if err := safefs.Sync(d); err != nil {
		return fmt.Errorf("add %s: %w", name, err)
	}
	return nil
}

// sizedWriter writes at most left more bytes to f and remembers its first
// error.
type sizedWriter struct {
	f    *os.File
	left int64
	err  error
}

func (w *sizedWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if int64(len(p)) > w.left {
		w.err = fmt.Errorf("%w: more bytes than announced", ErrSizeMismatch)
		return 0, w.err
	}
	n, err := w.f.Write(p)
	w.left -= int64(n)
	if err != nil {
		w.err = err
	}
	return n, err
}

// moveToQuarantine renames name from src into q under name, or name.N if
// taken, and returns the name it got.
func (in *Inbox) moveToQuarantine(src, q *os.File, name string) (string, error) {
	for i := 0; i <= maxQuarantineSuffix; i++ {
		target := quarantineName(name, i)
		err := safefs.RenameNoReplace(src, name, q, target)
		if err == nil {
			return target, nil
		}
		if !errors.Is(err, unix.EEXIST) {
			return "", err
		}
	}
	return "", fmt.Errorf("quarantine holds %s and %d more copies", name, maxQuarantineSuffix)
}

// freeQuarantineName returns the first of name, name.1, ... for which
// neither the file nor its reason file exists in q.
func freeQuarantineName(q *os.File, name string) (string, error) {
	for i := 0; i <= maxQuarantineSuffix; i++ {
		target := quarantineName(name, i)
		_, err1 := safefs.Lstat(q, target)
		_, err2 := safefs.Lstat(q, target+ReasonExt)
		if errors.Is(err1, unix.ENOENT) && errors.Is(err2, unix.ENOENT) {
			return target, nil
		}
	}
	return "", fmt.Errorf("quarantine holds %s and %d more copies", name, maxQuarantineSuffix)
}

func quarantineName(name string, i int) string {
	if i == 0 {
		return name
	}
	return name + "." + strconv.Itoa(i)
}

// RemoveTemps removes temporary files that a receiver left in the inbox
// when it crashed in the middle of copying a file in. Only the inbox's
// owner calls it, before it starts claiming.
func (in *Inbox) RemoveTemps() error {
	d, err := safefs.OpenDir(in.dir)
	if err != nil {
		return fmt.Errorf("remove inbox temps: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("remove inbox temps: read %s: %w", in.dir, err)
	}
	removed := 0
	for _, n := range names {
		if !safefs.IsTempName(n) {
			continue
		}
		if err := safefs.Unlink(d, n); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove inbox temps: %w", err)
		}
		removed++
	}
	if removed > 0 {
		in.log.Info("removed temporary files left in the inbox", slog.Int(logCount, removed), slog.String(logDir, in.dir))
		return safefs.Sync(d)
	}
	return nil
}

// sanitizeReason keeps a reason code to [a-z0-9_.-] and maxReasonLen bytes.
func sanitizeReason(s string) string {
	if s == "" {
		return "unknown"
	}
	if len(s) > maxReasonLen {
		s = s[:maxReasonLen]
	}
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			b[i] = '_'
		}
	}
	return string(b)
}

// sanitizeDetail keeps a detail text to printable characters on one line
// and about maxDetailLen bytes: tabs and line breaks become spaces, every
// other control or format character (such as U+202E, which reverses the
// text after it) and invalid UTF-8 becomes '?'.
func sanitizeDetail(s string) string {
	var b strings.Builder
	for i, r := range s {
		if b.Len() >= maxDetailLen {
			b.WriteString("...")
			break
		}
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			b.WriteByte('?')
		case r == '\t' || r == '\n' || r == '\r':
			b.WriteByte(' ')
		case !unicode.IsPrint(r):
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// FileError says why the inbox refused to read a file.
type FileError struct {
	Name   string
	Reason string
	Err    error
}

func (e *FileError) Error() string {
	if e.Err == nil {
		return e.Name + ": " + e.Reason
	}
	return e.Name + ": " + e.Reason + ": " + e.Err.Error()
}

func (e *FileError) Unwrap() error { return e.Err }
