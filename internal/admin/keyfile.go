package admin

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/mod/sumdb/note"

	"github.com/ferrybridge/ferry/internal/keys"
)

// File name suffixes of an admin's key files.
const (
	KeySuffix = ".key"
	PubSuffix = ".pub"
)

// maxKeyFileSize caps how much of a key file is read.
const maxKeyFileSize = 64 << 10

// WriteKey generates a key pair for the admin name and writes it into dir
// (created 0700 if missing) as NAME.key (0600) and NAME.pub (0644). It never
// overwrites: if either file exists it fails with an error matching
// fs.ErrExist and writes nothing. Each file appears complete or not at all.
func WriteKey(dir, name string, rand io.Reader) (keyFile, pubFile string, err error) {
	skey, vkey, err := GenerateKey(name, rand)
	if err != nil {
		return "", "", err
	}
	keyFile = filepath.Join(dir, name+KeySuffix)
	pubFile = filepath.Join(dir, name+PubSuffix)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("create key directory: %w", err)
	}
	for _, p := range []string{keyFile, pubFile} {
		if _, err := os.Lstat(p); err == nil {
			return "", "", fmt.Errorf("write admin key: %s: %w", p, fs.ErrExist)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", "", fmt.Errorf("write admin key: %w", err)
		}
	}
	if err := WriteFile(keyFile, []byte(skey+"\n"), 0o600, false); err != nil {
		return "", "", fmt.Errorf("write admin key: %w", err)
	}
	if err := WriteFile(pubFile, []byte(vkey+"\n"), 0o644, false); err != nil {
		// Without its public half the new private key is of no use, and
		// leaving it would make a retry fail; it is ours to remove.
		_ = os.Remove(keyFile)
		return "", "", fmt.Errorf("write admin key: %w", err)
	}
	return keyFile, pubFile, nil
}

// WriteFile writes data to path durably and atomically: a temporary file in
// the same directory is written, set to perm, fsynced and closed, then
// renamed to path (replace true) or linked to path without ever replacing an
// existing file (replace false, failing with an error matching fs.ErrExist);
// finally the directory is fsynced. On failure nothing is left behind.
func WriteFile(path string, data []byte, perm os.FileMode, replace bool) error {
	return WriteFileFunc(path, perm, replace, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFileFunc is WriteFile of what write writes, through a buffer: for
// a file larger than memory should hold.
func WriteFileFunc(path string, perm os.FileMode, replace bool, write func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 64<<10)
	if err = write(bw); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// Chmod on the file, not the umask-narrowed create mode: public files
	// must stay readable, private ones start and stay 0600.
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// fsync before the rename, or a crash can leave path naming a short
	// file.
	if err = f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if replace {
		err = os.Rename(tmp, path)
	} else if err = os.Link(tmp, path); err == nil {
		err = os.Remove(tmp)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// LoadSigner reads an admin's private key file. It refuses, naming the
// file, a symlink, anything but a regular file, and a file with any
// permission bits for group or others (errors matching
// [keys.ErrPermissions]), as well as a key whose name is not a valid admin
// name.
func LoadSigner(path string) (note.Signer, error) {
	if err := keys.CheckPrivate(path); err != nil {
		return nil, err
	}
	// Open without following links and check the open file again, so the
	// file read is the file checked even if path changed in between.
	// O_NONBLOCK keeps a FIFO swapped in from blocking the open.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("admin key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("admin key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w: not a regular file", path, keys.ErrPermissions)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s: %w: mode %04o, want 0600", path, keys.ErrPermissions, perm)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("admin key file %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("admin key file %s: larger than %d bytes", path, maxKeyFileSize)
	}
	line, _, ok := firstKeyLine(data)
	if !ok {
		return nil, fmt.Errorf("admin key file %s: no key found", path)
	}
	s, err := note.NewSigner(line)
	if err != nil {
		// The error never quotes the line: it may hold a secret.
		return nil, fmt.Errorf("admin key file %s: not an admin private key: %w", path, err)
	}
	if err := checkName(s.Name()); err != nil {
		return nil, fmt.Errorf("admin key file %s: %w", path, err)
	}
	return s, nil
}

// firstKeyLine returns the first line of data that is neither blank nor a
// '#' comment, trimmed, with its 1-based line number.
func firstKeyLine(data []byte) (line string, lineNo int, ok bool) {
	for i, l := range bytes.Split(data, []byte("\n")) {
		l = bytes.TrimSpace(l)
		if len(l) == 0 || l[0] == '#' {
			continue
		}
		return string(l), i + 1, true
	}
	return "", 0, false
}
