package dmz

import (
	"log/slog"

	"github.com/ferrybridge/ferry/internal/daemon"
)

// Daemon is the dmz-agent program for daemon.Main: cmd/dmz-agent runs it,
// and so do tests that run the agent as a process of their own.
var Daemon = daemon.Spec{
	Name:          "dmz-agent",
	DefaultConfig: "/etc/ferry/dmz/dmz.yaml",
	Build: func(path string, logger *slog.Logger) (daemon.Agent, error) {
		cfg, err := LoadConfig(path)
		if err != nil {
			return nil, err
		}
		return New(cfg, logger)
	},
}
