package deploy

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ferrybridge/ferry/internal/dmz"
	"github.com/ferrybridge/ferry/internal/intranet"
)

// An entry is a path that the install lays out, as it must be.
type entry struct {
	path        string // below the root
	dir         bool
	mode        fs.FileMode // permission, setgid and sticky bits
	user, group string
}

// installed are the files of `make install` with the default PREFIX.
var installed = []entry{
	{"/usr/local/bin/ferryctl", false, 0o755, "root", "root"},
	{"/usr/local/bin/dmz-agent", false, 0o755, "root", "root"},
	{"/usr/local/bin/intranet-agent", false, 0o755, "root", "root"},
	{"/usr/local/lib/systemd/system/ferry-dmz-agent.service", false, 0o644, "root", "root"},
	{"/usr/local/lib/systemd/system/ferry-intranet-agent.service", false, 0o644, "root", "root"},
	{"/usr/local/lib/systemd/system/ferry-check-daily@.service", false, 0o644, "root", "root"},
	{"/usr/local/lib/systemd/system/ferry-check-daily@.timer", false, 0o644, "root", "root"},
	{"/usr/local/lib/sysusers.d/ferry.conf", false, 0o644, "root", "root"},
	{"/usr/local/lib/tmpfiles.d/ferry.conf", false, 0o644, "root", "root"},
	{"/usr/local/share/ferry/dmz.yaml.example", false, 0o644, "root", "root"},
	{"/usr/local/share/ferry/intranet.yaml.example", false, 0o644, "root", "root"},
}

// laidOut are the directories and files that sysusers.d/ferry.conf and
// tmpfiles.d/ferry.conf make, and the examples install puts in /etc.
var laidOut = []entry{
	{"/etc/ferry", true, 0o755, "root", "root"},
	{"/etc/ferry/dmz", true, 0o750, "root", "ferry-dmz"},
	{"/etc/ferry/dmz/dmz.yaml.example", false, 0o640, "root", "root"},
	{"/etc/ferry/dmz/keys", true, 0o700, "ferry-dmz", "ferry-dmz"},
	{"/etc/ferry/intranet", true, 0o750, "root", "ferry-intranet"},
	{"/etc/ferry/intranet/intranet.yaml.example", false, 0o640, "root", "root"},
	{"/etc/ferry/intranet/keys", true, 0o700, "ferry-intranet", "ferry-intranet"},
	{"/var/lib/ferry", true, 0o755, "root", "root"},
	{"/var/lib/ferry/dmz", true, 0o700, "ferry-dmz", "ferry-dmz"},
	{"/var/lib/ferry/intranet", true, 0o700, "ferry-intranet", "ferry-intranet"},
	{"/var/log/ferry/dmz", true, 0o750, "ferry-dmz", "ferry-dmz"},
	{"/var/log/ferry/intranet", true, 0o750, "ferry-intranet", "ferry-intranet"},
	{"/run/ferry", true, 0o755, "root", "root"},
	{"/srv/ferry/exchange", true, 0o755, "root", "root"},
	{"/srv/ferry/exchange/requests", true, 0o770 | fs.ModeSetgid, "ferry-dmz", "ferry-intranet"},
	{"/srv/ferry/exchange/results", true, 0o770 | fs.ModeSetgid, "ferry-intranet", "ferry-dmz"},
}

