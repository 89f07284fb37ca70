// Package safefs holds the careful file-system steps that the medium
// packages share: directory handles, no-replace renames, durable temporary
// files and opening untrusted files without following links.
//
// # Model
//
// Every operation works on a directory handle (*os.File opened with
// O_DIRECTORY) and a single path component. Callers validate names before
// they get here, so a name never contains '/' and no operation can leave
// its directory. Linux only: it uses renameat2, openat and fstatat.
//
// # Durability
//
// A file is durable under its final name only after its data was fsynced
// before the rename and its directory was fsynced after it. The helpers
// here do the first half; callers fsync directories with [Sync] once they
// have made all the changes to them that one step needs.
package safefs

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Reasons a file is refused by [OpenRegular].
const (
	ReasonNotRegular = "not_regular"
	ReasonSymlink    = "symlink"
	ReasonTooLarge   = "too_large"
	ReasonHardLink   = "hard_link"
	ReasonReadError  = "read_error"
)

// RefusedError says why [OpenRegular] or [ReadAll] refused a file.
type RefusedError struct {
	Reason string
	Err    error
}

func (e *RefusedError) Error() string {
	if e.Err == nil {
		return e.Reason
	}
	return e.Reason + ": " + e.Err.Error()
}

func (e *RefusedError) Unwrap() error { return e.Err }

// OpenDir opens path as a directory handle for the *at operations and for
// fsync. The caller closes it.
func OpenDir(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// Sync fsyncs a directory so that the entries created, renamed or removed
// in it survive a crash.
func Sync(dir *os.File) error {
	if err := dir.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir.Name(), err)
	}
	return nil
}

// tempMarker separates the final name from the random part of a temporary
// name.
const tempMarker = ".tmp-"

// TempName returns a fresh temporary name for final: ".<final>.tmp-<16 hex>".
// The leading dot keeps receivers and listings from taking it for a final
// name.
func TempName(final string) string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux.
	return "." + final + tempMarker + hex.EncodeToString(b[:])
}

// IsTempName reports whether name has the shape [TempName] produces. It
// checks the shape only, not that the final part is a valid name.
func IsTempName(name string) bool {
	if !strings.HasPrefix(name, ".") {
		return false
	}
	i := strings.LastIndex(name, tempMarker)
	if i < 2 {
		return false
	}
	rnd := name[i+len(tempMarker):]
	if len(rnd) != 16 {
		return false
	}
	for _, c := range []byte(rnd) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// WriteTemp creates a temporary file for final in dir with O_EXCL, lets
// fill write it, fsyncs and closes it, and returns its name. On any failure
// it removes the temporary file, so nothing partial stays behind.
func WriteTemp(dir *os.File, final string, perm uint32, fill func(f *os.File) error) (_ string, err error) {
	// name is not the named result: the failure returns below clear that,
	// and the deferred cleanup needs the name.
	name := TempName(final)
	// O_EXCL: never write into a file someone else created (a stale temp
	// or an attacker's symlink); O_NOFOLLOW for the same reason.
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return "", fmt.Errorf("create %s in %s: %w", name, dir.Name(), err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = unix.Unlinkat(int(dir.Fd()), name, 0)
		}
	}()
	// The mode is perm whatever the umask: the services run with
	// UMask=0077, and the other zone's user must read an envelope.
	if err = unix.Fchmod(fd, perm); err != nil {
		return "", fmt.Errorf("chmod %s: %w", name, err)
	}
	if err = fill(f); err != nil {
		return "", err
	}
	// fsync before the rename: without it a crash can leave the final name
	// pointing at an empty or short file, since the rename may reach the
	// disk before the data does.
	if err = f.Sync(); err != nil {
		return "", fmt.Errorf("fsync %s: %w", name, err)
	}
	// Close reports deferred write errors on some file systems (NFS).
	if err = f.Close(); err != nil {
		return "", fmt.Errorf("close %s: %w", name, err)
	}
	return name, nil
}

// RenameNoReplace renames oldName in oldDir to newName in newDir without
// ever replacing an existing newName: it fails with an error matching
// unix.EEXIST (and fs.ErrExist) then. Across file systems it fails with
// unix.EXDEV. Where the file system lacks RENAME_NOREPLACE it falls back
// to link then unlink, which is just as exclusive for regular files.
func RenameNoReplace(oldDir *os.File, oldName string, newDir *os.File, newName string) error {
	err := unix.Renameat2(int(oldDir.Fd()), oldName, int(newDir.Fd()), newName, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		err = unix.Linkat(int(oldDir.Fd()), oldName, int(newDir.Fd()), newName, 0)
		if err == nil {
			err = unix.Unlinkat(int(oldDir.Fd()), oldName, 0)
		}
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldDir.Name() + "/" + oldName, New: newDir.Name() + "/" + newName, Err: err}
	}
	return nil
}

// Rename renames oldName to newName in dir, replacing newName. It is for
// names the caller owns (such as its own reason files).
func Rename(dir *os.File, oldName, newName string) error {
	if err := unix.Renameat(int(dir.Fd()), oldName, int(dir.Fd()), newName); err != nil {
		return &os.LinkError{Op: "rename", Old: dir.Name() + "/" + oldName, New: dir.Name() + "/" + newName, Err: err}
	}
	return nil
}

