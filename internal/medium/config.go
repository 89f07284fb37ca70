package medium

import (
	"encoding/hex"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/ferrybridge/ferry/internal/config"
)

// Medium types an agent config names.
const (
	// TypeDir is the directory medium (package medium/dir): a ferry or
	// diode directory, a shared mount, or a disc carried across.
	TypeDir = "dir"
	// TypeSFTP is an SFTP drop on a boundary server (package
	// medium/sftp).
	TypeSFTP = "sftp"
	// TypeFTPS is a drop on a boundary FTP server reached with explicit
	// TLS (package medium/ftps).
	TypeFTPS = "ftps"
	// TypeFTP is the same drop over plain FTP, without TLS: refused
	// unless insecure_plain_ftp is true, for a closed network only.
	TypeFTP = "ftp"
)

// Config is the block of an agent config that names the medium of one
// direction. For type dir:
//
//	type: dir
//	dir: ../exchange/requests       # a local directory, resolved against the config file
//	rescan: 2s                      # receive only
//
// For type sftp:
//
//	type: sftp
//	address: boundary.example.gov:22
//	user: ferry-dmz
//	key: keys/sftp_ed25519          # resolved against the config file's directory
//	known_hosts: keys/known_hosts   # resolved likewise
//	dir: /drop/requests             # on the server: absolute, not resolved locally
//	rescan: 2s                      # receive only
//	dial_timeout: 10s               # optional
//	op_timeout: 60s                 # optional
//	keepalive: 15s                  # optional
//	temp_max_age: 1h                # optional
//
// For type ftps (explicit TLS):
//
//	type: ftps
//	address: boundary.example.gov:21
//	user: ferry-dmz
//	password_file: keys/ftp_password  # one line, mode 0600; resolved against the config file's directory
//	ca_file: keys/boundary-ca.pem     # resolved likewise; or, instead of ca_file:
//	# cert_sha256: 3f2a…              # the SHA-256 of the server's certificate (64 hex digits)
//	server_name: boundary.example.gov # optional, with ca_file: the name the certificate must carry
//	dir: /drop/requests               # on the server: absolute, not resolved locally
//	rescan: 2s                        # receive only
//	dial_timeout: 10s                 # optional
//	op_timeout: 60s                   # optional
//	temp_max_age: 1h                  # optional
//
// Type ftp takes the keys of ftps but ca_file, cert_sha256 and
// server_name, and needs insecure_plain_ftp: true besides: plain FTP sends
// the password and the envelopes in clear, for a closed network only.
//
// A zero duration means the medium's default.
type Config struct {
	Type   string          `yaml:"type"`
	Dir    string          `yaml:"dir"`
	Rescan config.Duration `yaml:"rescan"` // receive only

	Address     string          `yaml:"address"`     // sftp, ftps, ftp: host:port
	User        string          `yaml:"user"`        // sftp, ftps, ftp: login name
	Key         string          `yaml:"key"`         // sftp: private key file
	KnownHosts  string          `yaml:"known_hosts"` // sftp: pinned host keys
	DialTimeout config.Duration `yaml:"dial_timeout"`
	OpTimeout   config.Duration `yaml:"op_timeout"`
	Keepalive   config.Duration `yaml:"keepalive"` // sftp
	TempMaxAge  config.Duration `yaml:"temp_max_age"`

	PasswordFile     string `yaml:"password_file"`      // ftps, ftp: the password, one line
	CAFile           string `yaml:"ca_file"`            // ftps: PEM CA bundle verifying the server certificate
	CertSHA256       string `yaml:"cert_sha256"`        // ftps: or the pinned SHA-256 of the server's certificate
	ServerName       string `yaml:"server_name"`        // ftps with ca_file: the name to verify
	InsecurePlainFTP bool   `yaml:"insecure_plain_ftp"` // ftp: must be true
}

// typeKeys lists the keys each type takes besides type.
var typeKeys = map[string][]string{
	TypeDir:  {"dir", "rescan"},
	TypeSFTP: {"address", "user", "key", "known_hosts", "dir", "rescan", "dial_timeout", "op_timeout", "keepalive", "temp_max_age"},
	TypeFTPS: {"address", "user", "password_file", "ca_file", "cert_sha256", "server_name", "dir", "rescan", "dial_timeout", "op_timeout", "temp_max_age"},
	TypeFTP:  {"address", "user", "password_file", "insecure_plain_ftp", "dir", "rescan", "dial_timeout", "op_timeout", "temp_max_age"},
}

