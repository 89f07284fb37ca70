package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var units = []string{"ferry-dmz-agent.service", "ferry-intranet-agent.service"}

// systemdAnalyze returns the path of systemd-analyze, skipping the test
// where it is not installed (.ci/run installs it).
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (apt-get install systemd)")
	}
	return path
}

// TestUnits_verify: `systemd-analyze verify` finds nothing wrong with the
// units. It checks that the programs they start exist, so the units are
// verified with their /usr/local/bin paths pointing at an executable
// that does (this test's own binary).
func TestUnits_verify(t *testing.T) {
	sa := systemdAnalyze(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var files []string
	for _, u := range units {
		data, err := os.ReadFile(filepath.Join("systemd", u))
		if err != nil {
			t.Fatal(err)
		}
		text := regexp.MustCompile(`/usr/local/bin/(dmz|intranet)-agent`).ReplaceAllString(string(data), self)
		if text == string(data) {
			t.Fatalf("%s: no ExecStart of /usr/local/bin/*-agent", u)
		}
		files = append(files, filepath.Join(dir, u))
		if err := os.WriteFile(files[len(files)-1], []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(sa, append([]string{"verify"}, files...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestUnits_security: `systemd-analyze security --offline=yes` rates each
// unit 2.0 or lower ("OK" or "SAFE").
func TestUnits_security(t *testing.T) {
	sa := systemdAnalyze(t)
	level := regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d) (\S+)`)
	for _, u := range units {
		out, err := exec.Command(sa, "security", "--offline=yes", "--threshold=20", filepath.Join("systemd", u)).CombinedOutput()
		m := level.FindStringSubmatch(string(out))
		if m == nil {
			t.Fatalf("%s: no exposure level in the output (%v):\n%s", u, err, out)
		}
		exposure, _ := strconv.ParseFloat(m[1], 64)
		if err != nil || exposure > 2.0 {
			t.Errorf("%s: exposure %s %s, want 2.0 or lower (%v):\n%s", u, m[1], m[2], err, out)
			continue
		}
		t.Logf("%s: exposure %s %s", u, m[1], m[2])
	}
}

// TestUnits_contract: what the agents and docs rely on is in each unit:
// readiness and watchdog through sd_notify, reload by SIGHUP, no restart
// loop on a config error (exit 78), its own user, and no capabilities.
func TestUnits_contract(t *testing.T) {
	for _, u := range units {
		data, err := os.ReadFile(filepath.Join("systemd", u))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"Type=notify\n", "NotifyAccess=main\n", "WatchdogSec=", "ExecReload=/bin/kill -HUP $MAINPID\n",
			"RestartPreventExitStatus=78\n", "CapabilityBoundingSet=\n", "NoNewPrivileges=yes\n", "ProtectSystem=strict\n",
			"SystemCallFilter=@system-service\n", "MemoryDenyWriteExecute=yes\n", "StateDirectory=", "ConfigurationDirectory=", "LogsDirectory="} {
			if !strings.Contains(string(data), want) {
				t.Errorf("%s lacks %q", u, strings.TrimSpace(want))
			}
		}
		if !regexp.MustCompile(`(?m)^User=ferry-`).Match(data) {
			t.Errorf("%s runs as no dedicated user", u)
		}
	}
}
