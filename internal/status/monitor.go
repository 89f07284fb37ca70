package status

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferrybridge/ferry/internal/alarm"
)

// DefaultInterval is how often a Monitor takes a snapshot.
const DefaultInterval = 5 * time.Second

// collectTimeout bounds one snapshot's queries.
const collectTimeout = 3 * time.Second

// MonitorConfig is what a Monitor needs from its agent.
type MonitorConfig struct {
	// Agent, Zone and Peer name the program and the zones.
	Agent, Zone, Peer string
	// Admin is the admin block of the agent's config.
	Admin Config
	// Alarms is the alarms block of the agent's config.
	Alarms alarm.Config
	// StateDir is a directory on the file system of the zone's state,
	// for the disk figures; Quarantine is the quarantine directory.
	StateDir, Quarantine string
	// Collect fills in the agent's part of a snapshot: keys, policy,
	// queue, peer, audit, last envelopes, state. It must not block
	// longer than ctx allows.
	Collect func(ctx context.Context, s *Snapshot) error
	// OnSnapshot, if set, is called with each new snapshot (the agent
	// sets its metrics' gauges from it).
	OnSnapshot func(*Snapshot)
	// Set is where alarms are raised and cleared.
	Set *alarm.Set
	// Interval is how often a snapshot is taken (DefaultInterval if 0).
	Interval time.Duration
	Logger   *slog.Logger
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

// Monitor takes the agent's snapshots, decides the alarms on them, and
// serves them on the admin socket ([Server]).
type Monitor struct {
	cfg     MonitorConfig
	started time.Time
	version string

	// counts are the burst and frequency counts; SetAlarms replaces
	// them when their thresholds change.
	counts atomic.Pointer[counts]

	mu     sync.Mutex
	alarms alarm.Config // the thresholds in force
	last   *Snapshot
}

// counts are what the burst and high-frequency alarms count.
type counts struct {
	quarantined *alarm.Window
	refused     *alarm.Window
	frequent    *alarm.Frequency
}

func newCounts(c alarm.Config) *counts {
	return &counts{
		quarantined: alarm.NewWindow(time.Duration(c.BurstWindow)),
		refused:     alarm.NewWindow(time.Duration(c.BurstWindow)),
		frequent:    alarm.NewFrequency(c.HighFrequency, maxFrequencyKeys),
	}
}

// NewMonitor returns a monitor for cfg.
func NewMonitor(cfg MonitorConfig) *Monitor {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Monitor{cfg: cfg, started: cfg.Now(), version: Version(), alarms: cfg.Alarms}
	m.counts.Store(newCounts(cfg.Alarms))
	return m
}

// SetAlarms puts new alarm thresholds in force (a reload). A change of
// burst_window or high_frequency starts their counts afresh.
func (m *Monitor) SetAlarms(c alarm.Config) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.BurstWindow != m.alarms.BurstWindow || c.HighFrequency != m.alarms.HighFrequency {
		m.counts.Store(newCounts(c))
	}
	m.alarms = c
}

// maxFrequencyKeys bounds the keys the high-frequency count keeps per
// minute.
const maxFrequencyKeys = 100000

// Quarantined notes one file quarantined, for the burst alarm.
func (m *Monitor) Quarantined() { m.counts.Load().quarantined.Add(m.cfg.Now(), 1) }

// Refused notes n requests refused, for the burst alarm.
func (m *Monitor) Refused(n int) { m.counts.Load().refused.Add(m.cfg.Now(), n) }

// Request notes one request by key (a client's name, or a keyed hash of a
// subject, never the subject), for the high-frequency alarm.
func (m *Monitor) Request(key string) { m.counts.Load().frequent.Add(m.cfg.Now(), key) }

// Snapshot returns the newest snapshot (nil before the first).
func (m *Monitor) Snapshot() *Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last
}

