// Command dmz-agent runs ferry's DMZ zone: the HTTP API citizens' requests
// arrive on, the durable spool, and the envelopes to and from the intranet.
// See internal/dmz and docs/operations.md; exit codes are listed in
// internal/daemon.
package main

import (
	"os"

	"github.com/ferrybridge/ferry/internal/daemon"
	"github.com/ferrybridge/ferry/internal/dmz"
)

func main() {
	os.Exit(daemon.Main(dmz.Daemon, os.Args[1:], os.Stderr))
}
