package daemon

import (
	"context"
	"log/slog"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// Readier is an Agent that says when it can serve. Under systemd
// (Type=notify), the daemon reports READY=1 when the channel closes, not
// before: a unit ordered after the agent, or an admin's `systemctl start`,
// waits until the agent answers.
type Readier interface {
	Ready() <-chan struct{}
}

// Checker is an Agent that can say whether its state still answers. When
// the unit sets WatchdogSec, the daemon feeds the watchdog (WATCHDOG=1)
// at half that interval, and only while Alive returns nil: an agent whose
// database is wedged stops feeding it, and systemd restarts it.
type Checker interface {
	Alive(ctx context.Context) error
}

// notifier tells systemd about the daemon's state through $NOTIFY_SOCKET.
// Outside systemd (no socket) every call does nothing.
type notifier struct {
	logger *slog.Logger
}

// send sends state; a failure is logged, never fatal.
func (n notifier) send(state string) {
	if _, err := sd.SdNotify(false, state); err != nil {
		n.logger.Warn("systemd notify failed", slog.String("state", state), slog.String("error", err.Error()))
	}
}

// run reports READY=1 once agent is ready (at once for an agent that does
// not say), and feeds the watchdog while the unit asks for one, until ctx
// ends.
func (n notifier) run(ctx context.Context, agent Agent) {
	if r, ok := agent.(Readier); ok {
		select {
		case <-ctx.Done():
			return
		case <-r.Ready():
		}
	}
	n.send("READY=1\nSTATUS=serving")
	interval, err := sd.SdWatchdogEnabled(false)
	if err != nil {
		n.logger.Warn("systemd watchdog settings unreadable", slog.String("error", err.Error()))
		return
	}
	if interval <= 0 {
		return
	}
	check, _ := agent.(Checker)
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if check != nil {
			if err := check.Alive(ctx); err != nil {
				if !failing {
					n.logger.Error("watchdog not fed: the agent's state does not answer", slog.String("error", err.Error()))
				}
				failing = true
				continue
			}
			if failing {
				n.logger.Info("watchdog fed again: the agent's state answers")
			}
			failing = false
		}
		n.send("WATCHDOG=1")
	}
}
