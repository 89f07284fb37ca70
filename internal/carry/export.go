package carry

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferrybridge/ferry/internal/keys"
)

// Attribute keys for log records.
const (
	logSet   = "set"
	logDir   = "dir"
	logFile  = "file"
	logFiles = "files"
	logBytes = "bytes"
	logError = "error"

	logSkipped = "skipped"
	logMissing = "missing"
	logCorrupt = "corrupt"
	logExtra   = "extra"
)

// setFilePerm is the mode of the files of a carry set: they are burnt to a
// disc, which has no secrets in the clear (envelopes are encrypted).
const setFilePerm = 0o644

// ExportOptions configures [Export].
type ExportOptions struct {
	// SendDir is the directory the sending agent publishes envelopes into.
	SendDir string
	// OutDir is the carry set directory to create; it must be absent or
	// an empty directory.
	OutDir string
	// Zone holds the sending zone's keys; its signing key signs the
	// manifest and its name is the sender.
	Zone *keys.Zone
	// To is the recipient zone.
	To string
	// MaxBytes is the size budget of the set, files plus manifest; 0
	// means DefaultMaxBytes.
	MaxBytes int64
	// Now returns the creation time; nil means time.Now.
	Now func() time.Time
	// Logger receives a record per set; nil discards.
	Logger *slog.Logger

	// beforeRemove, when set, runs after the manifest is durable and
	// before the sources are removed; an error stops Export there, as a
	// crash would. Tests only.
	beforeRemove func() error
}

// Set describes a carry set written by [Export].
type Set struct {
	// Dir is the carry set directory.
	Dir string
	// Manifest is what the set's CARRY-MANIFEST says.
	Manifest *Manifest
	// Remaining counts the envelope files left in the send directory for
	// a later set.
	Remaining int
	// Ignored lists the names in the send directory that Export left alone
	// because they are not envelope file names or not regular files.
	// Names starting with '.' are neither touched nor listed.
	Ignored []string
	// Kept lists the sources that could not be removed after the set was
	// written; the next export carries them again, which is harmless.
	Kept []string
}

// candidate is an envelope file in the send directory.
type candidate struct {
	name string
	en   envName
	size int64
}

// Export moves envelopes from o.SendDir into a new carry set at o.OutDir,
// in channel and sequence order, as many as fit into o.MaxBytes, and
// writes the signed manifest. It returns [ErrNothingToExport] (and writes
// nothing) when there is no envelope to carry, [ErrOutDirNotEmpty] for an
// output directory in use, and a [*TooLargeError] for an envelope that
// does not fit into a set even alone. See the package documentation for
// the order of the steps and why it is crash safe.
func Export(ctx context.Context, o ExportOptions) (_ *Set, err error) {
	if o.SendDir == "" || o.OutDir == "" {
		return nil, errors.New("export: send and output directories are required")
	}
	if o.Zone == nil {
		return nil, errors.New("export: zone keys are required")
	}
	if msg, _ := keys.CheckZonePair(o.Zone.Name, o.To); msg != "" {
		return nil, fmt.Errorf("export: recipient zone: %s", msg)
	}
	if o.MaxBytes < 0 {
		return nil, fmt.Errorf("export: max bytes %d is negative", o.MaxBytes)
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	outExists, err := checkOutDir(o.OutDir)
	if err != nil {
		return nil, err
	}
	send, err := openDir(o.SendDir)
	if err != nil {
		return nil, fmt.Errorf("export: send directory: %w", err)
	}
	defer send.Close()
	cands, ignored, err := listSendDir(send)
	if err != nil {
		return nil, err
	}
	if len(cands) == 0 {
		return nil, ErrNothingToExport
	}

	m := &Manifest{
		ID:      NewID(),
		From:    o.Zone.Name,
		FromKey: keys.KeyID(o.Zone.Signer.KeyHash()),
		To:      o.To,
		Created: o.Now().UTC().Truncate(time.Second),
	}
	sel, err := selectFiles(m, cands, o.MaxBytes)
	if err != nil {
		return nil, err
	}

	// Write the set. Until the manifest is in place, a failure removes
	// what was written, so that the directory can be used again.
	if !outExists {
		if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
	}
	out, err := openDir(o.OutDir)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	defer out.Close()
	var written []string
	manifestDone := false
	defer func() {
		if err == nil || manifestDone {
			return
		}
		for _, n := range written {
			_ = unix.Unlinkat(int(out.Fd()), n, 0)
		}
		if !outExists {
			_ = os.Remove(o.OutDir)
		}
	}()

	ids := make([]unix.Stat_t, 0, len(sel))
	for _, c := range sel {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		f, st, err := copyInto(send, out, c)
		if f.Name != "" {
			written = append(written, f.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("export %s: %w", c.name, err)
		}
		m.Files = append(m.Files, f)
		m.Bytes += f.Size
		ids = append(ids, st)
	}
	// fsync the set directory: the files' names must be durable before the
	// manifest that lists them.
	if err := syncDir(out); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	signed, err := m.Sign(o.Zone.Signer)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	if err := writeManifest(out, signed); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	manifestDone = true

	set := &Set{Dir: o.OutDir, Manifest: m, Remaining: len(cands) - len(sel), Ignored: ignored}
	if o.beforeRemove != nil {
		if err := o.beforeRemove(); err != nil {
			return nil, err
		}
	}
	// Only now remove the sources: the set is complete and durable. A
	// source is removed only if it is still the file that was copied.
	for i, c := range sel {
		st, err := lstat(send, c.name)
		if err == nil && (st.Dev != ids[i].Dev || st.Ino != ids[i].Ino) {
			err = errors.New("replaced since it was copied")
		}
		if err == nil {
			err = unix.Unlinkat(int(send.Fd()), c.name, 0)
		}
		if err != nil {
			log.Warn("carry: source not removed", logFile, c.name, logError, err)
			set.Kept = append(set.Kept, c.name)
		}
	}
	if err := syncDir(send); err != nil {
		// The set is complete; a removal that does not survive a crash
		// only makes the envelope cross twice.
		log.Warn("carry: send directory not synced", logDir, o.SendDir, logError, err)
	}
	log.Info("carry: set exported", logSet, m.ID, logDir, o.OutDir, logFiles, len(m.Files), logBytes, m.Bytes)
	return set, nil
}

// checkOutDir checks that path is absent or an empty directory, and
// reports whether it exists.
func checkOutDir(path string) (bool, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("export: %w", err)
	}
	if !fi.IsDir() {
		return false, fmt.Errorf("export: %s is not a directory", path)
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return false, fmt.Errorf("export: %w", err)
	}
	if len(ents) > 0 {
		return false, fmt.Errorf("export: %s: %w", path, ErrOutDirNotEmpty)
	}
	return true, nil
}

// listSendDir returns the envelope files of the send directory in
// (channel, sequence) order, and the names it ignores.
func listSendDir(send *os.File) ([]candidate, []string, error) {
	names, err := send.Readdirnames(-1)
	if err != nil {
		return nil, nil, fmt.Errorf("export: read send directory: %w", err)
	}
	var cands []candidate
	var ignored []string
	for _, n := range names {
		if n == "" || n[0] == '.' {
			continue // temporary files of a publisher at work
		}
		en, ok := parseEnvName(n)
		if !ok {
			ignored = append(ignored, n)
			continue
		}
		st, err := lstat(send, n)
		if errors.Is(err, fs.ErrNotExist) {
			continue // claimed or removed meanwhile
		}
		if err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			ignored = append(ignored, n)
			continue
		}
		cands = append(cands, candidate{name: n, en: en, size: st.Size})
	}
	slices.SortFunc(cands, func(a, b candidate) int { return compareEnvNames(a.en, b.en) })
	slices.Sort(ignored)
	return cands, ignored, nil
}

