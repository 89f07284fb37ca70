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

// checkUnits are the daily check's template units; zones are the instance
// names they are verified with.
var (
	checkUnits = []string{"ferry-check-daily@.service", "ferry-check-daily@.timer"}
	zones      = []string{"dmz", "intranet"}
)

// binPath matches the programs the units start.
var binPath = regexp.MustCompile(`/usr/local/bin/(dmz-agent|intranet-agent|ferryctl)\b`)

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
	for _, u := range append(units, checkUnits...) {
		data, err := os.ReadFile(filepath.Join("systemd", u))
		if err != nil {
			t.Fatal(err)
		}
		text := binPath.ReplaceAllString(string(data), self)
		if text == string(data) && strings.HasSuffix(u, ".service") {
			t.Fatalf("%s: no ExecStart of /usr/local/bin/...", u)
		}
		if err := os.WriteFile(filepath.Join(dir, u), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(u, "@.") {
			files = append(files, filepath.Join(dir, u))
			continue
		}
		// A template is verified through its instances, which
		// systemd-analyze finds beside it (a template alone is verified
		// without its %i resolved, and a timer alone without its service).
		for _, z := range zones {
			files = append(files, filepath.Join(dir, strings.Replace(u, "@.", "@"+z+".", 1)))
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
	for _, u := range append(units, "ferry-check-daily@.service") {
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

// TestCheckDailyUnits_contract: the daily check runs `ferryctl check daily`
// on the zone's installed config as the zone's user, once, without
// network; its timer starts it every morning at 07:00 local time, catches
// up after downtime and is enabled through timers.target.
func TestCheckDailyUnits_contract(t *testing.T) {
	tests := []struct {
		unit string
		want []string
	}{
		{"ferry-check-daily@.service", []string{
			"Type=oneshot\n", "ExecStart=/usr/local/bin/ferryctl check daily --config /etc/ferry/%i/%i.yaml\n",
			"User=ferry-%i\n", "Group=ferry-%i\n", "StateDirectory=ferry/%i\n", "PrivateNetwork=yes\n",
			"RestrictAddressFamilies=AF_UNIX\n", "CapabilityBoundingSet=\n", "NoNewPrivileges=yes\n",
			"ProtectSystem=strict\n", "SystemCallFilter=@system-service\n", "MemoryDenyWriteExecute=yes\n",
			"TimeoutStartSec=",
		}},
		{"ferry-check-daily@.timer", []string{
			"OnCalendar=*-*-* 07:00:00\n", "Persistent=true\n", "RandomizedDelaySec=", "WantedBy=timers.target\n",
		}},
	}
	for _, tt := range tests {
		data, err := os.ReadFile(filepath.Join("systemd", tt.unit))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range tt.want {
			if !strings.Contains(string(data), want) {
				t.Errorf("%s lacks %q", tt.unit, strings.TrimSpace(want))
			}
		}
	}
	// The timer starts the service of its own name (no Unit=), and the
	// randomized delay stays small: the findings are there at the start
	// of the working day.
	data, err := os.ReadFile(filepath.Join("systemd", "ferry-check-daily@.timer"))
	if err != nil {
		t.Fatal(err)
	}
	if regexp.MustCompile(`(?m)^Unit=`).Match(data) {
		t.Error("ferry-check-daily@.timer names another unit than ferry-check-daily@.service")
	}
	m := regexp.MustCompile(`(?m)^RandomizedDelaySec=(\d+)min$`).FindSubmatch(data)
	if m == nil {
		t.Fatal("ferry-check-daily@.timer: want RandomizedDelaySec=Nmin")
	}
	if n, _ := strconv.Atoi(string(m[1])); n < 1 || n > 15 {
		t.Errorf("ferry-check-daily@.timer: RandomizedDelaySec=%smin, want 1 to 15 minutes", m[1])
	}
}
