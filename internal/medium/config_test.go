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

const pin = "3f2a5b7c9d1e0f4a6b8c0d2e4f6a8b0c1d3e5f7a9b1c3d5e7f9a1b3c5d7e9f0a"

func ftpsConfig() Config {
	return Config{Type: TypeFTPS, Address: "boundary.example.gov:21", User: "ferry-dmz", PasswordFile: "keys/pw", CAFile: "keys/ca.pem", Dir: "/drop/requests"}
}

func TestConfig_Check(t *testing.T) {
	with := func(f func(*Config)) Config { c := sftpConfig(); f(&c); return c }
	ftps := func(f func(*Config)) Config { c := ftpsConfig(); f(&c); return c }
	ftp := func(f func(*Config)) Config {
		c := ftpsConfig()
		c.Type, c.CAFile, c.InsecurePlainFTP = TypeFTP, "", true
		f(&c)
		return c
	}
	sec := config.Duration(time.Second)
	for _, tc := range []struct {
		name      string
		c         Config
		send      bool
		key, want string
	}{
		{"receive ok", Config{Type: TypeDir, Dir: "x", Rescan: sec}, false, "", ""},
		{"send ok", Config{Type: TypeDir, Dir: "x"}, true, "", ""},
		{"unknown type", Config{Type: "smb", Dir: "x"}, false, "type", `unknown medium type "smb": want "dir", "sftp", "ftps" or "ftp"`},
		{"no type", Config{Dir: "x"}, false, "type", `unknown medium type "": want "dir", "sftp", "ftps" or "ftp"`},
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
		{"ftp keys on sftp", with(func(c *Config) { c.PasswordFile = "pw" }), true, "password_file", `password_file not valid for type "sftp": only for types "ftps", "ftp"`},
		{"ftps keys on dir", Config{Type: TypeDir, Dir: "x", CAFile: "ca"}, true, "ca_file", `ca_file not valid for type "dir": only for type "ftps"`},
		{"mixed keys on dir", Config{Type: TypeDir, Dir: "x", Key: "k", CAFile: "ca"}, true, "key", `key, ca_file not valid for type "dir"`},

		{"ftps send ok", ftpsConfig(), true, "", ""},
		{"ftps receive ok", ftps(func(c *Config) { c.Rescan, c.DialTimeout, c.OpTimeout, c.TempMaxAge = sec, sec, sec, sec }), false, "", ""},
		{"ftps server name", ftps(func(c *Config) { c.ServerName = "boundary.example.gov" }), true, "", ""},
		{"ftps pinned", ftps(func(c *Config) { c.CAFile, c.CertSHA256 = "", pin }), true, "", ""},
		{"ftps pinned upper case", ftps(func(c *Config) { c.CAFile, c.CertSHA256 = "", strings.ToUpper(pin) }), true, "", ""},
		{"ftps pinned with colons", ftps(func(c *Config) {
			var parts []string
			for i := 0; i < len(pin); i += 2 {
				parts = append(parts, pin[i:i+2])
			}
			c.CAFile, c.CertSHA256 = "", strings.Join(parts, ":")
		}), true, "", ""},
		{"ftps neither ca nor pin", ftps(func(c *Config) { c.CAFile = "" }), true, "ca_file", "required: ca_file (the CA that issued the server's certificate) or cert_sha256 (the certificate's SHA-256): the server must be verified"},
		{"ftps both ca and pin", ftps(func(c *Config) { c.CertSHA256 = pin }), true, "cert_sha256", "give ca_file or cert_sha256, not both"},
		{"ftps short pin", ftps(func(c *Config) { c.CAFile, c.CertSHA256 = "", pin[:62] }), true, "cert_sha256", "want the certificate's SHA-256 as 64 hex digits (colons allowed), as openssl x509 -noout -fingerprint -sha256 prints it"},
		{"ftps non-hex pin", ftps(func(c *Config) { c.CAFile, c.CertSHA256 = "", "g"+pin[1:] }), true, "cert_sha256", "want the certificate's SHA-256 as 64 hex digits (colons allowed), as openssl x509 -noout -fingerprint -sha256 prints it"},
		{"ftps misplaced colons", ftps(func(c *Config) { c.CAFile, c.CertSHA256 = "", pin[:3]+":"+pin[3:] }), true, "cert_sha256", "want the certificate's SHA-256 as 64 hex digits (colons allowed), as openssl x509 -noout -fingerprint -sha256 prints it"},
		{"ftps server name with pin", ftps(func(c *Config) { c.CAFile, c.CertSHA256, c.ServerName = "", pin, "b" }), true, "server_name", "only with ca_file: a pinned certificate is not checked for a name"},
		{"ftps bad server name", ftps(func(c *Config) { c.ServerName = "b:21" }), true, "server_name", `invalid server name "b:21": want a host name such as "boundary.example.gov"`},
		{"ftps no address", ftps(func(c *Config) { c.Address = "" }), true, "address", "required: the FTP server's host:port"},
		{"ftps bad address", ftps(func(c *Config) { c.Address = "boundary" }), true, "address", `invalid address "boundary": want host:port`},
		{"ftps bad port", ftps(func(c *Config) { c.Address = "b:70000" }), true, "address", `invalid port in "b:70000": want 1 to 65535`},
		{"ftps no user", ftps(func(c *Config) { c.User = "" }), true, "user", "required: the FTP login name"},
		{"ftps no password file", ftps(func(c *Config) { c.PasswordFile = "" }), true, "password_file", "required: the file holding the FTP password"},
		{"ftps no dir", ftps(func(c *Config) { c.Dir = "" }), true, "dir", "required: the drop directory on the server"},
		{"ftps relative dir", ftps(func(c *Config) { c.Dir = "drop" }), true, "dir", `want an absolute path on the server, such as "/drop/requests"`},
		{"ftps line break in dir", ftps(func(c *Config) { c.Dir = "/drop\r\nDELE x" }), true, "dir", "must not hold control characters"},
		{"ftps keepalive", ftps(func(c *Config) { c.Keepalive = sec }), true, "keepalive", `keepalive not valid for type "ftps": only for type "sftp"`},
		{"ftps sftp key", ftps(func(c *Config) { c.Key = "k" }), true, "key", `key not valid for type "ftps": only for type "sftp"`},
		{"ftps insecure flag", ftps(func(c *Config) { c.InsecurePlainFTP = true }), true, "insecure_plain_ftp", `insecure_plain_ftp not valid for type "ftps": only for type "ftp"`},
		{"ftps negative op", ftps(func(c *Config) { c.OpTimeout = -1 }), true, "op_timeout", "must not be negative"},
		{"ftps rescan on send", ftps(func(c *Config) { c.Rescan = sec }), true, "rescan", "only a receiving medium is rescanned"},

		{"ftp ok", ftp(func(*Config) {}), true, "", ""},
		{"ftp not allowed", ftp(func(c *Config) { c.InsecurePlainFTP = false }), true, "type", `plain FTP sends the password and the envelopes unencrypted: use type "ftps", or on a closed network set insecure_plain_ftp: true`},
		{"ftp with ca", ftp(func(c *Config) { c.CAFile = "ca" }), true, "ca_file", `ca_file not valid for type "ftp": only for type "ftps"`},
		{"ftp with pin", ftp(func(c *Config) { c.CertSHA256 = pin }), true, "cert_sha256", `cert_sha256 not valid for type "ftp": only for type "ftps"`},
		{"ftp with server name", ftp(func(c *Config) { c.ServerName = "b" }), true, "server_name", `server_name not valid for type "ftp": only for type "ftps"`},
		{"ftp no password file", ftp(func(c *Config) { c.PasswordFile = "" }), true, "password_file", "required: the file holding the FTP password"},
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
		{"ftps without ca or pin", "  type: ftps\n  address: b:21\n  user: u\n  password_file: pw\n  dir: /d\n", "send.ca_file", 2, "required: ca_file"},
		{"ftps bad pin", "  type: ftps\n  address: b:21\n  user: u\n  password_file: pw\n  cert_sha256: abc\n  dir: /d\n", "send.cert_sha256", 6, "64 hex digits"},
		{"ftps both", "  type: ftps\n  address: b:21\n  user: u\n  password_file: pw\n  ca_file: ca.pem\n  cert_sha256: " + pin + "\n  dir: /d\n", "send.cert_sha256", 7, "not both"},
		{"ftp without the flag", "  type: ftp\n  address: b:21\n  user: u\n  password_file: pw\n  dir: /d\n", "send.type", 2, "plain FTP sends the password"},
		{"ftp flag false", "  type: ftp\n  insecure_plain_ftp: false\n  address: b:21\n  user: u\n  password_file: pw\n  dir: /d\n", "send.type", 2, "insecure_plain_ftp: true"},
		{"ftp with ca_file", "  type: ftp\n  insecure_plain_ftp: true\n  address: b:21\n  user: u\n  password_file: pw\n  ca_file: ca.pem\n  dir: /d\n", "send.ca_file", 7, `ca_file not valid for type "ftp"`},
		{"ftps keepalive", "  type: ftps\n  address: b:21\n  user: u\n  password_file: pw\n  ca_file: ca.pem\n  dir: /d\n  keepalive: 5s\n", "send.keepalive", 8, `keepalive not valid for type "ftps"`},
		{"ftps missing password_file", "  type: ftps\n  address: b:21\n  user: u\n  ca_file: ca.pem\n  dir: /d\n", "send.password_file", 2, "required: the file holding the FTP password"},
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
	f := ftpsConfig().Resolve(file)
	if f.Dir != "/drop/requests" {
		t.Errorf("ftps: dir %q changed; it names a directory on the server", f.Dir)
	}
	if f.PasswordFile != "/etc/ferry/dmz/keys/pw" || f.CAFile != "/etc/ferry/dmz/keys/ca.pem" {
		t.Errorf("ftps: password_file %q, ca_file %q not resolved", f.PasswordFile, f.CAFile)
	}
	p := ftpsConfig()
	p.Type, p.CAFile, p.InsecurePlainFTP = TypeFTP, "", true
	p = p.Resolve(file)
	if p.PasswordFile != "/etc/ferry/dmz/keys/pw" || p.CAFile != "" {
		t.Errorf("ftp: password_file %q, ca_file %q; want the password file resolved and no ca file", p.PasswordFile, p.CAFile)
	}
	pinned := ftpsConfig()
	pinned.CAFile, pinned.CertSHA256 = "", pin
	if got := pinned.Resolve(file); got.CAFile != "" || got.CertSHA256 != pin {
		t.Errorf("pinned ftps: ca_file %q, cert_sha256 %q; want them as written", got.CAFile, got.CertSHA256)
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
		{"same ftps drop", ftpsConfig(), ftpsConfig(), true},
		{"same ftps drop, other case", ftpsConfig(), func() Config { c := ftpsConfig(); c.Address = "BOUNDARY.example.gov:21"; return c }(), true},
		{"other ftps dir", ftpsConfig(), func() Config { c := ftpsConfig(); c.Dir = "/drop/results"; return c }(), false},
		{"other ftps port", ftpsConfig(), func() Config { c := ftpsConfig(); c.Address = "boundary.example.gov:990"; return c }(), false},
		{"ftps and ftp, one drop", ftpsConfig(), func() Config { c := ftpsConfig(); c.Type, c.CAFile = TypeFTP, ""; return c }(), true},
		{"sftp and ftps, same path", func() Config { c := sftpConfig(); c.Address = "boundary.example.gov:21"; return c }(), ftpsConfig(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.SameDrop(tc.b); got != tc.want {
				t.Fatalf("SameDrop = %v, want %v", got, tc.want)
			}
		})
	}
}
