// Command intranet-agent runs ferry's intranet zone: it verifies request
// envelopes, checks every request against the whitelist policy, applies it
// to the replica database and sends the results back. See internal/intranet;
// exit codes are listed in internal/daemon.
package main

import (
	"os"

	"github.com/ferrybridge/ferry/internal/daemon"
	"github.com/ferrybridge/ferry/internal/intranet"
)

func main() {
	os.Exit(daemon.Main(intranet.Daemon, os.Args[1:], os.Stderr))
}
