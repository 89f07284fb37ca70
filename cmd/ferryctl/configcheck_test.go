package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// configCheckFixture copies testdata/configcheck/name into a new directory
// laid out as a careful admin would: the config 0640, keys/ 0700 with its
// private files 0600, the state directories 0750, and the private files
// the weak configs name outside keys/ 0600. It returns the directory and
// the config's path. Modes are set here, never taken from git.
func configCheckFixture(t *testing.T, name string) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	for _, d := range []string{"keys", "keys/admins", "state", "state/inbox", "state/quarantine", "exchange/requests", "exchange/results"} {
		mode := os.FileMode(0o750)
		if strings.HasPrefix(d, "keys") {
			mode = 0o700
		}
		if err := os.MkdirAll(filepath.Join(dir, d), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, d), mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"keys/sign.key", "keys/age.key", "keys/audit-hmac.key", "keys/webhook.secret",
		"keys/sftp_ed25519", "keys/ftp_password", "ftp_password", "webhook.secret", "sftp_ed25519", "server.key"} {
		writeFile(t, filepath.Join(dir, f), []byte("secret\n"), 0o600)
	}
	for _, f := range []string{"keys/sign.pub", "keys/known_hosts"} {
		writeFile(t, filepath.Join(dir, f), []byte("public\n"), 0o644)
	}
	path = filepath.Join(dir, name)
	writeFile(t, path, readBytes(t, filepath.Join("testdata", "configcheck", name)), 0o640)
	return dir, path
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestConfigCheck_good(t *testing.T) {
	_, dmzPath := configCheckFixture(t, "dmz-good.yaml")
	_, inPath := configCheckFixture(t, "intranet-good.yaml")
	for _, args := range [][]string{{}, {"--strict"}} {
		out, _ := mustFerryctl(t, 0, append([]string{"config", "check", dmzPath, inPath}, args...)...)
		want := dmzPath + ": dmz agent config: 0 errors, 0 warnings\n" +
			inPath + ": intranet agent config: 0 errors, 0 warnings\n"
		if out != want {
			t.Errorf("config check %v:\n%s\nwant:\n%s", args, out, want)
		}
	}
	out, _ := mustFerryctl(t, 0, "config", "check", "--json", dmzPath)
	if strings.TrimSpace(out) != "[]" {
		t.Errorf("--json of a good config: %s, want []", out)
	}
}

func TestConfigCheck_errors(t *testing.T) {
	_, path := configCheckFixture(t, "dmz-errors.yaml")
	out, errOut := mustFerryctl(t, 1, "config", "check", path)
	p := regexp.QuoteMeta(path)
	want := []string{
		p + `:8: receive\.dir: must differ from send\.dir: each direction has its own medium`,
		p + `:11: envelope_ttl: must be at least 1m`,
		p + `:15: clients\[1\]\.name: duplicate client name "portal"`,
		p + `: dmz agent config: 3 errors, 0 warnings`,
	}
	matches(t, "stdout", out, `^`+strings.Join(want, `\n`)+`\n$`)
	matches(t, "stderr", errOut, `^ferryctl: error: `+p+`: the config has errors\n$`)

	// A YAML problem stops the reading: it is the one error.
	writeFile(t, path, append(readBytes(t, path), "colour: blue\n"...), 0o640)
	out, _ = mustFerryctl(t, 1, "config", "check", path)
	matches(t, "stdout", out, `^`+p+`:19: colour: unknown key "colour"\n`+p+`: dmz agent config: 1 error, 0 warnings\n$`)

	// A good file and a bad one: every file is checked, the exit is 1.
	_, good := configCheckFixture(t, "intranet-good.yaml")
	writeFile(t, path, []byte("zone: dmz\nlisten: [\n"), 0o640)
	out, _ = mustFerryctl(t, 1, "config", "check", path, good)
	matches(t, "stdout", out, `(?m)^`+p+`:\d+: .*\n`+p+`: dmz agent config: 1 error, 0 warnings\n`+regexp.QuoteMeta(good)+`: intranet agent config: 0 errors, 0 warnings\n$`)

	out, _ = mustFerryctl(t, 1, "config", "check", filepath.Join(t.TempDir(), "missing.yaml"))
	matches(t, "stdout", out, `missing\.yaml: .*no such file or directory\n.*missing\.yaml: not an agent config: 1 error, 0 warnings\n$`)
}

