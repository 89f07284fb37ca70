package ftps

import (
	"log/slog"
	"testing"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/ftps/vsftpdtest"
	"github.com/ferrybridge/ferry/internal/medium/mediumtest"
)

// TestConformance runs the medium conformance suite against a real
// vsftpd with explicit TLS, verifying its certificate against the CA and
// pinning it.
func TestConformance(t *testing.T) {
	srv := vsftpdtest.Start(t)
	for _, pin := range []bool{false, true} {
		name := "ca"
		if pin {
			name = "pin"
		}
		t.Run(name, func(t *testing.T) {
			mediumtest.Run(t, func(t *testing.T) (medium.Publisher, medium.Receiver, *medium.Inbox) {
				e := newEnv(t, srv, envOptions{pin: pin})
				return e.publisher(t), e.receiver(t), e.in
			})
		})
	}
}

// TestLarge sends a 256 MiB file through a real vsftpd, longer than the
// operation timeout (5s here) allows any single step.
func TestLarge(t *testing.T) {
	srv := vsftpdtest.Start(t)
	mediumtest.Large(t, func(t *testing.T) (medium.Publisher, medium.Receiver, *medium.Inbox) {
		e := newEnv(t, srv, envOptions{maxSize: mediumtest.LargeSize})
		return e.publisher(t), e.receiver(t), e.in
	})
}

// TestNames: vsftpd's drop, listed while files are published, never
// shows a final name before its file is whole; and the receiver leaves
// alone what is not an envelope, a directory or a symbolic link under a
// valid name included.
func TestNames(t *testing.T) {
	srv := vsftpdtest.Start(t)
	t.Run("AtomicVisibility", func(t *testing.T) {
		e := newEnv(t, srv, envOptions{})
		mediumtest.AtomicVisibility(t, e.publisher(t), e.drop)
	})
	t.Run("IgnoresNames", func(t *testing.T) {
		e := newEnv(t, srv, envOptions{})
		mediumtest.PlantNonRegular(t, e.drop)
		mediumtest.IgnoresNames(t, e.publisher(t), e.receiver(t), e.in, e.drop)
	})
}

// TestReconnectNoLeak: fifty control connections cut by a proxy,
// each followed by a reconnect (TCP, TLS, login), leave no goroutine and
// no descriptor behind. (Fifty, not thousands as over SFTP: each
// reconnect to vsftpd, with TLS and a PAM login, takes about 150ms here.)
func TestReconnectNoLeak(t *testing.T) {
	srv := vsftpdtest.Start(t)
	px := mediumtest.StartProxy(t, srv.Addr)
	e := newEnv(t, srv, envOptions{})
	e.cfg.Address = px.Addr
	e.cfg.Logger = slog.New(slog.DiscardHandler)
	p := e.publisher(t)
	mediumtest.NoLeak(t, 50, p, func() { px.Cut() }, func() { p.Close(); px.Cut() })
}
