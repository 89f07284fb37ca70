package medium

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrybridge/ferry/internal/config"
)

func sftpConfig() Config {
	return Config{Type: TypeSFTP, Address: "boundary.example.gov:22", User: "ferry-dmz", Key: "keys/id", KnownHosts: "keys/known_hosts", Dir: "/drop/requests"}
}

func TestConfig_Check(t *testing.T) {
	with := func(f func(*Config)) Config { c := sftpConfig(); f(&c); return c }
	sec := config.Duration(time.Second)
	for _, tc := range []struct {
		name      string
		c         Config
		send      bool
		key, want string
	}{
		{"receive ok", Config{Type: TypeDir, Dir: "x", Rescan: sec}, false, "", ""},
		{"send ok", Config{Type: TypeDir, Dir: "x"}, true, "", ""},
		{"unknown type", Config{Type: "ftp", Dir: "x"}, false, "type", `unknown medium type "ftp": want "dir" or "sftp"`},
		{"no type", Config{Dir: "x"}, false, "type", `unknown medium type "": want "dir" or "sftp"`},
		{"no dir", Config{Type: TypeDir}, true, "dir", "required: the medium's directory"},
		{"negative rescan", Config{Type: TypeDir, Dir: "x", Rescan: -1}, false, "rescan", "must not be negative"},
		{"rescan on send", Config{Type: TypeDir, Dir: "x", Rescan: sec}, true, "rescan", "only a receiving medium is rescanned"},
		{"sftp keys on dir", Config{Type: TypeDir, Dir: "x", User: "u", Keepalive: sec}, false, "user", `user, keepalive not valid for type "dir": only for type "sftp"`},

		{"sftp send ok", sftpConfig(), true, "", ""},
		{"sftp receive ok", with(func(c *Config) { c.Rescan, c.OpTimeout, c.TempMaxAge = sec, sec, sec }), false, "", ""},
		{"sftp ipv6", with(func(c *Config) { c.Address = "[::1]:2222" }), true, "", ""},
		{"sftp no address", with(func(c *Config) { c.Address = "" }), true, "address", "required: the SFTP server's host:port"},
		{"sftp no port", with(func(c *Config) { c.Address = "boundary" }), true, "address", `invalid address "boundary": want host:port`},
		{"sftp no host", with(func(c *Config) { c.Address = ":22" }), true, "address", `invalid address ":22": want host:port`},
		{"sftp bad port", with(func(c *Config) { c.Address = "b:ssh" }), true, "address", `invalid port in "b:ssh": want 1 to 65535`},
		{"sftp port 0", with(func(c *Config) { c.Address = "b:0" }), true, "address", `invalid port in "b:0": want 1 to 65535`},
		{"sftp user in address", with(func(c *Config) { c.Address = "u@b:22" }), true, "address", `invalid address "u@b:22": want host:port`},
		{"sftp no user", with(func(c *Config) { c.User = "" }), true, "user", "required: the SFTP login name"},
		{"sftp no key", with(func(c *Config) { c.Key = "" }), true, "key", "required: the client's private key file"},
		{"sftp no known_hosts", with(func(c *Config) { c.KnownHosts = "" }), true, "known_hosts", "required: the known_hosts file pinning the server's host key"},
		{"sftp no dir", with(func(c *Config) { c.Dir = "" }), true, "dir", "required: the drop directory on the server"},
		{"sftp relative dir", with(func(c *Config) { c.Dir = "drop/requests" }), true, "dir", `want an absolute path on the server, such as "/drop/requests"`},
		{"sftp negative dial", with(func(c *Config) { c.DialTimeout = -1 }), true, "dial_timeout", "must not be negative"},
		{"sftp negative op", with(func(c *Config) { c.OpTimeout = -1 }), true, "op_timeout", "must not be negative"},
		{"sftp negative keepalive", with(func(c *Config) { c.Keepalive = -1 }), true, "keepalive", "must not be negative"},
		{"sftp negative temp age", with(func(c *Config) { c.TempMaxAge = -1 }), true, "temp_max_age", "must not be negative"},
		{"sftp rescan on send", with(func(c *Config) { c.Rescan = sec }), true, "rescan", "only a receiving medium is rescanned"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, key := tc.c.Check(tc.send)
			if msg != tc.want || key != tc.key {
				t.Fatalf("Check = %q, %q; want %q, %q", msg, key, tc.want, tc.key)
			}
		})
	}
}

