package status

import (
	"time"

	"github.com/ferrybridge/ferry/internal/alarm"
)

// Snapshot is what an agent reports about itself at one moment: what
// `ferryctl status` prints, what the metrics' gauges show and what the
// alarms are decided on. It holds no personal data and no secret: counts,
// times, key ids, names of admins.
type Snapshot struct {
	// Agent is the program ("dmz-agent", "intranet-agent"), Zone and
	// Peer the zones' names.
	Agent string `json:"agent"`
	Zone  string `json:"zone"`
	Peer  string `json:"peer"`
	// Version is the build's version (module version or VCS revision),
	// GoVersion the Go release it was built with.
	Version   string `json:"version"`
	GoVersion string `json:"go_version"`
	// Started is when the agent started; Taken when the snapshot was.
	Started time.Time `json:"started"`
	Taken   time.Time `json:"taken"`
	// State is "starting", "serving", "overloaded" or "stopping".
	State string `json:"state"`

	Keys   Keys    `json:"keys"`
	Policy *Policy `json:"policy,omitempty"`
	Queue  Queue   `json:"queue"`
	// LastSent and LastReceived are when the agent last published and
	// received an envelope (zero: none since it started).
	LastSent     time.Time `json:"last_sent"`
	LastReceived time.Time `json:"last_received"`
	PeerHeard    PeerHeard `json:"peer_heard"`
	Audit        Audit     `json:"audit"`
	Disk         Disk      `json:"disk"`
	// Recent counts events in the alarms' burst window, and the clients
	// or hashed subjects over the high-frequency threshold.
	Recent Recent `json:"recent"`
	// Alarms are the alarms raised now, by name.
	Alarms []alarm.Alarm `json:"alarms"`
}

// Keys are the zone's keys in force.
type Keys struct {
	// Signing is the id of the zone's signing key in force, Since when it
	// began signing (its rotation, or its file's time for a first key),
	// Expires when it reaches alarms.key_max_age.
	Signing string    `json:"signing"`
	Since   time.Time `json:"since"`
	Expires time.Time `json:"expires"`
	// Peer are the ids of the peer's keys that are valid now.
	Peer []string `json:"peer"`
	// Audit is the id of the zone's audit log key, PeerAudit the peer's.
	Audit     string `json:"audit"`
	PeerAudit string `json:"peer_audit"`
}

// Policy is the policy in force: on the intranet the signed policy, on
// the DMZ the operation catalogue the intranet sent.
type Policy struct {
	// Version is the policy's version line, or the catalogue's sequence
	// number on the DMZ.
	Version string `json:"version"`
	// SHA256 is the hash of the policy file (intranet).
	SHA256 string `json:"sha256,omitempty"`
	// Signers are the admins whose signatures put it in force.
	Signers []string `json:"signers,omitempty"`
	// Since is when it came into force; Expires when it reaches
	// alarms.policy_max_age (zero on the DMZ).
	Since   time.Time `json:"since"`
	Expires time.Time `json:"expires"`
	// Operations counts its operations.
	Operations int `json:"operations"`
}

// Queue is what waits in the zone's state.
type Queue struct {
	// Backlog counts requests accepted and not yet final or held (DMZ);
	// MaxBacklog is its limit.
	Backlog    int `json:"backlog"`
	MaxBacklog int `json:"max_backlog"`
	// Unacked counts envelopes sent and not yet acknowledged (DMZ);
	// MaxUnacked is its limit. OldestUnacked is when the oldest of them
	// was sealed.
	Unacked       int       `json:"unacked"`
	MaxUnacked    int       `json:"max_unacked"`
	OldestUnacked time.Time `json:"oldest_unacked"`
	// Envelopes counts envelopes held by state (see metrics.Envelopes).
	Envelopes map[string]int `json:"envelopes"`
	// Dead counts dead letters (DMZ): envelopes sent max_resends times
	// without an acknowledgement.
	Dead int `json:"dead"`
	// Held counts write requests waiting for an admin's approval.
	Held int `json:"held"`
	// Gaps counts the missing sequence ranges on the received channel.
	Gaps int `json:"gaps"`
	// Quarantined counts the files in the quarantine directory.
	Quarantined int `json:"quarantined"`
}

// PeerHeard is when the peer zone was last heard from.
type PeerHeard struct {
	// At is when the last authentic envelope came from the peer (or when
	// the agent started, before the first); Silent whether that is longer
	// ago than peer_silence.
	At     time.Time `json:"at"`
	Silent bool      `json:"silent"`
}

// Audit is the state of the zone's audit log.
type Audit struct {
	// Entries is the log's size.
	Entries int64 `json:"entries"`
	// Witnessed is when this zone last countersigned a checkpoint of the
	// peer's log (zero: never); Cosigned when the peer last
	// countersigned one of this zone's.
	Witnessed time.Time `json:"witnessed"`
	Cosigned  time.Time `json:"cosigned"`
	// Inconsistent is the last inconsistency found in either log since
	// the agent started, "" for none.
	Inconsistent string `json:"inconsistent,omitempty"`
}

// Disk is the file system holding the zone's state.
type Disk struct {
	Path  string `json:"path"`
	Free  uint64 `json:"free"`
	Total uint64 `json:"total"`
}

// Recent counts events within the alarms' burst window.
type Recent struct {
	Quarantined int `json:"quarantined"`
	Refused     int `json:"refused"`
	// Frequent are the clients (and subjects, as keyed hashes) that made
	// alarms.high_frequency requests or more within a minute.
	Frequent []string `json:"frequent,omitempty"`
}

// InAlarm reports whether any alarm is raised.
func (s *Snapshot) InAlarm() bool { return len(s.Alarms) > 0 }