// typeOrder is the order types are named in messages.
var typeOrder = []string{TypeDir, TypeSFTP, TypeFTPS, TypeFTP}

// Check validates c as the medium an agent sends on (send) or receives
// from. It returns the message and the YAML key of the first problem, or
// two empty strings.
func (c Config) Check(send bool) (msg, key string) {
	allowed, ok := typeKeys[c.Type]
	if !ok {
		return `unknown medium type "` + c.Type + `": want "dir", "sftp", "ftps" or "ftp"`, "type"
	}
	if ks := c.foreignKeys(allowed); len(ks) > 0 {
		msg := strings.Join(ks, ", ") + ` not valid for type "` + c.Type + `"`
		if only := typesTaking(ks); only != "" {
			msg += ": only for " + only
		}
		return msg, ks[0]
	}
	switch c.Type {
	case TypeDir:
		if c.Dir == "" {
			return "required: the medium's directory", "dir"
		}
	case TypeSFTP:
		if msg, key := c.checkSFTP(); msg != "" {
			return msg, key
		}
	case TypeFTPS, TypeFTP:
		if msg, key := c.checkFTP(); msg != "" {
			return msg, key
		}
	}
	for _, d := range []struct {
		key string
		v   config.Duration
	}{{"rescan", c.Rescan}, {"dial_timeout", c.DialTimeout}, {"op_timeout", c.OpTimeout}, {"keepalive", c.Keepalive}, {"temp_max_age", c.TempMaxAge}} {
		if d.v < 0 {
			return "must not be negative", d.key
		}
	}
	if send && c.Rescan != 0 {
		return "only a receiving medium is rescanned", "rescan"
	}
	return "", ""
}

// setKeys returns the keys c sets, besides type, in the order of the
// documentation.
func (c Config) setKeys() []string {
	var keys []string
	for _, k := range []struct {
		key string
		set bool
	}{
		{"address", c.Address != ""}, {"user", c.User != ""}, {"key", c.Key != ""}, {"known_hosts", c.KnownHosts != ""},
		{"password_file", c.PasswordFile != ""}, {"ca_file", c.CAFile != ""}, {"cert_sha256", c.CertSHA256 != ""},
		{"server_name", c.ServerName != ""}, {"insecure_plain_ftp", c.InsecurePlainFTP},
		{"dir", c.Dir != ""}, {"rescan", c.Rescan != 0},
		{"dial_timeout", c.DialTimeout != 0}, {"op_timeout", c.OpTimeout != 0}, {"keepalive", c.Keepalive != 0},
		{"temp_max_age", c.TempMaxAge != 0},
	} {
		if k.set {
			keys = append(keys, k.key)
		}
	}
	return keys
}

// foreignKeys returns the keys c sets that are not in allowed.
func (c Config) foreignKeys(allowed []string) []string {
	var out []string
	for _, k := range c.setKeys() {
		if !slices.Contains(allowed, k) {
			out = append(out, k)
		}
	}
	return out
}

// typesTaking names the types that take every one of keys, such as
// `type "sftp"` or `types "ftps", "ftp"`, or returns "" if none does.
func typesTaking(keys []string) string {
	var ts []string
	for _, t := range typeOrder {
		all := true
		for _, k := range keys {
			all = all && slices.Contains(typeKeys[t], k)
		}
		if all {
			ts = append(ts, `"`+t+`"`)
		}
	}
	switch len(ts) {
	case 0:
		return ""
	case 1:
		return "type " + ts[0]
	default:
		return "types " + strings.Join(ts, ", ")
	}
}

func (c Config) checkSFTP() (msg, key string) {
	switch {
	case c.Address == "":
		return "required: the SFTP server's host:port", "address"
	case c.User == "":
		return "required: the SFTP login name", "user"
	case c.Key == "":
		return "required: the client's private key file", "key"
	case c.KnownHosts == "":
		return "required: the known_hosts file pinning the server's host key", "known_hosts"
	}
	if msg, key := c.checkServerDir(); msg != "" {
		return msg, key
	}
	return checkAddress(c.Address)
}

