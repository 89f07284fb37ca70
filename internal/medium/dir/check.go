package dir

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/internal/safefs"
)

// probeData is what a check writes into its probe file.
var probeData = []byte("ferry medium check\n")

// Check checks the directory medium at dir for `ferryctl medium check`:
// that it exists and is a directory, that a probe file can be written
// (fsynced), renamed to another dot name and removed, how much space is
// free, and how many final-named files and temporary files wait in it,
// with the oldest final-named file and its age by modification time.
//
// Every failure is a problem in the report, not an error: Check returns
// an error only for an empty dir or when ctx has ended. It never touches
// a file but its own probe.
func Check(ctx context.Context, dir string) (*medium.CheckReport, error) {
	if dir == "" {
		return nil, errors.New("check directory medium: dir is empty")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := &medium.CheckReport{Medium: "dir " + dir, FreeBytes: -1}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.Problemf("the directory %s does not exist", dir)
		return r, nil
	case err != nil:
		r.Problemf("cannot reach the directory: %v", err)
		return r, nil
	case !fi.IsDir():
		r.Problemf("the path %s is not a directory", dir)
		return r, nil
	}
	d, err := safefs.OpenDir(dir)
	if err != nil {
		r.Problemf("cannot open the directory: %v", err)
		return r, nil
	}
	defer d.Close()
	r.Reachable = true

	if err := probe(d); err != nil {
		r.Problemf("cannot write, rename and remove a probe file in %s: %v", dir, err)
	} else {
		r.Writable = true
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(d.Fd()), &st); err == nil {
		r.SetFree(int64(st.Bavail) * st.Bsize)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := countFiles(d, r, time.Now()); err != nil {
		r.Problemf("cannot list the directory %s: %v", dir, err)
	}
	return r, nil
}

// probe writes a probe file in d (O_EXCL, fsync, close), renames it to
// another dot name without replacing, removes it, and fsyncs d. On a
// failure it removes whatever it left.
func probe(d *os.File) error {
	name := medium.ProbeName()
	renamed := medium.ProbeRenamed(name)
	fd, err := unix.Openat(int(d.Fd()), name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	_, err = f.Write(probeData)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = safefs.Unlink(d, name)
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := safefs.RenameNoReplace(d, name, d, renamed); err != nil {
		_ = safefs.Unlink(d, name)
		return fmt.Errorf("rename %s: %w", name, err)
	}
	if err := safefs.Unlink(d, renamed); err != nil {
		return fmt.Errorf("remove %s: %w", renamed, err)
	}
	return safefs.Sync(d)
}

// countFiles counts the regular final-named files in d, with the oldest,
// and the publishers' temporary files.
func countFiles(d *os.File, r *medium.CheckReport, now time.Time) error {
	names, err := d.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, n := range names {
		final, temp := medium.ValidName(n), safefs.IsTempName(n)
		if !final && !temp {
			continue
		}
		st, err := safefs.Lstat(d, n)
		if err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			// Gone meanwhile (claimed), or not a file a receiver takes.
			continue
		}
		if temp {
			r.Temps++
			continue
		}
		r.AddFile(n, time.Unix(st.Mtim.Unix()), now)
	}
	return nil
}
