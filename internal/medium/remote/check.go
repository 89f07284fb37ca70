package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"time"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/internal/safefs"
)

// probeData is what a check writes into its probe file.
var probeData = []byte("ferry medium check\n")

// ProbeDrop is the write test of a protocol's medium check: it uploads a
// probe file into dir over cn ([Conn.Upload]), places it under another
// dot name the way Publish places files ([Conn.Place]), and removes it.
// On a failure it removes whatever it left, as far as the connection
// allows. It never touches a file but its own probe.
func ProbeDrop(ctx context.Context, cn Conn, dir string) error {
	name := path.Join(dir, medium.ProbeName())
	renamed := medium.ProbeRenamed(name)
	if created, err := cn.Upload(ctx, name, bytes.NewReader(probeData), int64(len(probeData))); err != nil {
		if created {
			_ = cn.Remove(ctx, name)
		}
		return fmt.Errorf("upload %s: %w", path.Base(name), err)
	}
	if _, err := cn.Place(ctx, name, renamed); err != nil {
		_ = cn.Remove(ctx, name)
		return fmt.Errorf("rename %s: %w", path.Base(name), err)
	}
	if err := cn.Remove(ctx, renamed); err != nil {
		return fmt.Errorf("remove %s: %w", path.Base(renamed), err)
	}
	return nil
}

// CountFiles adds a listing of the drop directory to r: the final-named
// files waiting, with the oldest, and the temporary files of interrupted
// uploads. Anything that is not a regular file is left out.
func CountFiles(r *medium.CheckReport, entries []Entry, now time.Time) {
	for _, e := range entries {
		switch {
		case !e.Regular:
		case safefs.IsTempName(e.Name):
			r.Temps++
		case medium.ValidName(e.Name):
			r.AddFile(e.Name, e.ModTime, now)
		}
	}
}

// CheckDirStat adds to r what is wrong with the drop directory dir on the
// server, from what stat said (err; else whether it is a directory), and
// reports whether the check can go on.
func CheckDirStat(r *medium.CheckReport, dir string, isDir bool, err error) bool {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.Problemf("the drop directory %s does not exist on the server", dir)
	case err != nil:
		r.Problemf("cannot reach the drop directory %s: %v", dir, err)
	case !isDir:
		r.Problemf("the drop directory %s on the server is not a directory", dir)
	default:
		return true
	}
	return false
}