func TestConfigCheck_warnings(t *testing.T) {
	type setup func(t *testing.T, dir, path string)
	tests := []struct {
		name  string
		file  string
		setup setup
		want  []string // the warnings, after FILE, in order
	}{
		{"config writable by group", "dmz-good.yaml", func(t *testing.T, dir, path string) { chmod(t, path, 0o660) },
			[]string{`: warning: mode 0660: writable by group or others`}},
		{"config writable by others", "intranet-good.yaml", func(t *testing.T, dir, path string) { chmod(t, path, 0o646) },
			[]string{`: warning: mode 0646: writable by group or others`}},
		{"config owned by another user", "dmz-good.yaml", func(t *testing.T, dir, path string) {
			if os.Getuid() != 0 {
				t.Skip("needs root to give the file away")
			}
			if err := os.Chown(path, 65534, -1); err != nil {
				t.Fatal(err)
			}
		}, []string{`: warning: owned by uid 65534, neither root nor the user running this check`}},
		{"key directory open", "dmz-good.yaml", func(t *testing.T, dir, path string) { chmod(t, filepath.Join(dir, "keys"), 0o750) },
			[]string{`:5: warning: keys: key directory .*/keys has mode 0750: open to group or others; want 0700`}},
		{"private key readable by group", "dmz-good.yaml", func(t *testing.T, dir, path string) { chmod(t, filepath.Join(dir, "keys", "sign.key"), 0o640) },
			[]string{`:5: warning: keys: .*/keys/sign\.key: private key file permissions too open: mode 0640, want 0600; the agent refuses to start with it`}},
		{"audit hmac key readable by others", "intranet-good.yaml", func(t *testing.T, dir, path string) {
			chmod(t, filepath.Join(dir, "keys", "audit-hmac.key"), 0o604)
		}, []string{`:4: warning: keys: .*/keys/audit-hmac\.key: .*mode 0604, want 0600; the agent refuses to start with it`}},
		{"rotated private key", "dmz-good.yaml", func(t *testing.T, dir, path string) {
			rot := filepath.Join(dir, "keys", "rotated", "0123abcd")
			if err := os.MkdirAll(rot, 0o700); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(rot, "age.key"), []byte("secret\n"), 0o644)
		}, []string{`:5: warning: keys: .*/keys/rotated/0123abcd/age\.key: .*mode 0644`}},
		{"private key a symlink", "dmz-good.yaml", func(t *testing.T, dir, path string) {
			key := filepath.Join(dir, "keys", "age.key")
			if err := os.Rename(key, filepath.Join(dir, "age.key")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join(dir, "age.key"), key); err != nil {
				t.Fatal(err)
			}
		}, []string{`:5: warning: keys: .*/keys/age\.key: .*not a regular file; the agent refuses to start with it`}},
		{"webhook secret readable by group", "dmz-good.yaml", func(t *testing.T, dir, path string) {
			chmod(t, filepath.Join(dir, "keys", "webhook.secret"), 0o640)
		}, []string{`:24: warning: alarms\.webhook\.secret_file: .*/keys/webhook\.secret: .*mode 0640`}},
		{"sftp key readable by others", "intranet-good.yaml", func(t *testing.T, dir, path string) {
			chmod(t, filepath.Join(dir, "keys", "sftp_ed25519"), 0o644)
		}, []string{`:15: warning: send\.key: .*/keys/sftp_ed25519: .*mode 0644`}},
		{"spool directory readable by others", "dmz-good.yaml", func(t *testing.T, dir, path string) { chmod(t, filepath.Join(dir, "state"), 0o755) },
			[]string{`:6: warning: spool: directory .*/state has mode 0755: others can read what it holds`}},
		{"inbox readable by others", "intranet-good.yaml", func(t *testing.T, dir, path string) {
			chmod(t, filepath.Join(dir, "state", "inbox"), 0o705)
		}, []string{`:18: warning: inbox: directory .*/state/inbox has mode 0705`}},
		{"quarantine readable by others", "dmz-good.yaml", func(t *testing.T, dir, path string) {
			chmod(t, filepath.Join(dir, "state", "quarantine"), 0o754)
		}, []string{`:11: warning: quarantine: directory .*/state/quarantine has mode 0754`}},
		{"quarantine readable by group only", "dmz-good.yaml", func(t *testing.T, dir, path string) {
			chmod(t, filepath.Join(dir, "state", "quarantine"), 0o770)
		}, nil},
		{"weak dmz settings", "dmz-weak.yaml", func(t *testing.T, dir, path string) {
			chmod(t, filepath.Join(dir, "ftp_password"), 0o640)
			chmod(t, filepath.Join(dir, "server.key"), 0o644)
		},
			[]string{
				`:4: warning: listen: not a loopback address, and no per-address rate limit`,
				`:9: warning: send\.insecure_plain_ftp: plain FTP: the password and the envelopes cross the network unencrypted; use type ftps`,
				`:12: warning: send\.password_file: .*/ftp_password: .*mode 0640, want 0600; the agent refuses to start with it`,
				`:17: warning: envelope_ttl: 8d is above 7d`,
				`:22: warning: admin\.metrics: 0\.0\.0\.0:9464 is not a loopback address`,
				`:22: warning: admin\.socket: no admin socket: ferryctl status and ferryctl check daily cannot reach the agent`,
				`:24: warning: alarms\.key_max_age: 800d is above 730d, the operating rules' key lifetime`,
				`:25: warning: alarms\.policy_max_age: 1000d is above 730d`,
				`:27: warning: alarms\.webhook\.url: alarms are posted over plain http://: use https://`,
				`:31: warning: tls\.key: .*/server\.key: .*mode 0644, want 0600`,
			}},
		{"weak intranet settings", "intranet-weak.yaml", nil,
			[]string{
				`:5: warning: policy_signatures: one admin alone can put a policy in force: no two-person rule`,
				`:9: warning: receive\.insecure_plain_ftp: plain FTP`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, path := configCheckFixture(t, tt.file)
			if tt.setup != nil {
				tt.setup(t, dir, path)
			}
			p := regexp.QuoteMeta(path)
			var lines []string
			for _, w := range tt.want {
				lines = append(lines, p+w+`.*\n`)
			}
			n := len(tt.want)
			summary := p + `: (dmz|intranet) agent config: 0 errors, ` + plural(n, "warning")
			out, _ := mustFerryctl(t, 0, "config", "check", path)
			matches(t, "stdout", out, `^`+strings.Join(lines, "")+summary+`\n$`)
			if n > 0 {
				out, errOut := mustFerryctl(t, 1, "config", "check", "--strict", path)
				matches(t, "stdout", out, summary+` \(--strict: warnings count as errors\)\n$`)
				matches(t, "stderr", errOut, `the config has errors`)
			}
		})
	}
}

