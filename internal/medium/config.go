package medium

import (
	"net"
	"path"
	"strconv"
	"strings"

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
// A zero duration means the medium's default.
type Config struct {
	Type   string          `yaml:"type"`
	Dir    string          `yaml:"dir"`
	Rescan config.Duration `yaml:"rescan"` // receive only

	Address     string          `yaml:"address"`     // sftp: host:port
	User        string          `yaml:"user"`        // sftp: login name
	Key         string          `yaml:"key"`         // sftp: private key file
	KnownHosts  string          `yaml:"known_hosts"` // sftp: pinned host keys
	DialTimeout config.Duration `yaml:"dial_timeout"`
	OpTimeout   config.Duration `yaml:"op_timeout"`
	Keepalive   config.Duration `yaml:"keepalive"`
	TempMaxAge  config.Duration `yaml:"temp_max_age"`
}

// Check validates c as the medium an agent sends on (send) or receives
// from. It returns the message and the YAML key of the first problem, or
// two empty strings.
func (c Config) Check(send bool) (msg, key string) {
	switch c.Type {
	case TypeDir:
		if ks := c.setSFTPKeys(); len(ks) > 0 {
			return strings.Join(ks, ", ") + ` not valid for type "dir": only for type "sftp"`, ks[0]
		}
		if c.Dir == "" {
			return "required: the medium's directory", "dir"
		}
	case TypeSFTP:
		if msg, key := c.checkSFTP(); msg != "" {
			return msg, key
		}
	default:
		return `unknown medium type "` + c.Type + `": want "` + TypeDir + `" or "` + TypeSFTP + `"`, "type"
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

// setSFTPKeys returns the sftp-only keys c sets.
func (c Config) setSFTPKeys() []string {
	var keys []string
	for _, k := range []struct {
		key string
		set bool
	}{
		{"address", c.Address != ""}, {"user", c.User != ""}, {"key", c.Key != ""}, {"known_hosts", c.KnownHosts != ""},
		{"dial_timeout", c.DialTimeout != 0}, {"op_timeout", c.OpTimeout != 0}, {"keepalive", c.Keepalive != 0},
		{"temp_max_age", c.TempMaxAge != 0},
	} {
		if k.set {
			keys = append(keys, k.key)
		}
	}
	return keys
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
	case c.Dir == "":
		return "required: the drop directory on the server", "dir"
	case !path.IsAbs(c.Dir) || strings.ContainsRune(c.Dir, '\\'):
		return `want an absolute path on the server, such as "/drop/requests"`, "dir"
	}
	host, port, err := net.SplitHostPort(c.Address)
	if err != nil || host == "" || strings.ContainsAny(host, " /@") {
		return `invalid address "` + c.Address + `": want host:port`, "address"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return `invalid port in "` + c.Address + `": want 1 to 65535`, "address"
	}
	return "", ""
}

// Resolve returns c with its local paths made relative to the directory
// of the config file at file: dir for a directory medium, key and
// known_hosts for an SFTP drop. An SFTP dir names a directory on the
// server and stays as written.
func (c Config) Resolve(file string) Config {
	switch c.Type {
	case TypeDir:
		c.Dir = config.Resolve(file, c.Dir)
	case TypeSFTP:
		c.Key = config.Resolve(file, c.Key)
		c.KnownHosts = config.Resolve(file, c.KnownHosts)
	}
	return c
}

// SameDrop reports whether c and o name the same place, so that an agent
// config can refuse one medium for both directions: the same directory,
// or the same directory on the same SFTP server.
func (c Config) SameDrop(o Config) bool {
	if c.Type != o.Type {
		return false
	}
	switch c.Type {
	case TypeSFTP:
		return strings.EqualFold(c.Address, o.Address) && path.Clean(c.Dir) == path.Clean(o.Dir)
	default:
		return c.Dir == o.Dir
	}
}