// TestConfig_CheckFileLine decodes media blocks as an agent config does
// and checks that each problem names the file, the line and the field.
func TestConfig_CheckFileLine(t *testing.T) {
	const head = "send:\n"
	for _, tc := range []struct {
		name  string
		block string // the send block's body
		field string
		line  int
		msg   string
	}{
		{"missing known_hosts", "  type: sftp\n  address: b:22\n  user: u\n  key: k\n  dir: /d\n", "send.known_hosts", 2, "required: the known_hosts file"},
		{"relative dir", "  type: sftp\n  address: b:22\n  user: u\n  key: k\n  known_hosts: kh\n  dir: d\n", "send.dir", 7, "want an absolute path on the server"},
		{"bad address", "  type: sftp\n  address: b\n  user: u\n  key: k\n  known_hosts: kh\n  dir: /d\n", "send.address", 3, `invalid address "b"`},
		{"sftp key on dir", "  type: dir\n  dir: x\n  known_hosts: kh\n", "send.known_hosts", 4, `known_hosts not valid for type "dir"`},
		{"negative keepalive", "  type: sftp\n  address: b:22\n  user: u\n  key: k\n  known_hosts: kh\n  dir: /d\n  keepalive: -1s\n", "send.keepalive", 8, "must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "agent.yaml")
			var doc struct {
				Send Config `yaml:"send"`
			}
			root, err := config.Decode(file, []byte(head+tc.block), &doc)
			if err != nil {
				t.Fatal(err)
			}
			msg, key := doc.Send.Check(true)
			if msg == "" {
				t.Fatal("Check passed")
			}
			e := config.FieldError(file, root, msg, "send", key)
			if e.Field != tc.field || e.Line != tc.line || !strings.Contains(e.Msg, tc.msg) {
				t.Fatalf("error %q: field %q line %d; want field %q line %d and %q", e, e.Field, e.Line, tc.field, tc.line, tc.msg)
			}
			if want := file + ":"; !strings.HasPrefix(e.Error(), want) {
				t.Fatalf("error %q does not start with %q", e, want)
			}
		})
	}
	// An unknown key is refused by the strict decoder, with its line.
	var doc struct {
		Send Config `yaml:"send"`
	}
	_, err := config.Decode("agent.yaml", []byte("send:\n  type: sftp\n  password: hunter2\n"), &doc)
	if err == nil || !strings.Contains(err.Error(), `agent.yaml:3: send.password: unknown key "password"`) {
		t.Fatalf("unknown key: %v", err)
	}
}

func TestConfig_Resolve(t *testing.T) {
	file := "/etc/ferry/dmz/dmz.yaml"
	d := Config{Type: TypeDir, Dir: "../exchange/requests"}.Resolve(file)
	if d.Dir != "/etc/ferry/exchange/requests" {
		t.Errorf("dir medium: dir %q not resolved", d.Dir)
	}
	s := sftpConfig().Resolve(file)
	if s.Dir != "/drop/requests" {
		t.Errorf("sftp: dir %q changed; it names a directory on the server", s.Dir)
	}
	if s.Key != "/etc/ferry/dmz/keys/id" || s.KnownHosts != "/etc/ferry/dmz/keys/known_hosts" {
		t.Errorf("sftp: key %q, known_hosts %q not resolved", s.Key, s.KnownHosts)
	}
	abs := sftpConfig()
	abs.Key = "/k"
	if got := abs.Resolve(file).Key; got != "/k" {
		t.Errorf("absolute key became %q", got)
	}
}

func TestConfig_SameDrop(t *testing.T) {
	other := sftpConfig()
	other.Dir = "/drop/results"
	otherHost := sftpConfig()
	otherHost.Address = "elsewhere:22"
	for _, tc := range []struct {
		name string
		a, b Config
		want bool
	}{
		{"same dir", Config{Type: TypeDir, Dir: "x"}, Config{Type: TypeDir, Dir: "x"}, true},
		{"other dir", Config{Type: TypeDir, Dir: "x"}, Config{Type: TypeDir, Dir: "y"}, false},
		{"same sftp drop", sftpConfig(), sftpConfig(), true},
		{"same sftp drop, unclean", sftpConfig(), func() Config { c := sftpConfig(); c.Dir += "/"; return c }(), true},
		{"other sftp dir", sftpConfig(), other, false},
		{"other server", sftpConfig(), otherHost, false},
		{"dir and sftp", Config{Type: TypeDir, Dir: "/drop/requests"}, sftpConfig(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.SameDrop(tc.b); got != tc.want {
				t.Fatalf("SameDrop = %v, want %v", got, tc.want)
			}
		})
	}
}
