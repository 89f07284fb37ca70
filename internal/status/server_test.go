package status

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMain lets a test run this binary as another user to dial a socket:
// FERRY_STATUS_DIAL=PATH dials it and exits 0 when it connects, 13 on
// permission denied, 1 otherwise.
func TestMain(m *testing.M) {
	if path := os.Getenv("FERRY_STATUS_DIAL"); path != "" {
		c, err := net.Dial("unix", path)
		switch {
		case err == nil:
			c.Close()
			os.Exit(0)
		case errors.Is(err, syscall.EACCES):
			os.Exit(13)
		default:
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

type fixed struct{ s *Snapshot }

func (f fixed) Snapshot() *Snapshot { return f.s }

// serve starts srv until the test ends.
func serve(t *testing.T, srv *Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

func testGatherer(t *testing.T) prometheus.Gatherer {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	return reg
}

func TestServer_statusAndMetrics(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	want := &Snapshot{Agent: "dmz-agent", Zone: "dmz", Peer: "intranet", Queue: Queue{Backlog: 7}}
	srv, err := Listen(Config{Socket: sock, Metrics: "127.0.0.1:0"}, fixed{want}, testGatherer(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, srv)
	ctx := context.Background()
	got, err := Fetch(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	if got.Zone != "dmz" || got.Queue.Backlog != 7 {
		t.Fatalf("Fetch = %+v", got)
	}
	body, err := Get(ctx, sock, PathMetrics)
	if err != nil || !strings.Contains(string(body), "ferry_test_total 3") {
		t.Fatalf("metrics over the socket: %v\n%s", err, body)
	}
	// The TCP listener serves the metrics and nothing else.
	base := "http://" + srv.Addr().String()
	resp, err := http.Get(base + PathMetrics)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "ferry_test_total 3") {
		t.Fatalf("metrics over TCP: %d\n%s", resp.StatusCode, b)
	}
	resp, err = http.Get(base + PathStatus)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status over TCP: %d, want 404", resp.StatusCode)
	}
	// Runtime profiles: over the socket only.
	body, err = Get(ctx, sock, PathPprof+"goroutine?debug=1")
	if err != nil || !strings.Contains(string(body), "goroutine profile:") {
		t.Fatalf("goroutine profile over the socket: %v\n%.200s", err, body)
	}
	resp, err = http.Get(base + PathPprof + "goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("profiles over TCP: %d, want 404", resp.StatusCode)
	}
}

func TestServer_socketRemovedOnStop(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	srv, err := Listen(Config{Socket: sock}, fixed{&Snapshot{}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	if _, err := Fetch(context.Background(), sock); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}
	if _, err := Fetch(context.Background(), sock); !errors.Is(err, ErrNoAgent) {
		t.Fatalf("Fetch with no agent: %v, want ErrNoAgent", err)
	}
}

func TestListen_staleAndForeignFiles(t *testing.T) {
	dir := t.TempDir()
	// A socket left by a killed agent: bound, nobody listening.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	srv, err := Listen(Config{Socket: stale}, fixed{&Snapshot{}}, nil, nil)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	// A live one is another agent's.
	if _, err := Listen(Config{Socket: stale}, fixed{&Snapshot{}}, nil, nil); err == nil || !strings.Contains(err.Error(), "another agent") {
		t.Fatalf("second Listen on a live socket: %v", err)
	}
	srv.Close()
	// A regular file is never removed.
	file := filepath.Join(dir, "file.sock")
	if err := os.WriteFile(file, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(Config{Socket: file}, fixed{&Snapshot{}}, nil, nil); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen over a regular file: %v", err)
	}
	if data, _ := os.ReadFile(file); string(data) != "keep" {
		t.Fatal("regular file changed")
	}
}

// TestListen_permissions: the socket is 0660 and in the configured group;
// a user outside the group cannot connect, one in it can. It runs this
// test binary as uid 65534 and so needs root (as CI runs).
func TestListen_permissions(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a process as another user")
	}
	group := testGroup(t)
	g, err := user.LookupGroup(group)
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	dir := t.TempDir()
	// Everyone may reach the socket through its directory; the socket's
	// own mode decides.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "admin.sock")
	srv, err := Listen(Config{Socket: sock, Group: group}, fixed{&Snapshot{}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, srv)
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != SocketMode || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket mode %v, want socket %v", fi.Mode(), SocketMode)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Gid) != gid {
		t.Fatalf("socket group %d, want %d (%s)", st.Gid, gid, group)
	}
	// go test builds this binary in a directory only root may enter:
	// the other user runs a copy.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "status.test")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	dial := func(uid, gid uint32) int {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "FERRY_STATUS_DIAL="+sock)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ee.ExitCode() == 1 {
				t.Logf("dial as %d:%d: %s", uid, gid, out)
			}
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	}
	if code := dial(65534, 65534); code != 13 {
		t.Fatalf("uid 65534 outside the group: exit %d, want 13 (permission denied)", code)
	}
	if code := dial(65534, uint32(gid)); code != 0 {
		t.Fatalf("uid 65534 in group %s: exit %d, want 0 (connected)", group, code)
	}
}

// testGroup returns a group other than 65534 that exists on this machine.
func testGroup(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"adm", "daemon", "sys", "users", "staff"} {
		if g, err := user.LookupGroup(name); err == nil && g.Gid != "65534" {
			return name
		}
	}
	t.Skip("no group to test with")
	return ""
}

func TestConfig_Check(t *testing.T) {
	long := "/run/" + strings.Repeat("x", 120)
	for _, tc := range []struct {
		c       Config
		listen  string
		wantKey string
	}{
		{Config{}, "", ""},
		{Config{Socket: "/run/ferry/dmz/admin.sock", Metrics: "127.0.0.1:9464"}, "127.0.0.1:8080", ""},
		{Config{Socket: long}, "", "socket"},
		{Config{Group: "adm"}, "", "group"},
		{Config{Socket: "/x.sock", Group: "no-such-group-ferry"}, "", "group"},
		{Config{Metrics: "9464"}, "", "metrics"},
		{Config{Metrics: "127.0.0.1:8080"}, "127.0.0.1:8080", "metrics"},
	} {
		msg, key := tc.c.Check(tc.listen)
		if key != tc.wantKey || (key != "") != (msg != "") {
			t.Errorf("Check(%+v) = %q %q, want key %q", tc.c, msg, key, tc.wantKey)
		}
	}
}