// Unlink removes name from dir. A missing name fails with an error
// matching fs.ErrNotExist.
func Unlink(dir *os.File, name string) error {
	if err := unix.Unlinkat(int(dir.Fd()), name, 0); err != nil {
		return &os.PathError{Op: "remove", Path: dir.Name() + "/" + name, Err: err}
	}
	return nil
}

// RemoveDir removes the empty directory name in dir.
func RemoveDir(dir *os.File, name string) error {
	if err := unix.Unlinkat(int(dir.Fd()), name, unix.AT_REMOVEDIR); err != nil {
		return &os.PathError{Op: "remove", Path: dir.Name() + "/" + name, Err: err}
	}
	return nil
}

// Lstat returns the status of name in dir without following a symlink.
func Lstat(dir *os.File, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return st, &os.PathError{Op: "lstat", Path: dir.Name() + "/" + name, Err: err}
	}
	return st, nil
}

// OpenRegular opens name in dir for reading, for a file that may have been
// planted by an attacker. It refuses, with a *RefusedError, a symlink, a
// FIFO, device, socket or directory, a file with more than one hard link,
// and a file larger than maxSize. Devices and FIFOs are refused from lstat
// before any open (opening a device can have side effects); the open
// itself uses O_NOFOLLOW|O_NONBLOCK and the checks are repeated on the
// open descriptor, so swapping the file between the two steps does not
// help. A missing file fails with an error matching fs.ErrNotExist, not a
// *RefusedError. It returns the open file and its size.
func OpenRegular(dir *os.File, name string, maxSize int64) (*os.File, int64, error) {
	path := dir.Name() + "/" + name
	pre, err := Lstat(dir, name)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, 0, err
		}
		return nil, 0, &RefusedError{Reason: ReasonReadError, Err: err}
	}
	if err := checkStat(path, &pre, maxSize); err != nil {
		return nil, 0, err
	}
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil, 0, &os.PathError{Op: "open", Path: path, Err: err}
	case errors.Is(err, unix.ELOOP):
		// Swapped for a symlink after the lstat.
		return nil, 0, &RefusedError{Reason: ReasonSymlink, Err: &os.PathError{Op: "open", Path: path, Err: err}}
	case errors.Is(err, unix.ENXIO):
		// A socket: refused by open itself.
		return nil, 0, &RefusedError{Reason: ReasonNotRegular, Err: &os.PathError{Op: "open", Path: path, Err: err}}
	case err != nil:
		return nil, 0, &RefusedError{Reason: ReasonReadError, Err: &os.PathError{Op: "open", Path: path, Err: err}}
	}
	f := os.NewFile(uintptr(fd), path)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		_ = f.Close()
		return nil, 0, &RefusedError{Reason: ReasonReadError, Err: &os.PathError{Op: "fstat", Path: path, Err: err}}
	}
	if err := checkStat(path, &st, maxSize); err != nil {
		_ = f.Close()
		return nil, 0, err
	}
	// Reads from a regular file never block; clear O_NONBLOCK anyway so
	// the descriptor behaves like any other.
	_ = unix.SetNonblock(fd, false)
	return f, st.Size, nil
}

// checkStat applies OpenRegular's rules to a status.
func checkStat(path string, st *unix.Stat_t, maxSize int64) error {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFLNK:
		return &RefusedError{Reason: ReasonSymlink, Err: fmt.Errorf("%s is a symlink", path)}
	default:
		return &RefusedError{Reason: ReasonNotRegular, Err: fmt.Errorf("%s is not a regular file (mode %#o)", path, st.Mode&unix.S_IFMT)}
	}
	if st.Nlink != 1 {
		return &RefusedError{Reason: ReasonHardLink, Err: fmt.Errorf("%s has %d links", path, st.Nlink)}
	}
	if st.Size > maxSize {
		return &RefusedError{Reason: ReasonTooLarge, Err: fmt.Errorf("%s holds %d bytes, limit %d", path, st.Size, maxSize)}
	}
	return nil
}

// ReadAll reads f, opened by [OpenRegular] with size bytes, reading at
// most maxSize+1 bytes so that a file that grows past the cap is refused
// with ReasonTooLarge instead of filling memory.
func ReadAll(f *os.File, size, maxSize int64) ([]byte, error) {
	var buf bytes.Buffer
	// bytes.Buffer.ReadFrom wants bytes.MinRead spare bytes before it
	// reads; growing by that much up front avoids a copy at EOF.
	buf.Grow(int(min(size, maxSize)) + bytes.MinRead)
	n, err := buf.ReadFrom(io.LimitReader(f, maxSize+1))
	if err != nil {
		return nil, &RefusedError{Reason: ReasonReadError, Err: fmt.Errorf("read %s: %w", f.Name(), err)}
	}
	if n > maxSize {
		return nil, &RefusedError{Reason: ReasonTooLarge, Err: fmt.Errorf("%s grew past the limit of %d bytes while read", f.Name(), maxSize)}
	}
	return buf.Bytes(), nil
}