// selectFiles returns the longest prefix of cands that fits into a set of
// maxBytes with its manifest m, up to MaxFiles files. It fails with a
// *TooLargeError if the first file that does not fit would not fit alone.
func selectFiles(m *Manifest, cands []candidate, maxBytes int64) ([]candidate, error) {
	var total int64
	lines := 0
	for i, c := range cands {
		if i == MaxFiles {
			return cands[:i], nil
		}
		ll := fileLineLen(File{Name: c.name, Size: c.size})
		need := total + c.size + int64(m.signedLen(i+1, total+c.size, lines+ll))
		if c.size <= MaxFileSize && need <= maxBytes {
			total += c.size
			lines += ll
			continue
		}
		alone := c.size + int64(m.signedLen(1, c.size, ll))
		if c.size > MaxFileSize || alone > maxBytes {
			return nil, &TooLargeError{Name: c.name, Size: c.size, MaxBytes: min(maxBytes, MaxFileSize)}
		}
		return cands[:i], nil
	}
	return cands, nil
}

// copyInto copies c from send into out under the same name, fsyncs it,
// and returns its File (Name set once the target exists) and the status
// of the source it read.
func copyInto(send, out *os.File, c candidate) (File, unix.Stat_t, error) {
	src, st, err := openRegular(send, c.name)
	if err != nil {
		return File{}, st, err
	}
	defer src.Close()
	if st.Size != c.size {
		return File{}, st, fmt.Errorf("changed while exporting: %d bytes, listed with %d", st.Size, c.size)
	}
	fd, err := unix.Openat(int(out.Fd()), c.name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, setFilePerm)
	if err != nil {
		return File{}, st, &os.PathError{Op: "create", Path: out.Name() + "/" + c.name, Err: err}
	}
	f := File{Name: c.name}
	dst := os.NewFile(uintptr(fd), out.Name()+"/"+c.name)
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(dst, h), io.LimitReader(src, c.size+1))
	if err == nil && n != c.size {
		err = fmt.Errorf("changed while exporting: read %d bytes, listed with %d", n, c.size)
	}
	if err == nil {
		// fsync each file: the manifest written later must never list a
		// file whose data a crash could lose.
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return f, st, err
	}
	f.Size = n
	h.Sum(f.SHA256[:0])
	return f, st, nil
}

// writeManifest writes the signed manifest durably: a temporary file
// created with O_EXCL, written and fsynced, renamed into place, and the
// directory fsynced.
func writeManifest(out *os.File, signed []byte) (err error) {
	tmp := "." + ManifestName + ".tmp-" + NewID()[:16]
	fd, err := unix.Openat(int(out.Fd()), tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, setFilePerm)
	if err != nil {
		return &os.PathError{Op: "create", Path: filepath.Join(out.Name(), tmp), Err: err}
	}
	f := os.NewFile(uintptr(fd), filepath.Join(out.Name(), tmp))
	renamed := false
	defer func() {
		if !renamed {
			_ = f.Close()
			_ = unix.Unlinkat(int(out.Fd()), tmp, 0)
		}
	}()
	if _, err := f.Write(signed); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync manifest: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close manifest: %w", err)
	}
	err = unix.Renameat2(int(out.Fd()), tmp, int(out.Fd()), ManifestName, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// No RENAME_NOREPLACE on this file system: link then unlink is
		// just as exclusive.
		err = unix.Linkat(int(out.Fd()), tmp, int(out.Fd()), ManifestName, 0)
		if err == nil {
			err = unix.Unlinkat(int(out.Fd()), tmp, 0)
		}
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: tmp, New: filepath.Join(out.Name(), ManifestName), Err: err}
	}
	renamed = true
	return syncDir(out)
}
