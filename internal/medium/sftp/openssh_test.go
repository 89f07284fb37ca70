package sftp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/medium/internal/daemontest"
	"github.com/ferrybridge/ferry/internal/medium/mediumtest"
	"github.com/ferrybridge/ferry/internal/medium/sftp/sshdtest"
)

// The tests here run against a real OpenSSH sshd (package sshdtest): its
// sftp-server is what production drops run. A machine without sshd fails
// them; it does not skip them.

// opensshEnv makes an env over srv with a fresh drop directory.
func opensshEnv(t testing.TB, srv *sshdtest.Server, o envOptions) *env {
	t.Helper()
	remote, local := srv.Drop(t, fmt.Sprintf("drop%d", dropSeq.Add(1)))
	return newEnvAt(t, srv.Addr, srv.User, srv.KeyFile, srv.KnownHosts, remote, local, o)
}

var dropSeq atomic.Int64

// TestOpenSSH_CutThroughProxy reaches a real sshd through a TCP proxy that
// cuts every connection each time 3 MiB have crossed it, while files of
// 1 MiB go up and down: nothing is lost, nothing arrives twice, nothing
// is left behind.
func TestOpenSSH_CutThroughProxy(t *testing.T) {
	srv := sshdtest.Start(t)
	px := mediumtest.StartProxy(t, srv.Addr)
	// Pin the server's host key for the proxy's address.
	_, _, key, _, _, err := ssh.ParseKnownHosts([]byte(srv.HostKeyLine()))
	if err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, []byte(knownhosts.Line([]string{knownhosts.Normalize(px.Addr)}, key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	remote, local := srv.Drop(t, fmt.Sprintf("drop%d", dropSeq.Add(1)))
	e := newEnvAt(t, px.Addr, srv.User, srv.KeyFile, kh, remote, local, envOptions{})
	p := e.publisher(t)
	r := mediumtest.Start(t, e.receiver(t))
	mediumtest.CutMidStream(t, px, p, r, e.in, local, 8, 1<<20, 3<<20)
}

func TestOpenSSH_Conformance(t *testing.T) {
	srv := sshdtest.Start(t)
	for _, noHardlink := range []bool{false, true} {
		t.Run(fmt.Sprintf("noHardlink=%v", noHardlink), func(t *testing.T) {
			mediumtest.Run(t, func(t *testing.T) (medium.Publisher, medium.Receiver, *medium.Inbox) {
				e := opensshEnv(t, srv, envOptions{})
				p := e.publisher(t)
				p.noHardlink = noHardlink
				return p, e.receiver(t), e.in
			})
		})
	}
}

// TestOpenSSH_Large sends a 256 MiB file through a real OpenSSH server.
func TestOpenSSH_Large(t *testing.T) {
	srv := sshdtest.Start(t)
	mediumtest.Large(t, func(t *testing.T) (medium.Publisher, medium.Receiver, *medium.Inbox) {
		e := opensshEnv(t, srv, envOptions{maxSize: mediumtest.LargeSize})
		return e.publisher(t), e.receiver(t), e.in
	})
}

// TestOpenSSH_Names: a real sshd's drop, listed while files are
// published, never shows a final name before its file is whole; and the
// receiver leaves alone what is not an envelope.
func TestOpenSSH_Names(t *testing.T) {
	srv := sshdtest.Start(t)
	t.Run("AtomicVisibility", func(t *testing.T) {
		e := opensshEnv(t, srv, envOptions{})
		mediumtest.AtomicVisibility(t, e.publisher(t), e.drop)
	})
	t.Run("IgnoresNames", func(t *testing.T) {
		e := opensshEnv(t, srv, envOptions{})
		mediumtest.PlantNonRegular(t, e.drop)
		mediumtest.IgnoresNames(t, e.publisher(t), e.receiver(t), e.in, e.drop)
	})
}

// TestOpenSSH_Extensions checks that OpenSSH offers the extensions the
// package doc promises to use with it.
func TestOpenSSH_Extensions(t *testing.T) {
	srv := sshdtest.Start(t)
	e := opensshEnv(t, srv, envOptions{})
	p := e.publisher(t)
	cn, err := p.c.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{extFsync, extHardlink} {
		if _, ok := cn.sftp.HasExtension(ext); !ok {
			t.Errorf("OpenSSH does not offer %s", ext)
		}
	}
}

func TestOpenSSH_HostKeyChanged(t *testing.T) {
	srv := sshdtest.Start(t)
	e := opensshEnv(t, srv, envOptions{})
	other, _ := newSigner(t)
	e.cfg.KnownHosts = filepath.Join(t.TempDir(), "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(srv.Addr)}, other.PublicKey())
	if err := os.WriteFile(e.cfg.KnownHosts, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := e.publisher(t)
	if err := p.Publish(context.Background(), "a.fxe", []byte("secret")); !errors.Is(err, ErrHostKey) {
		t.Fatalf("Publish to a server with another host key: %v, want ErrHostKey", err)
	}
	if names := mediumtest.DropNames(t, e.drop); len(names) != 0 {
		t.Fatalf("drop directory holds %v after a host key mismatch, want nothing", names)
	}
}

// TestOpenSSH_RenameNoReplace races publishes of one name with different
// bytes over SSH_FXP_RENAME and over hardlink: exactly one wins, the
// others get ErrExists, and the file holds the winner's bytes.
func TestOpenSSH_RenameNoReplace(t *testing.T) {
	srv := sshdtest.Start(t)
	for _, noHardlink := range []bool{false, true} {
		t.Run(fmt.Sprintf("noHardlink=%v", noHardlink), func(t *testing.T) {
			e := opensshEnv(t, srv, envOptions{})
			const n = 6
			datas := make([][]byte, n)
			errs := make(chan error, n)
			for i := range n {
				datas[i] = mediumtest.RandomBytes(t, 100<<10)
				p := e.publisher(t)
				p.noHardlink = noHardlink
				go func() { errs <- p.Publish(context.Background(), "race.fxe", datas[i]) }()
			}
			wins := 0
			for range n {
				switch err := <-errs; {
				case err == nil:
					wins++
				case !errors.Is(err, medium.ErrExists):
					t.Errorf("Publish: %v, want nil or ErrExists", err)
				}
			}
			if wins != 1 {
				t.Fatalf("%d publishes of different bytes succeeded, want 1", wins)
			}
			got, _ := os.ReadFile(filepath.Join(e.drop, "race.fxe"))
			if !slices.ContainsFunc(datas, func(d []byte) bool { return bytes.Equal(d, got) }) {
				t.Fatal("the file holds bytes nobody published")
			}
			if names := mediumtest.DropNames(t, e.drop); !slices.Equal(names, []string{"race.fxe"}) {
				t.Errorf("drop holds %v, want only race.fxe", names)
			}
		})
	}
}

// TestOpenSSH_ServerRestart stops sshd (killing its sessions) during a
// large upload while a receiver runs, and starts it again: the upload
// fails, the next succeeds, and the receiver loses nothing.
func TestOpenSSH_ServerRestart(t *testing.T) {
	srv := sshdtest.Start(t)
	e := opensshEnv(t, srv, envOptions{})
	p := e.publisher(t)
	r := mediumtest.Start(t, e.receiver(t))
	mediumtest.ServerRestart(t, srv, p, r, e.in, e.drop, 64<<20)
}

// TestOpenSSH_FullDisk gives the drop a 2 MiB file system on the server
// (a tmpfs mounted over the drop directory, so the test needs root): a
// publish that does not fit fails, leaves no final name and no temporary
// file, and one that fits still goes through and arrives.
func TestOpenSSH_FullDisk(t *testing.T) {
	srv := sshdtest.Start(t)
	remote, local := srv.Drop(t, fmt.Sprintf("drop%d", dropSeq.Add(1)))
	daemontest.MountTmpfs(t, local, mediumtest.FullDiskRoom)
	e := newEnvAt(t, srv.Addr, srv.User, srv.KeyFile, srv.KnownHosts, remote, local, envOptions{})
	mediumtest.FullDisk(t, e.publisher(t), e.receiver(t), e.in, local)
}