// checkFTP checks an ftps or ftp block; foreign keys are refused already.
func (c Config) checkFTP() (msg, key string) {
	if c.Type == TypeFTP && !c.InsecurePlainFTP {
		return `plain FTP sends the password and the envelopes unencrypted: use type "ftps", ` +
			`or on a closed network set insecure_plain_ftp: true`, "type"
	}
	switch {
	case c.Address == "":
		return "required: the FTP server's host:port", "address"
	case c.User == "":
		return "required: the FTP login name", "user"
	case c.PasswordFile == "":
		return "required: the file holding the FTP password", "password_file"
	}
	if c.Type == TypeFTPS {
		switch {
		case c.CAFile == "" && c.CertSHA256 == "":
			return "required: ca_file (the CA that issued the server's certificate) or cert_sha256 (the certificate's SHA-256): the server must be verified", "ca_file"
		case c.CAFile != "" && c.CertSHA256 != "":
			return "give ca_file or cert_sha256, not both", "cert_sha256"
		case c.CertSHA256 != "" && !validSHA256(c.CertSHA256):
			return "want the certificate's SHA-256 as 64 hex digits (colons allowed), as openssl x509 -noout -fingerprint -sha256 prints it", "cert_sha256"
		case c.CertSHA256 != "" && c.ServerName != "":
			return "only with ca_file: a pinned certificate is not checked for a name", "server_name"
		case strings.ContainsAny(c.ServerName, " /@:"):
			return `invalid server name "` + c.ServerName + `": want a host name such as "boundary.example.gov"`, "server_name"
		}
	}
	if msg, key := c.checkServerDir(); msg != "" {
		return msg, key
	}
	return checkAddress(c.Address)
}

// checkServerDir checks dir as a path on a server.
func (c Config) checkServerDir() (msg, key string) {
	switch {
	case c.Dir == "":
		return "required: the drop directory on the server", "dir"
	case !path.IsAbs(c.Dir) || strings.ContainsRune(c.Dir, '\\'):
		return `want an absolute path on the server, such as "/drop/requests"`, "dir"
	case strings.ContainsFunc(c.Dir, unicode.IsControl):
		return "must not hold control characters", "dir"
	}
	return "", ""
}

// validSHA256 reports whether s is 64 hex digits, optionally in pairs
// separated by colons.
func validSHA256(s string) bool {
	if strings.Contains(s, ":") {
		parts := strings.Split(s, ":")
		if len(parts) != 32 {
			return false
		}
		for _, p := range parts {
			if len(p) != 2 {
				return false
			}
		}
		s = strings.Join(parts, "")
	}
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// checkAddress checks a server's host:port.
func checkAddress(addr string) (msg, key string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || strings.ContainsAny(host, " /@") {
		return `invalid address "` + addr + `": want host:port`, "address"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return `invalid port in "` + addr + `": want 1 to 65535`, "address"
	}
	return "", ""
}

// Resolve returns c with its local paths made relative to the directory
// of the config file at file: dir for a directory medium, key and
// known_hosts for an SFTP drop, password_file and ca_file for an FTP(S)
// drop. The dir of a drop names a directory on the server and stays as
// written.
func (c Config) Resolve(file string) Config {
	switch c.Type {
	case TypeDir:
		c.Dir = config.Resolve(file, c.Dir)
	case TypeSFTP:
		c.Key = config.Resolve(file, c.Key)
		c.KnownHosts = config.Resolve(file, c.KnownHosts)
	case TypeFTPS, TypeFTP:
		c.PasswordFile = config.Resolve(file, c.PasswordFile)
		c.CAFile = config.Resolve(file, c.CAFile)
	}
	return c
}

// SameDrop reports whether c and o name the same place, so that an agent
// config can refuse one medium for both directions: the same directory,
// or the same directory on the same server (FTPS and plain FTP to one
// server count as the same).
func (c Config) SameDrop(o Config) bool {
	ftp := func(t string) bool { return t == TypeFTPS || t == TypeFTP }
	switch {
	case ftp(c.Type) && ftp(o.Type), c.Type == TypeSFTP && o.Type == TypeSFTP:
		return strings.EqualFold(c.Address, o.Address) && path.Clean(c.Dir) == path.Clean(o.Dir)
	case c.Type != o.Type:
		return false
	default:
		return c.Dir == o.Dir
	}
}
