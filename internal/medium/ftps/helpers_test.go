package ftps

import (
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/ftps/vsftpdtest"
	"github.com/ferrybridge/ferry/internal/medium/mediumtest"
)

// env is one FTPS medium over a vsftpd: a drop directory, an inbox and the
// config that reaches them.
type env struct {
	srv  *vsftpdtest.Server
	drop string // the drop directory's local path
	in   *medium.Inbox
	cfg  Config
}

type envOptions struct {
	maxSize int64
	pin     bool // pin the certificate instead of verifying it against the CA
}

var dropSeq atomic.Int64

func newEnv(t testing.TB, srv *vsftpdtest.Server, o envOptions) *env {
	t.Helper()
	remote, local := srv.Drop(t, fmt.Sprintf("drop%d", dropSeq.Add(1)))
	e := &env{srv: srv, drop: local}
	base := t.TempDir()
	var err error
	e.in, err = medium.OpenInbox(medium.InboxConfig{Dir: filepath.Join(base, "inbox"), QuarantineDir: filepath.Join(base, "quarantine"),
		MaxFileSize: o.maxSize, Logger: mediumtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	e.cfg = Config{
		Address:      srv.Addr,
		User:         srv.User,
		PasswordFile: srv.PasswordFile,
		Dir:          remote,
		DialTimeout:  5 * time.Second,
		OpTimeout:    5 * time.Second,
		Rescan:       20 * time.Millisecond,
		Logger:       mediumtest.Logger(t),
	}
	switch {
	case srv.CAFile == "":
		e.cfg.Plain = true
	case o.pin:
		e.cfg.CertSHA256 = srv.CertSHA256
	default:
		e.cfg.CAFile = srv.CAFile
	}
	return e
}

// fastBackoff makes reconnects quick for tests.
func fastBackoff(c *client) {
	c.rc.SetBackoff(time.Millisecond, 20*time.Millisecond)
}

func (e *env) publisher(t testing.TB) *Publisher {
	t.Helper()
	p, err := NewPublisher(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	fastBackoff(p.c)
	t.Cleanup(func() { p.Close() })
	return p
}

func (e *env) receiver(t testing.TB) *Receiver {
	t.Helper()
	r, err := NewReceiver(e.cfg, e.in)
	if err != nil {
		t.Fatal(err)
	}
	fastBackoff(r.c)
	t.Cleanup(func() { r.Close() })
	return r
}