func TestConfigCheck_JSON(t *testing.T) {
	_, bad := configCheckFixture(t, "dmz-errors.yaml")
	_, weak := configCheckFixture(t, "intranet-weak.yaml")
	out, _ := mustFerryctl(t, 1, "config", "check", "--json", bad, weak)
	var got []configFinding
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output is not a JSON list of findings: %v\n%s", err, out)
	}
	want := []configFinding{
		{bad, 8, "receive.dir", "error", "must differ from send.dir: each direction has its own medium"},
		{bad, 11, "envelope_ttl", "error", "must be at least 1m"},
		{bad, 15, "clients[1].name", "error", `duplicate client name "portal"`},
		{weak, 5, "policy_signatures", "warning", "one admin alone can put a policy in force: no two-person rule; want 2 or more"},
		{weak, 9, "receive.insecure_plain_ftp", "warning", "plain FTP: the password and the envelopes cross the network unencrypted; use type ftps"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d findings, want %d:\n%s", len(got), len(want), out)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("finding %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	// The keys are the documented ones, line included when 0.
	matches(t, "stdout", out, `"file": .*\n\s*"line": 8,\n\s*"field": "receive.dir",\n\s*"severity": "error",\n\s*"message": `)
}

func TestConfigCheck_kind(t *testing.T) {
	dir, neither := configCheckFixture(t, "neither.yaml")
	out, _ := mustFerryctl(t, 1, "config", "check", neither)
	matches(t, "stdout", out, `^`+regexp.QuoteMeta(neither)+`: cannot tell a DMZ agent config from an intranet one: none of the keys only one of them has \(DMZ: listen, spool, .*clients; intranet: admins, policy_signatures, .*replica\) .*pass --agent dmz or --agent intranet\n`)
	matches(t, "stdout", out, `: not an agent config: 1 error, 0 warnings\n$`)

	// --agent says it: then the file is loaded as that agent's.
	out, _ = mustFerryctl(t, 1, "config", "check", "--agent", "intranet", neither)
	matches(t, "stdout", out, `(?m)^.*neither\.yaml:2: receive\.dir: required`)
	matches(t, "stdout", out, `(?m)^.*neither\.yaml: intranet agent config: \d+ errors?, 0 warnings$`)
	mustFerryctl(t, 2, "config", "check", "--agent", "edge", neither)
	mustFerryctl(t, 2, "config", "check")

	// Without own keys, the zone's default name decides.
	zoneOnly := filepath.Join(dir, "zone.yaml")
	writeFile(t, zoneOnly, []byte("zone: intranet\npeer: dmz\n"), 0o640)
	out, _ = mustFerryctl(t, 1, "config", "check", zoneOnly)
	matches(t, "stdout", out, `(?m)^.*zone\.yaml: intranet agent config: `)

	// A DMZ config with one intranet key is still the DMZ's, and the stray
	// key is its error.
	_, path := configCheckFixture(t, "dmz-good.yaml")
	writeFile(t, path, append(readBytes(t, path), "replica: replica.db\n"...), 0o640)
	out, _ = mustFerryctl(t, 1, "config", "check", path)
	matches(t, "stdout", out, `^`+regexp.QuoteMeta(path)+`:25: replica: unknown key "replica"\n.*: dmz agent config: 1 error, 0 warnings\n$`)

	// A file that is not YAML reports where.
	writeFile(t, path, []byte("zone: dmz\n\tlisten: x\n"), 0o640)
	out, _ = mustFerryctl(t, 1, "config", "check", path)
	matches(t, "stdout", out, `^`+regexp.QuoteMeta(path)+`:2: `)
}
