package sshdtest

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	psftp "github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// dial connects to s with its client key, checking the host key against
// knownHosts, and opens an SFTP session.
func dial(s *Server, knownHosts string) (*psftp.Client, *ssh.Client, error) {
	pem, err := os.ReadFile(s.KeyFile)
	if err != nil {
		return nil, nil, err
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		return nil, nil, err
	}
	hk, err := knownhosts.New(knownHosts)
	if err != nil {
		return nil, nil, err
	}
	conn, err := ssh.Dial("tcp", s.Addr, &ssh.ClientConfig{
		User:              s.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   hk,
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Timeout:           5 * time.Second,
	})
	if err != nil {
		return nil, nil, err
	}
	c, err := psftp.NewClient(conn)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return c, conn, nil
}

func mustDial(t *testing.T, s *Server) *psftp.Client {
	t.Helper()
	c, conn, err := dial(s, s.KnownHosts)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close(); conn.Close() })
	return c
}

func writeRemote(t *testing.T, c *psftp.Client, path string, data []byte) {
	t.Helper()
	f, err := c.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		t.Fatalf("create %s: %v", path, err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close %s: %v", path, err)
	}
}

func TestServer_Drop(t *testing.T) {
	s := Start(t)
	remote, local := s.Drop(t, "requests")
	if !strings.HasPrefix(remote, "/") {
		t.Fatalf("remote %q is not absolute", remote)
	}
	if fi, err := os.Stat(local); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("local drop %s: %v, %v; want a 0700 directory", local, fi, err)
	}
	c := mustDial(t, s)

	// Written remotely, seen locally.
	want := []byte("envelope bytes\n")
	writeRemote(t, c, remote+"/a.fxe", want)
	got, err := os.ReadFile(filepath.Join(local, "a.fxe"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("local copy: %q, %v; want %q", got, err, want)
	}
	// Written locally, read remotely.
	if err := os.WriteFile(filepath.Join(local, "b.fxe"), want, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := c.Open(remote + "/b.fxe")
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(f)
	f.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("remote read: %q, %v; want %q", got, err, want)
	}
	// The extensions the medium relies on are offered.
	for _, ext := range []string{"posix-rename@openssh.com", "fsync@openssh.com"} {
		if _, ok := c.HasExtension(ext); !ok {
			t.Errorf("server does not offer %s", ext)
		}
	}
	if s.chroot != "" {
		// Chrooted: the drops are all the client sees.
		ents, err := c.ReadDir("/")
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 1 || ents[0].Name() != "requests" {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Fatalf("client sees %v at /, want only the drop [requests]", names)
		}
	}
}

func TestServer_Restart(t *testing.T) {
	s := Start(t)
	remote, local := s.Drop(t, "results")
	c := mustDial(t, s)
	writeRemote(t, c, remote+"/before.fxe", []byte("1"))

	s.Restart(t)
	// The old session died with the server.
	if _, err := c.Stat(remote + "/before.fxe"); err == nil {
		t.Fatal("session survived the restart")
	}
	c2 := mustDial(t, s)
	writeRemote(t, c2, remote+"/after.fxe", []byte("2"))
	for _, name := range []string{"before.fxe", "after.fxe"} {
		if _, err := os.Stat(filepath.Join(local, name)); err != nil {
			t.Fatal(err)
		}
	}

	s.Stop(t)
	s.Stop(t) // idempotent
	if _, _, err := dial(s, s.KnownHosts); err == nil {
		t.Fatal("dialled a stopped server")
	}
	s.Restart(t)
	mustDial(t, s)
}

func TestServer_WrongHostKey(t *testing.T) {
	s := Start(t)
	other := Start(t) // another fresh host key
	kh := filepath.Join(t.TempDir(), "known_hosts")
	// other's key, pinned under s's address.
	line := strings.Replace(other.HostKeyLine(), knownhosts.Normalize(other.Addr), knownhosts.Normalize(s.Addr), 1)
	if err := os.WriteFile(kh, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := dial(s, kh)
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) || len(ke.Want) == 0 {
		t.Fatalf("dial with a changed host key: %v; want a knownhosts mismatch", err)
	}
	// A known_hosts without the host at all fails too.
	if err := os.WriteFile(kh, []byte(other.HostKeyLine()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := dial(s, kh); !errors.As(err, &ke) || len(ke.Want) != 0 {
		t.Fatalf("dial with an unknown host: %v; want a knownhosts unknown-host error", err)
	}
}