// Refresh takes a snapshot now, decides the alarms on it, and returns
// it. A part that cannot be collected is logged and left at its zero
// value; the snapshot is still taken.
func (m *Monitor) Refresh(ctx context.Context) *Snapshot {
	now := m.cfg.Now()
	s := &Snapshot{
		Agent: m.cfg.Agent, Zone: m.cfg.Zone, Peer: m.cfg.Peer,
		Version: m.version, GoVersion: runtime.Version(),
		Started: m.started, Taken: now, State: "serving",
	}
	if m.cfg.Collect != nil {
		cctx, cancel := context.WithTimeout(ctx, collectTimeout)
		err := m.cfg.Collect(cctx, s)
		cancel()
		if err != nil && ctx.Err() == nil {
			m.cfg.Logger.Warn("status: collecting the snapshot failed", slog.String("error", err.Error()))
		}
	}
	s.Disk = DiskOf(m.cfg.StateDir)
	if n, err := countFiles(m.cfg.Quarantine); err == nil {
		s.Queue.Quarantined = n
	}
	cs := m.counts.Load()
	s.Recent = Recent{
		Quarantined: cs.quarantined.Count(now),
		Refused:     cs.refused.Count(now),
		Frequent:    cs.frequent.Over(now),
	}
	m.mu.Lock()
	thresholds := m.alarms
	m.mu.Unlock()
	if m.cfg.Set != nil {
		m.apply(Evaluate(s, thresholds, now))
		s.Alarms = m.cfg.Set.Active()
	}
	if s.Alarms == nil {
		s.Alarms = []alarm.Alarm{}
	}
	if m.cfg.OnSnapshot != nil {
		m.cfg.OnSnapshot(s)
	}
	m.mu.Lock()
	m.last = s
	m.mu.Unlock()
	return s
}

// apply raises the alarms in raised and clears every other.
func (m *Monitor) apply(raised []alarm.Alarm) {
	on := map[string]bool{}
	for _, a := range raised {
		on[a.Name] = true
		m.cfg.Set.Raise(a.Name, a.Severity, a.Message)
	}
	for _, name := range alarm.Names() {
		if !on[name] {
			m.cfg.Set.Clear(name)
		}
	}
}

// Run takes a snapshot every interval, and serves srv (the admin socket
// and the metrics listener; nil for none), until ctx ends.
func (m *Monitor) Run(ctx context.Context, srv *Server) error {
	m.Refresh(ctx)
	done := make(chan error, 1)
	if srv != nil {
		go func() { done <- srv.Serve(ctx) }()
	} else {
		go func() { <-ctx.Done(); done <- nil }()
	}
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return <-done
		case err := <-done:
			if err == nil {
				err = errors.New("admin server stopped")
			}
			return err
		case <-t.C:
			m.Refresh(ctx)
		}
	}
}

// DiskOf returns the figures of the file system holding dir.
func DiskOf(dir string) Disk {
	d := Disk{Path: dir}
	if dir == "" {
		return d
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return d
	}
	d.Free = st.Bavail * uint64(st.Bsize)
	d.Total = st.Blocks * uint64(st.Bsize)
	return d
}

// countFiles counts the quarantined files in dir: one .reason file
// each, whether the file itself was kept or not.
func countFiles(dir string) (int, error) {
	if dir == "" {
		return 0, nil
	}
	f, err := os.Open(dir)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	for {
		names, err := f.Readdirnames(1024)
		for _, name := range names {
			if strings.HasSuffix(name, ".reason") {
				n++
			}
		}
		if err != nil {
			return n, nil
		}
	}
}

// version is set at build time by `make build` (-ldflags -X), from git
// describe; "" otherwise.
var version string

// Version returns the running build's version: the one make build set,
// else the main module's version, else its VCS revision (12 digits,
// "+dirty" when modified), else "devel".
func Version() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return "devel"
	}
	return fmt.Sprintf("%s%s", rev, dirty)
}
