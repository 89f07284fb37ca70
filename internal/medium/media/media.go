// Package media builds the medium an agent config names: the directory
// medium (package medium/dir), an SFTP drop (package medium/sftp), or an
// FTPS drop (package medium/ftps; type ftp is the same drop over plain
// FTP, which package ftps warns about every time it is built).
//
// # Lifecycle
//
// Both constructors return, besides the medium, an io.Closer that the
// agent calls once it no longer uses the medium (after Run has returned).
// Close is idempotent and safe to call on every path; for the directory
// medium it does nothing. Neither constructor dials: an SFTP or FTPS
// medium connects when first used and reconnects by itself, so an agent starts
// while its boundary server is down.
package media

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/dir"
	"github.com/ferrybridge/ferry/internal/medium/ftps"
	"github.com/ferrybridge/ferry/internal/medium/sftp"
)

// NewPublisher returns the publisher cfg names, and what releases it.
// cfg must have passed Check(true) and have its local paths resolved
// (medium.Config.Resolve).
func NewPublisher(cfg medium.Config, log *slog.Logger) (medium.Publisher, io.Closer, error) {
	if msg, key := cfg.Check(true); msg != "" {
		return nil, nil, fmt.Errorf("medium %s: %s", key, msg)
	}
	switch cfg.Type {
	case medium.TypeSFTP:
		p, err := sftp.NewPublisher(sftpConfig(cfg, log))
		if err != nil {
			return nil, nil, err
		}
		return p, onceCloser(p.Close), nil
	case medium.TypeFTPS, medium.TypeFTP:
		p, err := ftps.NewPublisher(ftpsConfig(cfg, log))
		if err != nil {
			return nil, nil, err
		}
		return p, onceCloser(p.Close), nil
	default:
		p, err := dir.NewPublisher(cfg.Dir)
		if err != nil {
			return nil, nil, err
		}
		return p, nopCloser{}, nil
	}
}

// NewReceiver returns the receiver cfg names, claiming into inbox, and
// what releases it. cfg must have passed Check(false) and have its local
// paths resolved.
func NewReceiver(cfg medium.Config, inbox *medium.Inbox, log *slog.Logger) (medium.Receiver, io.Closer, error) {
	if msg, key := cfg.Check(false); msg != "" {
		return nil, nil, fmt.Errorf("medium %s: %s", key, msg)
	}
	switch cfg.Type {
	case medium.TypeSFTP:
		r, err := sftp.NewReceiver(sftpConfig(cfg, log), inbox)
		if err != nil {
			return nil, nil, err
		}
		return r, onceCloser(r.Close), nil
	case medium.TypeFTPS, medium.TypeFTP:
		r, err := ftps.NewReceiver(ftpsConfig(cfg, log), inbox)
		if err != nil {
			return nil, nil, err
		}
		return r, onceCloser(r.Close), nil
	default:
		r, err := dir.NewReceiver(dir.ReceiverConfig{Dir: cfg.Dir, Inbox: inbox, Rescan: time.Duration(cfg.Rescan), Logger: log})
		if err != nil {
			return nil, nil, err
		}
		return r, nopCloser{}, nil
	}
}

// sftpConfig maps an agent's medium block to the SFTP medium's Config.
func sftpConfig(cfg medium.Config, log *slog.Logger) sftp.Config {
	return sftp.Config{
		Address:     cfg.Address,
		User:        cfg.User,
		KeyFile:     cfg.Key,
		KnownHosts:  cfg.KnownHosts,
		Dir:         cfg.Dir,
		DialTimeout: time.Duration(cfg.DialTimeout),
		OpTimeout:   time.Duration(cfg.OpTimeout),
		Keepalive:   time.Duration(cfg.Keepalive),
		Rescan:      time.Duration(cfg.Rescan),
		TempMaxAge:  time.Duration(cfg.TempMaxAge),
		Logger:      log,
	}
}

// ftpsConfig maps an agent's medium block to the FTPS medium's Config;
// type ftp is plain FTP.
func ftpsConfig(cfg medium.Config, log *slog.Logger) ftps.Config {
	return ftps.Config{
		Address:      cfg.Address,
		User:         cfg.User,
		PasswordFile: cfg.PasswordFile,
		Dir:          cfg.Dir,
		CAFile:       cfg.CAFile,
		CertSHA256:   cfg.CertSHA256,
		ServerName:   cfg.ServerName,
		Plain:        cfg.Type == medium.TypeFTP,
		DialTimeout:  time.Duration(cfg.DialTimeout),
		OpTimeout:    time.Duration(cfg.OpTimeout),
		Rescan:       time.Duration(cfg.Rescan),
		TempMaxAge:   time.Duration(cfg.TempMaxAge),
		Logger:       log,
	}
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// onceCloser makes close idempotent: an agent closes its media both when
// New fails half-way and in Close.
func onceCloser(close func() error) io.Closer {
	return &closer{close: close}
}

type closer struct {
	once  sync.Once
	close func() error
	err   error
}

func (c *closer) Close() error {
	c.once.Do(func() { c.err = c.close() })
	return c.err
}
