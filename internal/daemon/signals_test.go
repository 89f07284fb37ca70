package daemon

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childEnv marks a run of this test binary as the daemon under test.
const childEnv = "FERRY_DAEMON_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	os.Exit(m.Run())
}

// slowAgent runs until stopped and reloads without fault.
type slowAgent struct{ logger *slog.Logger }

func (a *slowAgent) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (a *slowAgent) Close() error                  { return nil }
func (a *slowAgent) Reload() error                 { return nil }

// childMain is a daemon whose agent takes a while to build, as one that
// opens its databases and checks its keys does.
func childMain() int {
	return Main(Spec{
		Name: "child",
		Build: func(_ string, logger *slog.Logger) (Agent, error) {
			fmt.Fprintln(os.Stderr, "building")
			time.Sleep(time.Second)
			return &slowAgent{logger: logger}, nil
		},
	}, []string{"-log-format", "text"}, os.Stderr)
}

// TestMain_signalsWhileBuilding: a SIGHUP and a SIGTERM that reach a real
// daemon process while its agent is still being built neither kill it
// nor get lost: once built, it reloads, then drains and exits 0.
func TestMain_signalsWhileBuilding(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l := <-lines:
		if l != "building" {
			t.Fatalf("first line %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the child did not start building")
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var out []string
	for l := range lines {
		out = append(out, l)
	}
	err = cmd.Wait()
	text := strings.Join(out, "\n")
	if err != nil {
		t.Fatalf("the daemon ended with %v, want exit 0:\n%s", err, text)
	}
	for _, want := range []string{"msg=reloaded", `msg="stopping: draining in-flight work"`, "msg=stopped"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %s:\n%s", want, text)
		}
	}
}
