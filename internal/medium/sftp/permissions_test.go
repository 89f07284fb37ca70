package sftp

import (
	"context"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/medium/mediumtest"
	"github.com/ferrybridge/ferry/internal/medium/sftp/sshdtest"
)

// The tests run as root, whom file modes do not stop, and both servers
// here log in as the test's user: the refusals come from the servers
// themselves (pkg/sftp's ReadOnly option, internal-sftp's -R and -P),
// as real SSH_FX_PERMISSION_DENIED answers. A file the receiver may not
// read has no such switch on either server; the directory and FTPS media
// check that case.

// TestPermissions runs the permission checks over pkg/sftp's in-process
// server, read-only while a check denies.
func TestPermissions(t *testing.T) {
	t.Run("PublishDenied", func(t *testing.T) {
		srv := startServer(t)
		e := newEnvOn(t, srv, envOptions{})
		p := e.publisher(t)
		mediumtest.PublishDenied(t, p, e.drop, func(on bool) { srv.setReadOnly(t, on, p.c) })
	})
	t.Run("RemoveDenied", func(t *testing.T) {
		srv := startServer(t)
		e := newEnvOn(t, srv, envOptions{})
		log, rec := mediumtest.NewRecorder(t)
		e.cfg.Logger = log
		mediumtest.RemoveDenied(t, e.publisher(t), e.receiver(t), e.cfg.Rescan, e.in, rec, e.drop, func(on bool) { srv.setReadOnly(t, on, nil) })
	})
}

// TestOpenSSH_Permissions runs the permission checks over a real sshd
// whose internal-sftp refuses while a check denies.
func TestOpenSSH_Permissions(t *testing.T) {
	srv := sshdtest.Start(t)
	// flags returns a deny function that restarts sshd with internal-sftp
	// flags, and without them when the check allows again.
	flags := func(t *testing.T, p *Publisher, f ...string) func(bool) {
		return func(on bool) {
			set := f
			if !on {
				set = nil
			}
			var c *client
			if p != nil {
				c = p.c
			}
			redial(t, c, func() { srv.SetSFTPFlags(t, set...) })
		}
	}
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"read-only", []string{"-R"}},
		// The upload goes through; placing it under its final name is
		// refused, and the temporary file must go.
		{"no-place", []string{"-P", "rename,posix-rename,hardlink"}},
	} {
		t.Run("PublishDenied/"+tc.name, func(t *testing.T) {
			e := opensshEnv(t, srv, envOptions{})
			p := e.publisher(t)
			mediumtest.PublishDenied(t, p, e.drop, flags(t, p, tc.flags...))
		})
	}
	t.Run("RemoveDenied", func(t *testing.T) {
		e := opensshEnv(t, srv, envOptions{})
		log, rec := mediumtest.NewRecorder(t)
		e.cfg.Logger = log
		mediumtest.RemoveDenied(t, e.publisher(t), e.receiver(t), e.cfg.Rescan, e.in, rec, e.drop, flags(t, nil, "-P", "remove"))
	})
}

// redial runs change, which ends the server's sessions, and if c is not
// nil waits until c has seen its connection end, so that c's next
// operation dials the changed server instead of failing on the old
// connection.
func redial(t *testing.T, c *client, change func()) {
	t.Helper()
	var old *conn
	if c != nil {
		var err error
		if old, err = c.get(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	change()
	if old == nil {
		return
	}
	select {
	case <-old.Done():
	case <-time.After(mediumtest.Deadline):
		t.Fatal("the client did not see its connection end")
	}
}

// setReadOnly sets the mode of new sessions and ends the current ones, so
// that clients reconnect in the new mode; see redial for c.
func (s *testServer) setReadOnly(t *testing.T, on bool, c *client) {
	t.Helper()
	redial(t, c, func() {
		s.readOnly.Store(on)
		s.cut()
	})
}
