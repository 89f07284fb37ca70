package ftps

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/remote"
)

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
	if err := c.rc.Lock(ctx); err != nil {
		return nil, err
	}
	defer c.rc.Unlock()
	cn, err := c.rc.Get(ctx)
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
	// FTP's stat tells a regular file from a directory, nothing else.
	if !remote.CheckDirStat(r, cfg.Dir, !e.Regular, err) {
		return r, ctx.Err()
	}
	if err := remote.ProbeDrop(ctx, f, cfg.Dir); err != nil {
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
	remote.CountFiles(r, list, time.Now())
	return r, ctx.Err()
}
