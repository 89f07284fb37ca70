package intranet

import (
	"log/slog"

	"github.com/ferrybridge/ferry/internal/daemon"
)

// Daemon is the intranet-agent program for daemon.Main: cmd/intranet-agent runs it,
// and so do tests that run the agent as a process of their own.
var Daemon = daemon.Spec{
	Name:          "intranet-agent",
	DefaultConfig: "/etc/ferry/intranet/intranet.yaml",
	Build: func(path string, logger *slog.Logger) (daemon.Agent, error) {
		cfg, err := LoadConfig(path)
		if err != nil {
			return nil, err
		}
		return New(cfg, logger)
	},
}
