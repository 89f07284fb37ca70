package ftps

import (
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

// Check checks the FTPS drop cfg names for `ferryctl medium check`. It
// connects exactly as the medium does (the password file, TLS with the CA
// or the pin, the same timeouts) and reports the SHA-256 of the
// certificate the server showed (hex; "" for plain FTP), whether a probe
// file can be stored, renamed to another dot name and deleted in the drop
// directory, and the final-named files waiting, with the oldest by
// modification time (LIST: to the minute), and the temporary files of
// interrupted uploads. FTP cannot tell the free space: FreeBytes is -1.
//
// Every failure to connect or to work is a problem in the report, not an
// error: a certificate that fails the check is a problem that names the
// SHA-256 the server showed. Plain FTP is a problem too. Check returns an
// error only for an invalid cfg or when ctx has ended. It never touches a
// file but its own probe.
func Check(ctx context.Context, cfg Config) (*medium.CheckReport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("check ftps medium: %w", err)
	}
	scheme := "ftps"
	if cfg.Plain {
		scheme = "ftp"
	}
	r := &medium.CheckReport{Medium: scheme + " " + cfg.User + "@" + cfg.Address + cfg.Dir, FreeBytes: -1}
	c, err := newClient(cfg)
	if err != nil {
		r.Problemf("cannot connect to %s: %v", cfg.Address, err)
		return r, nil
	}
	defer c.close()
	if err := c.lock(ctx); err != nil {
		return nil, err
	}
	defer c.unlock()
	cn, err := c.get(ctx)
	if h := c.seen.Load(); h != nil {
		r.Identity = *h
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if cfg.Plain {
		r.Problemf("plain FTP: the password and the envelopes cross the network unencrypted")
	}
	if err != nil {
		switch {
		case errors.Is(err, ErrCertificate) && r.Identity != "":
			r.Problemf("the server at %s showed a certificate with SHA-256 %s, which is not trusted: it is another server or its certificate changed; compare it with the server's administrator before changing the CA file or the pin (%v)",
				cfg.Address, r.Identity, err)
		default:
			r.Problemf("cannot connect to %s: %v", cfg.Address, err)
		}
		return r, nil
	}
	r.Reachable = true
	f := &fsConn{s: session{c: c, exclusive: true}, cn: cn}

	e, err := f.Stat(ctx, cfg.Dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.Problemf("the drop directory %s does not exist on the server", cfg.Dir)
		return r, ctx.Err()
	case err != nil:
		r.Problemf("cannot reach the drop directory %s: %v", cfg.Dir, err)
		return r, ctx.Err()
	case e.Regular:
		r.Problemf("the drop directory %s on the server is not a directory", cfg.Dir)
		return r, ctx.Err()
	}
	if err := probeDrop(ctx, f, cfg.Dir); err != nil {
		r.Problemf("cannot store, rename and delete a probe file in %s: %v", cfg.Dir, err)
	} else {
		r.Writable = true
	}
	if f.Dead() {
		return r, ctx.Err()
	}
	list, err := f.List(ctx, cfg.Dir)
	if err != nil {
		r.Problemf("cannot list the drop directory %s: %v", cfg.Dir, err)
		return r, ctx.Err()
	}
	now := time.Now()
	for _, e := range list {
		switch {
		case !e.Regular:
		case safefs.IsTempName(e.Name):
			r.Temps++
		case medium.ValidName(e.Name):
			r.AddFile(e.Name, e.ModTime, now)
		}
	}
	return r, ctx.Err()
}

// probeDrop stores a probe file in dir, renames it to another dot name
// the way Publish places files (check, then RNFR/RNTO), and deletes it. On
// a failure it deletes whatever it left, as far as the connection allows.
func probeDrop(ctx context.Context, f *fsConn, dir string) error {
	name := path.Join(dir, medium.ProbeName())
	renamed := medium.ProbeRenamed(name)
	if created, err := f.Upload(ctx, name, probeData); err != nil {
		if created {
			_ = f.Remove(ctx, name)
		}
		return fmt.Errorf("store %s: %w", path.Base(name), err)
	}
	if _, err := f.Place(ctx, name, renamed); err != nil {
		_ = f.Remove(ctx, name)
		return fmt.Errorf("rename %s: %w", path.Base(name), err)
	}
	if err := f.Remove(ctx, renamed); err != nil {
		return fmt.Errorf("delete %s: %w", path.Base(renamed), err)
	}
	return nil
}
