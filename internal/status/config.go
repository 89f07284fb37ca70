package status

import (
	"fmt"
	"net"
	"os/user"
	"path/filepath"

	"github.com/ferrybridge/ferry/internal/config"
)

// Config is the admin block of an agent config: the unix socket ferryctl
// status talks to, and the optional listener Prometheus scrapes.
//
//	admin:
//	  socket: /run/ferry/dmz/admin.sock   # mode 0660; "" for none
//	  group: ferry-admin                  # optional: the socket's group (the agent's own by default)
//	  metrics: 127.0.0.1:9464             # optional: /metrics over TCP, never the API's listener
//
// The socket serves the status and the metrics; no TCP listener serves
// the status.
type Config struct {
	Socket  string `yaml:"socket"`
	Group   string `yaml:"group"`
	Metrics string `yaml:"metrics"`
}

// Check returns the first problem of c as a message and the key of the
// field below the admin block, or "" if there is none. listen is the
// agent's public listener ("" for none), which metrics must differ from.
func (c *Config) Check(listen string) (msg, key string) {
	if c.Socket != "" && len(c.Socket) > maxSocketPath {
		return fmt.Sprintf("longer than %d bytes, the limit of a unix socket's path", maxSocketPath), "socket"
	}
	if c.Group != "" {
		if c.Socket == "" {
			return "needs admin.socket", "group"
		}
		if _, err := user.LookupGroup(c.Group); err != nil {
			return fmt.Sprintf("unknown group %q", c.Group), "group"
		}
	}
	if c.Metrics != "" {
		if _, port, err := net.SplitHostPort(c.Metrics); err != nil || port == "" {
			return fmt.Sprintf("invalid address %q: want host:port", c.Metrics), "metrics"
		}
		if listen != "" && c.Metrics == listen {
			return "must differ from listen: metrics are never served on the public listener", "metrics"
		}
	}
	return "", ""
}

// Resolve returns c with the socket's path resolved against the directory
// of the config file at cfgPath.
func (c Config) Resolve(cfgPath string) Config {
	if c.Socket != "" && !filepath.IsAbs(c.Socket) {
		c.Socket = config.Resolve(cfgPath, c.Socket)
	}
	return c
}

// maxSocketPath is the longest path a unix socket may have on Linux
// (sun_path is 108 bytes with the terminating NUL).
const maxSocketPath = 107