// TestInstall runs `make install` into a DESTDIR, applies its sysusers.d
// and tmpfiles.d files to that root as a package would, and checks every
// path's type, mode and owner, that the binaries run, that the zones'
// users can use the exchange directories and reach their own files and
// not the other zone's, that a second install keeps an admin's edits, and
// what `make uninstall` leaves.
func TestInstall(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed (.ci/run installs it)")
	}
	root := newRoot(t)
	bin := t.TempDir() // the build's output, out of the tree
	out := runMake(t, "install", "DESTDIR="+root, "BIN="+bin)

	checkEntries(t, root, installed, nil)
	for _, u := range append(append([]string{}, units...), checkUnits...) {
		sameFile(t, filepath.Join("systemd", u), filepath.Join(root, "usr/local/lib/systemd/system", u))
	}
	for _, z := range zones {
		sameFile(t, filepath.Join("etc", z+".yaml"), filepath.Join(root, "usr/local/share/ferry", z+".yaml.example"))
		sameFile(t, filepath.Join("etc", z+".yaml"), filepath.Join(root, "etc/ferry", z, z+".yaml.example"))
	}
	if strings.Contains(out, "daemon-reload") || strings.Contains(out, "systemd-sysusers") {
		t.Errorf("make install with DESTDIR applied the files to this host:\n%s", out)
	}
	for _, args := range [][]string{{"ferryctl", "--help"}, {"dmz-agent", "-h"}, {"intranet-agent", "-h"}} {
		if out, err := exec.Command(filepath.Join(root, "usr/local/bin", args[0]), args[1:]...).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	ids := applyLayout(t, root)
	checkEntries(t, root, laidOut, &ids)
	checkAccess(t, root, ids)

	// A second install keeps what an admin has: an edited example and a
	// config, while the pristine example is replaced.
	example := filepath.Join(root, "etc/ferry/dmz/dmz.yaml.example")
	edited := append(readFile(t, example), "# edited by an admin\n"...)
	writeFile(t, example, edited, 0o640)
	cfg := filepath.Join(root, "etc/ferry/dmz/dmz.yaml")
	writeFile(t, cfg, []byte("zone: dmz\n"), 0o640)
	out = runMake(t, "install", "DESTDIR="+root, "BIN="+bin)
	if got := readFile(t, example); !bytes.Equal(got, edited) {
		t.Errorf("a second make install overwrote the edited %s", example)
	}
	if !strings.Contains(out, "kept "+example) {
		t.Errorf("a second make install does not say it kept %s:\n%s", example, out)
	}
	if got := string(readFile(t, cfg)); got != "zone: dmz\n" {
		t.Errorf("a second make install changed %s: %q", cfg, got)
	}
	sameFile(t, filepath.Join("etc", "dmz.yaml"), filepath.Join(root, "usr/local/share/ferry/dmz.yaml.example"))

	runMake(t, "uninstall", "DESTDIR="+root)
	for _, e := range installed {
		if _, err := os.Lstat(filepath.Join(root, e.path)); !os.IsNotExist(err) {
			t.Errorf("make uninstall left %s (%v)", e.path, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "usr/local/share/ferry")); !os.IsNotExist(err) {
		t.Errorf("make uninstall left /usr/local/share/ferry (%v)", err)
	}
	// Configs, keys, state, logs and the media stay, and so do the users.
	checkEntries(t, root, laidOut, &ids)
	for _, p := range []string{"/etc/ferry/dmz/dmz.yaml", "/etc/ferry/dmz/keys/sign.key", "/var/lib/ferry/intranet/requests-1.fxe"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err != nil {
			t.Errorf("make uninstall removed %s: %v", p, err)
		}
	}
	if got := readIDs(t, root); got.uid["ferry-dmz"] != ids.uid["ferry-dmz"] || got.gid["ferry-admin"] != ids.gid["ferry-admin"] {
		t.Errorf("make uninstall changed the users and groups")
	}
}

// newRoot returns an empty directory that every user may traverse, as /
// is, so that the zones' users can reach the paths below it.
func newRoot(t *testing.T) string {
	t.Helper()
	root, err := os.MkdirTemp("", "ferry-install-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

// runMake runs make in the repository with args and returns its output.
func runMake(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("make", append([]string{"--no-print-directory", "-C", ".."}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ids are a root's users and groups by name.
type ids struct {
	uid, gid map[string]int
}

// applyLayout runs systemd-sysusers and systemd-tmpfiles on the installed
// ferry.conf files inside root, with a key file and a config in place as
// an admin leaves them (root's, 0600), and returns root's users and
// groups.
func applyLayout(t *testing.T, root string) ids {
	t.Helper()
	for _, tool := range []string{"systemd-sysusers", "systemd-tmpfiles"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (.ci/run installs systemd)", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("setting owners needs root")
	}
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 && name == "systemd-tmpfiles" {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	run("systemd-sysusers", "--root="+root, filepath.Join(root, "usr/local/lib/sysusers.d/ferry.conf"))
	tmpfiles := filepath.Join(root, "usr/local/lib/tmpfiles.d/ferry.conf")
	run("systemd-tmpfiles", "--root="+root, "--create", tmpfiles)
	// What an admin puts in place as root afterwards gets its owners from
	// the next run (ferry.conf's z and Z lines).
	writeFile(t, filepath.Join(root, "etc/ferry/dmz/keys/sign.key"), []byte("key\n"), 0o600)
	writeFile(t, filepath.Join(root, "etc/ferry/intranet/intranet.yaml"), []byte("zone: intranet\n"), 0o600)
	run("systemd-tmpfiles", "--root="+root, "--create", tmpfiles)
	id := readIDs(t, root)
	checkEntries(t, root, []entry{
		{"/etc/ferry/dmz/keys/sign.key", false, 0o600, "ferry-dmz", "ferry-dmz"},
		{"/etc/ferry/intranet/intranet.yaml", false, 0o640, "root", "ferry-intranet"},
	}, &id)
	for _, u := range []string{"ferry-dmz", "ferry-intranet"} {
		if id.uid[u] == 0 || id.gid[u] == 0 {
			t.Errorf("sysusers made no user and group %s", u)
		}
	}
	if _, ok := id.gid["ferry-admin"]; !ok {
		t.Error("sysusers made no group ferry-admin")
	}
	return id
}

// readIDs reads root's /etc/passwd and /etc/group.
func readIDs(t *testing.T, root string) ids {
	t.Helper()
	id := ids{uid: map[string]int{"root": 0}, gid: map[string]int{"root": 0}}
	for file, m := range map[string]map[string]int{"passwd": id.uid, "group": id.gid} {
		f, err := os.Open(filepath.Join(root, "etc", file))
		if err != nil {
			t.Fatal(err)
		}
		s := bufio.NewScanner(f)
		for s.Scan() {
			fields := strings.Split(s.Text(), ":")
			if len(fields) < 3 {
				continue
			}
			n, err := strconv.Atoi(fields[2])
			if err != nil {
				t.Fatalf("%s: %q: %v", file, s.Text(), err)
			}
			m[fields[0]] = n
		}
		f.Close()
	}
	return id
}

// checkEntries checks each entry's type and mode, and with id its owners.
func checkEntries(t *testing.T, root string, entries []entry, id *ids) {
	t.Helper()
	for _, e := range entries {
		fi, err := os.Lstat(filepath.Join(root, e.path))
		if err != nil {
			t.Errorf("%s: %v", e.path, err)
			continue
		}
		if fi.IsDir() != e.dir || !fi.IsDir() && !fi.Mode().IsRegular() {
			t.Errorf("%s: type %v, want a directory: %v", e.path, fi.Mode().Type(), e.dir)
		}
		if got := fi.Mode() & (fs.ModePerm | fs.ModeSetgid | fs.ModeSetuid | fs.ModeSticky); got != e.mode {
			t.Errorf("%s: mode %v, want %v", e.path, got, e.mode)
		}
		if id == nil {
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		uid, okU := id.uid[e.user]
		gid, okG := id.gid[e.group]
		if !okU || !okG || int(st.Uid) != uid || int(st.Gid) != gid {
			t.Errorf("%s: owner %d:%d, want %s:%s (%d:%d)", e.path, st.Uid, st.Gid, e.user, e.group, uid, gid)
		}
	}
}

// checkAccess runs shell commands as the zones' users: each zone
// publishes into its send directory as the directory medium does (a
// dot-named temporary file, 0640, renamed into place) and claims from
// its receive directory by reading and renaming into its state; each
// reads its own keys and config; neither reaches the other's state or
// keys, and other users reach neither exchange directory.
func checkAccess(t *testing.T, root string, id ids) {
	t.Helper()
	as := func(user, script string) (string, error) {
		t.Helper()
		cmd := exec.Command("/bin/sh", "-ec", "umask 077\n"+script)
		cmd.Dir = root
		uid, gid := id.uid[user], id.gid[user]
		if user == "nobody" {
			uid, gid = 65534, 65534
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	allowed := []struct{ user, script string }{
		{"ferry-dmz", "printf envelope > srv/ferry/exchange/requests/.tmp-1; chmod 0640 srv/ferry/exchange/requests/.tmp-1\n" +
			"mv srv/ferry/exchange/requests/.tmp-1 srv/ferry/exchange/requests/requests-1.fxe"},
		{"ferry-intranet", "cat srv/ferry/exchange/requests/requests-1.fxe > /dev/null\n" +
			"mv srv/ferry/exchange/requests/requests-1.fxe var/lib/ferry/intranet/"},
		{"ferry-intranet", "printf envelope > srv/ferry/exchange/results/.tmp-1; chmod 0640 srv/ferry/exchange/results/.tmp-1\n" +
			"mv srv/ferry/exchange/results/.tmp-1 srv/ferry/exchange/results/results-1.fxe"},
		{"ferry-dmz", "cat srv/ferry/exchange/results/results-1.fxe > /dev/null\n" +
			"cp srv/ferry/exchange/results/results-1.fxe var/lib/ferry/dmz/ && rm srv/ferry/exchange/results/results-1.fxe"},
		{"ferry-dmz", "cat etc/ferry/dmz/keys/sign.key > /dev/null; touch var/lib/ferry/dmz/spool.db var/log/ferry/dmz/x"},
		{"ferry-intranet", "cat etc/ferry/intranet/intranet.yaml > /dev/null; ls etc/ferry/intranet/keys > /dev/null"},
	}
	for _, a := range allowed {
		if out, err := as(a.user, a.script); err != nil {
			t.Errorf("as %s: %s: %v: %s", a.user, a.script, err, out)
		}
	}
	denied := []struct{ user, script string }{
		{"ferry-dmz", "ls var/lib/ferry/intranet"},
		{"ferry-dmz", "ls etc/ferry/intranet"},
		{"ferry-intranet", "ls etc/ferry/dmz/keys"},
		{"ferry-dmz", "touch etc/ferry/dmz/dmz.yaml"},
		{"ferry-dmz", "touch etc/ferry/dmz/new"},
		{"ferry-intranet", "ls var/lib/ferry/dmz"},
		{"nobody", "ls srv/ferry/exchange/requests"},
		{"nobody", "ls srv/ferry/exchange/results"},
		{"nobody", "ls etc/ferry/dmz"},
	}
	for _, d := range denied {
		if _, err := as(d.user, d.script); err == nil {
			t.Errorf("as %s: %s: allowed, want denied", d.user, d.script)
		}
	}
}

// TestExampleConfigs_load: deploy/etc's example configs load with the
// agents' own LoadConfig and name the production layout: keys in
// /etc/ferry/ZONE/keys, state under /var/lib/ferry/ZONE, the exchange
// directories tmpfiles.d/ferry.conf makes, and the admin socket in the
// agent's runtime directory, group ferry-admin. The group must exist
// where the config loads, so the copy loaded here names the test's own
// group instead; nothing else is changed.
func TestExampleConfigs_load(t *testing.T) {
	g, err := user.LookupGroupId(strconv.Itoa(os.Getgid()))
	if err != nil {
		t.Fatal(err)
	}
	load := func(zone string) string {
		t.Helper()
		data := readFile(t, filepath.Join("etc", zone+".yaml"))
		groupLine := regexp.MustCompile(`(?m)^  group: ferry-admin$`)
		if n := len(groupLine.FindAll(data, -1)); n != 1 {
			t.Fatalf("etc/%s.yaml: %d lines `  group: ferry-admin`, want 1", zone, n)
		}
		path := filepath.Join(t.TempDir(), zone+".yaml")
		writeFile(t, path, groupLine.ReplaceAll(data, []byte("  group: "+g.Name)), 0o600)
		return path
	}
	tmpfiles := string(readFile(t, filepath.Join("tmpfiles.d", "ferry.conf")))
	// medium checks that dir is a directory the line for which gives
	// owner write access and group read access.
	medium := func(zone, dir, owner, group string) {
		t.Helper()
		re := regexp.MustCompile(`(?m)^d\s+` + regexp.QuoteMeta(dir) + `\s+2770\s+` + owner + `\s+` + group + `\s+-$`)
		if !re.MatchString(tmpfiles) {
			t.Errorf("%s: %s: tmpfiles.d/ferry.conf has no line `d %s 2770 %s %s -`", zone, dir, dir, owner, group)
		}
	}
	under := func(zone, key, path, dir string) {
		t.Helper()
		if !strings.HasPrefix(path, dir+"/") {
			t.Errorf("%s: %s is %s, want it under %s", zone, key, path, dir)
		}
	}

	d, err := dmz.LoadConfig(load("dmz"))
	if err != nil {
		t.Fatalf("deploy/etc/dmz.yaml: %v", err)
	}
	// No bootstrap policy: it would put the intranet's SQL on the DMZ.
	if d.Keys != "/etc/ferry/dmz/keys" || d.Policy != "" {
		t.Errorf("dmz: keys %s, policy %q, want keys in /etc/ferry/dmz and no policy", d.Keys, d.Policy)
	}
	for key, p := range map[string]string{"spool": d.Spool, "audit_log": d.AuditLog, "inbox": d.Inbox, "quarantine": d.Quarantine} {
		under("dmz", key, p, "/var/lib/ferry/dmz")
	}
	if d.Send.Dir != "/srv/ferry/exchange/requests" || d.Receive.Dir != "/srv/ferry/exchange/results" {
		t.Errorf("dmz: send %s, receive %s", d.Send.Dir, d.Receive.Dir)
	}
	medium("dmz", d.Send.Dir, "ferry-dmz", "ferry-intranet")
	medium("dmz", d.Receive.Dir, "ferry-intranet", "ferry-dmz")
	if d.Admin.Socket != "/run/ferry/dmz/admin.sock" || d.Admin.Metrics != "" {
		t.Errorf("dmz: admin socket %s, metrics %q", d.Admin.Socket, d.Admin.Metrics)
	}

	in, err := intranet.LoadConfig(load("intranet"))
	if err != nil {
		t.Fatalf("deploy/etc/intranet.yaml: %v", err)
	}
	if in.Keys != "/etc/ferry/intranet/keys" || in.Policy != "/etc/ferry/intranet/policy.yaml" || in.Admins != "/etc/ferry/intranet/keys/admins" {
		t.Errorf("intranet: keys %s, policy %s, admins %s, want them in /etc/ferry/intranet", in.Keys, in.Policy, in.Admins)
	}
	// Everything the agent writes is in its state directory: /etc is
	// read-only under ProtectSystem=strict.
	for key, p := range map[string]string{"replica": in.Replica, "approvals": in.Approvals, "audit_log": in.AuditLog, "inbox": in.Inbox, "quarantine": in.Quarantine} {
		under("intranet", key, p, "/var/lib/ferry/intranet")
	}
	if in.Receive.Dir != d.Send.Dir || in.Send.Dir != d.Receive.Dir {
		t.Errorf("intranet: receive %s, send %s, want the DMZ's send and receive", in.Receive.Dir, in.Send.Dir)
	}
	if in.Admin.Socket != "/run/ferry/intranet/admin.sock" || in.Admin.Metrics != "" {
		t.Errorf("intranet: admin socket %s, metrics %q (the unit gives it no network)", in.Admin.Socket, in.Admin.Metrics)
	}

	// The units start the agents and the check on the configs where the
	// examples say to copy them.
	for _, z := range zones {
		unit := string(readFile(t, filepath.Join("systemd", "ferry-"+z+"-agent.service")))
		if want := "-config /etc/ferry/" + z + "/" + z + ".yaml "; !strings.Contains(unit, want) {
			t.Errorf("ferry-%s-agent.service: ExecStart lacks %q", z, want)
		}
		example := string(readFile(t, filepath.Join("etc", z+".yaml")))
		if want := "/etc/ferry/" + z + "/" + z + ".yaml"; !strings.Contains(example, "copy it to "+want) {
			t.Errorf("etc/%s.yaml: its header does not say to copy it to %s", z, want)
		}
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func writeFile(t *testing.T, path string, data []byte, perm fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

// sameFile checks that the installed file has the source's bytes.
func sameFile(t *testing.T, src, dst string) {
	t.Helper()
	if !bytes.Equal(readFile(t, src), readFile(t, dst)) {
		t.Errorf("%s differs from %s", dst, src)
	}
}
