// Command dmz-agent runs ferry's DMZ zone: the HTTP API citizens' requests
// arrive on, the durable spool, and the envelopes to and from the intranet.
// See internal/dmz and docs/operations.md; exit codes are listed in
// internal/daemon.
package main

import (
	"log/slog"
	"os"

	"github.com/ferrybridge/ferry/internal/daemon"
	"github.com/ferrybridge/ferry/internal/dmz"
)

func main() {
	os.Exit(daemon.Main(daemon.Spec{
		Name:          "dmz-agent",
		DefaultConfig: "/etc/ferry/dmz/dmz.yaml",
		Build: func(path string, logger *slog.Logger) (daemon.Agent, error) {
			cfg, err := dmz.LoadConfig(path)
			if err != nil {
				return nil, err
			}
			return dmz.New(cfg, logger)
		},
	}, os.Args[1:], os.Stderr))
}
