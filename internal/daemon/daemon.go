// Package daemon is the shared frame of ferry's agent mains: flags, logging,
// signals and exit codes. It keeps cmd/dmz-agent and cmd/intranet-agent to
// their four lines of work: parse, build, run, map to an exit code.
//
// # Signals
//
// The first SIGINT or SIGTERM cancels the run context: the agent stops
// intake, drains in-flight work within its grace period and returns. A
// second signal exits at once with status 1.
//
// SIGHUP asks an agent that implements [Reloader] to reload what it can
// without a restart (the intranet agent's policy). A failed reload is
// logged and the agent goes on with what it had; it never stops the agent.
// An agent that cannot reload logs that SIGHUP was ignored.
//
// Signals are taken before the agent is built: one that arrives while the
// agent loads its state waits and is handled once it runs (a SIGHUP at
// that moment used to kill the process).
//
// # systemd
//
// Under a unit with Type=notify ($NOTIFY_SOCKET set), the daemon says
// READY=1 when an agent that implements [Readier] is ready (at once for
// one that does not), RELOADING=1 and READY=1 around a SIGHUP reload, and
// STOPPING=1 at the first stop signal. With WatchdogSec ($WATCHDOG_USEC),
// it sends WATCHDOG=1 at half the interval while an agent that implements
// [Checker] says its state answers. Outside systemd all of it is silent.
// It uses github.com/coreos/go-systemd/v22/daemon.
//
// # Exit codes
//
//	0   clean stop
//	1   the agent failed while running, or was stopped by a second signal
//	2   usage: bad flags
//	78  cannot start: bad config, keys, policy or state (EX_CONFIG; systemd
//	    units list it in RestartPreventExitStatus so a broken config does not
//	    restart in a loop)
package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
	ExitConfig  = 78
)

// Agent is what a daemon main builds and runs.
type Agent interface {
	// Run serves until ctx ends, then drains and returns nil on a clean stop.
	Run(ctx context.Context) error
	// Close releases resources; it is called once after Run returns.
	Close() error
}

// Reloader is an Agent that can reload part of its configuration while it
// runs. Reload must leave the agent working on its old state when it
// returns an error.
type Reloader interface {
	Reload() error
}

// Spec describes one daemon.
type Spec struct {
	Name          string // program name, used in messages
	DefaultConfig string // default -config path
	// Build loads the config at path and constructs the agent. An error
	// means the agent cannot start (exit 78).
	Build func(path string, logger *slog.Logger) (Agent, error)
}

// Main runs the daemon described by spec with the given arguments and
// returns its exit code.
func Main(spec Spec, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet(spec.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", spec.DefaultConfig, "config `file`")
	logFormat := fs.String("log-format", "auto", "log format: json, text, or auto (json unless stderr is a terminal)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s [-config FILE] [-log-format json|text|auto] [-log-level LEVEL]\n\n", spec.Name)
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\nexit codes: 0 clean stop, 1 failure, 2 usage, 78 cannot start (config, keys, policy)\n")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: error: unexpected argument %q\n", spec.Name, fs.Arg(0))
		return ExitUsage
	}
	logger, err := NewLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "%s: error: %s\n", spec.Name, err)
		return ExitUsage
	}
	logger = logger.With(slog.String("agent", spec.Name))

	// Signals are taken from here on, before the agent is built: a SIGHUP
	// while it loads its state (a reload or a log rotation right after a
	// start) would otherwise kill it. One that arrives meanwhile waits,
	// and is handled once the agent runs.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)

	agent, err := spec.Build(*configPath, logger)
	if err != nil {
		fmt.Fprintf(stderr, "%s: error: %s\n", spec.Name, err)
		logger.Error("cannot start", slog.String("error", err.Error()))
		return ExitConfig
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sdn := notifier{logger: logger}
	go reloadOnHUP(ctx, agent, hups, logger, sdn)
	go sdn.run(ctx, agent)
	go func() {
		sig := <-sigs
		logger.Info("stopping: draining in-flight work", slog.String("signal", sig.String()))
		sdn.send("STOPPING=1\nSTATUS=draining")
		cancel()
		sig = <-sigs
		logger.Error("second signal: exiting now", slog.String("signal", sig.String()))
		os.Exit(ExitFailure)
	}()
	runErr := agent.Run(ctx)
	closeErr := agent.Close()
	if err := errors.Join(runErr, closeErr); err != nil {
		logger.Error("stopped with error", slog.String("error", err.Error()))
		return ExitFailure
	}
	logger.Info("stopped")
	return ExitOK
}

// reloading is the notification that a reload begins: systemd wants the
// monotonic time with it (Type=notify-reload, and it is harmless for
// Type=notify).
func reloading() string {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return "RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(ts.Nano()/1000, 10)
}

// reloadOnHUP calls the agent's Reload for every SIGHUP until ctx ends.
func reloadOnHUP(ctx context.Context, agent Agent, hups <-chan os.Signal, logger *slog.Logger, sdn notifier) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hups:
		}
		r, ok := agent.(Reloader)
		if !ok {
			logger.Warn("SIGHUP ignored: this agent reloads nothing")
			continue
		}
		logger.Info("SIGHUP: reloading")
		sdn.send(reloading())
		err := r.Reload()
		if err != nil {
			logger.Error("reload failed; still running on the previous configuration", slog.String("error", err.Error()))
			sdn.send("READY=1\nSTATUS=serving; the last reload failed, see the log")
			continue
		}
		logger.Info("reloaded")
		sdn.send("READY=1\nSTATUS=serving")
	}
}

// NewLogger returns a slog logger writing to w in the given format.
func NewLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid log level %q", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "auto":
		if isTerminal(w) {
			return slog.New(slog.NewTextHandler(w, opts)), nil
		}
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("invalid log format %q: want json, text or auto", format)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
