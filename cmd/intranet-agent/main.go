// Command intranet-agent runs ferry's intranet zone: it verifies request
// envelopes, checks every request against the whitelist policy, applies it
// to the replica database and sends the results back. See internal/intranet;
// exit codes are listed in internal/daemon.
package main

import (
	"log/slog"
	"os"

	"github.com/ferrybridge/ferry/internal/daemon"
	"github.com/ferrybridge/ferry/internal/intranet"
)

func main() {
	os.Exit(daemon.Main(daemon.Spec{
		Name:          "intranet-agent",
		DefaultConfig: "/etc/ferry/intranet/intranet.yaml",
		Build: func(path string, logger *slog.Logger) (daemon.Agent, error) {
			cfg, err := intranet.LoadConfig(path)
			if err != nil {
				return nil, err
			}
			return intranet.New(cfg, logger)
		},
	}, os.Args[1:], os.Stderr))
}
