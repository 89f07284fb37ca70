package carry

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// Reasons a file of a carry set is corrupt, in [Problem.Reason].
const (
	ReasonSizeMismatch = "size_mismatch" // its size differs from the manifest's
	ReasonHashMismatch = "hash_mismatch" // its SHA-256 differs from the manifest's
	ReasonNotRegular   = "not_regular"   // a FIFO, device, socket or directory
	ReasonSymlink      = "symlink"       // a symbolic link, never followed
	ReasonReadError    = "read_error"    // it could not be read
)

// refusedError says why openRegular refused a file.
type refusedError struct {
	reason string
	err    error
}

func (e *refusedError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// openDir opens path as a directory handle for the *at calls and fsync.
func openDir(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// syncDir fsyncs a directory so that the entries created, renamed or
// removed in it survive a crash.
func syncDir(d *os.File) error {
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", d.Name(), err)
	}
	return nil
}

// lstat returns the status of name in d without following a symlink.
func lstat(d *os.File, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(int(d.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return st, &os.PathError{Op: "lstat", Path: d.Name() + "/" + name, Err: err}
	}
	return st, nil
}

// checkType refuses anything but a regular file.
func checkType(path string, st *unix.Stat_t) error {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return nil
	case unix.S_IFLNK:
		return &refusedError{ReasonSymlink, fmt.Errorf("%s is a symbolic link", path)}
	default:
		return &refusedError{ReasonNotRegular, fmt.Errorf("%s is not a regular file", path)}
	}
}

// openRegular opens name in d for reading, for a file that may have been
// planted by an attacker: it refuses (with a *refusedError) a symlink, a
// FIFO, device, socket or directory. FIFOs and devices are refused from
// lstat before any open (opening one can block or have side effects); the
// open uses O_NOFOLLOW|O_NONBLOCK and the check is repeated on the open
// descriptor, so a swap between the two steps does not help. A missing
// file fails with an error matching fs.ErrNotExist. It returns the file
// and its status.
func openRegular(d *os.File, name string) (*os.File, unix.Stat_t, error) {
	path := d.Name() + "/" + name
	pre, err := lstat(d, name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, pre, err
		}
		return nil, pre, &refusedError{ReasonReadError, err}
	}
	if err := checkType(path, &pre); err != nil {
		return nil, pre, err
	}
	fd, err := unix.Openat(int(d.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil, pre, &os.PathError{Op: "open", Path: path, Err: err}
	case errors.Is(err, unix.ELOOP):
		return nil, pre, &refusedError{ReasonSymlink, &os.PathError{Op: "open", Path: path, Err: err}}
	case errors.Is(err, unix.ENXIO):
		return nil, pre, &refusedError{ReasonNotRegular, &os.PathError{Op: "open", Path: path, Err: err}}
	case err != nil:
		return nil, pre, &refusedError{ReasonReadError, &os.PathError{Op: "open", Path: path, Err: err}}
	}
	f := os.NewFile(uintptr(fd), path)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		_ = f.Close()
		return nil, st, &refusedError{ReasonReadError, &os.PathError{Op: "fstat", Path: path, Err: err}}
	}
	if err := checkType(path, &st); err != nil {
		_ = f.Close()
		return nil, st, err
	}
	_ = unix.SetNonblock(fd, false)
	return f, st, nil
}
