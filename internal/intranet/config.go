package intranet

import (
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ferrybridge/ferry/internal/admin"
	"github.com/ferrybridge/ferry/internal/alarm"
	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/config"
	"github.com/ferrybridge/ferry/internal/keys"
	"github.com/ferrybridge/ferry/internal/medium"
	"github.com/ferrybridge/ferry/internal/status"
)

// Defaults for a Config.
const (
	DefaultMaxResults   = 1024
	DefaultMaxDelay     = 5 * time.Millisecond
	DefaultEnvelopeTTL  = 24 * time.Hour
	DefaultDrainTimeout = 10 * time.Second
	// DefaultHeartbeat is how long the results channel may stay quiet
	// before the agent seals an envelope carrying only its catalogue.
	DefaultHeartbeat = 30 * time.Second
	// DefaultAuditCheckpoint is how often the audit log signs a
	// checkpoint when it grew.
	DefaultAuditCheckpoint = 10 * time.Second
	// DefaultPeerSilence is how long the DMZ may stay unheard before the
	// agent reports the requests channel as silent.
	DefaultPeerSilence = 2 * time.Minute
	// DefaultMaxSeqJump bounds how far ahead of the last contiguous
	// sequence number a received envelope may be.
	DefaultMaxSeqJump = 100000
	// MaxSeqJumpLimit is the largest max_seq_jump allowed.
	MaxSeqJumpLimit = 1 << 32
	// DefaultApprovalPoll is how often the approvals directory is read.
	DefaultApprovalPoll = 2 * time.Second
	// ResultsChannel is the channel name of result envelopes.
	ResultsChannel = "results"
	// RequestsChannel is the channel name of request envelopes; the
	// agent refuses envelopes on any other.
	RequestsChannel = "requests"
	// MaxPolicySignatures bounds policy_signatures.
	MaxPolicySignatures = 16
	// MediumDir is the default medium type: a directory (see
	// docs/media.md for the others).
	MediumDir = medium.TypeDir
)

// Config is the intranet agent's configuration file.
//
//	zone: intranet
//	peer: dmz
//	keys: keys                 # keys.LoadZone(dir) and keys.LoadPeer(dir)
//	policy: policy.yaml        # signed: policy.yaml.sig (ferryctl policy sign)
//	admins: keys/admins        # the admins' public keys, NAME.pub each
//	policy_signatures: 2       # distinct admins who must sign the policy
//	approvals: approvals       # signed approvals of held writes (ferryctl approve)
//	approval_poll: 2s          # how often approvals are read and held writes expired
//	replica: replica.db        # must exist
//	audit_log: state/audit.db  # optional: the zone's audit log (keys: audit.key, audit-hmac.key)
//	audit_checkpoint: 10s      # optional: how often the audit log signs its checkpoint
//	audit_retention: 180d      # optional: how long audit entries are kept (at least 180d; 0: for ever)
//	receive: {type: dir, dir: ../exchange/requests}
//	send: {type: dir, dir: ../exchange/results}
//	inbox: state/inbox
//	quarantine: state/quarantine
//	batch: {max_results: 1024, max_delay: 5ms}
//	envelope_ttl: 24h
//	drain_timeout: 10s         # optional
//	heartbeat: 30s             # optional: longest quiet time on the results channel
//	peer_silence: 2m           # optional: report the requests channel silent after this
//	max_seq_jump: 100000       # optional: refuse request envelopes further ahead
//
// Relative paths are relative to the directory of the config file.
type Config struct {
	Zone         string          `yaml:"zone"`
	Peer         string          `yaml:"peer"`
	Keys         string          `yaml:"keys"`
	Policy       string          `yaml:"policy"`
	Admins       string          `yaml:"admins"`
	PolicySigs   int             `yaml:"policy_signatures"`
	Approvals    string          `yaml:"approvals"`
	ApprovalPoll config.Duration `yaml:"approval_poll"`
	Replica      string          `yaml:"replica"`
	AuditLog     string          `yaml:"audit_log"`
	// AuditCheckpoint is how often the audit log signs a checkpoint when
	// it grew.
	AuditCheckpoint config.Duration `yaml:"audit_checkpoint"`
	// AuditRetention is how long audit entry bodies are kept (their
	// hashes stay): at least audit.MinRetention, or 0 for ever.
	AuditRetention config.Duration `yaml:"audit_retention"`
	Receive        MediumConfig    `yaml:"receive"`
	Send           MediumConfig    `yaml:"send"`
	Inbox          string          `yaml:"inbox"`
	Quarantine     string          `yaml:"quarantine"`
	Batch          BatchConfig     `yaml:"batch"`
	EnvelopeTTL    config.Duration `yaml:"envelope_ttl"`
	DrainTimeout   config.Duration `yaml:"drain_timeout"`
	Heartbeat      config.Duration `yaml:"heartbeat"`
	PeerSilence    config.Duration `yaml:"peer_silence"`
	MaxSeqJump     uint64          `yaml:"max_seq_jump"`

	// Admin is the admin socket and metrics listener (package status).
	Admin status.Config `yaml:"admin"`
	// Alarms holds the thresholds of the alarms (package alarm).
	Alarms alarm.Config `yaml:"alarms"`

	file string     // the config file, for errors
	root *yaml.Node // its node tree, for line numbers
}

// MediumConfig says where envelopes are read from or written to.
type MediumConfig = medium.Config

// BatchConfig bounds result envelopes: at most MaxResults results, and no
// result waits longer than MaxDelay for others to join it.
type BatchConfig struct {
	MaxResults int             `yaml:"max_results"`
	MaxDelay   config.Duration `yaml:"max_delay"`
}

// DefaultConfig returns the configuration a file starts from.
func DefaultConfig() Config {
	return Config{
		Zone:            "intranet",
		Peer:            "dmz",
		Keys:            "keys",
		Policy:          "policy.yaml",
		Admins:          "keys/admins",
		PolicySigs:      admin.DefaultRequired,
		Approvals:       "approvals",
		ApprovalPoll:    config.Duration(DefaultApprovalPoll),
		Replica:         "replica.db",
		AuditLog:        "state/" + audit.FileName,
		AuditCheckpoint: config.Duration(DefaultAuditCheckpoint),
		AuditRetention:  config.Duration(audit.MinRetention),
		Receive:         MediumConfig{Type: MediumDir},
		Send:            MediumConfig{Type: MediumDir},
		Inbox:           "state/inbox",
		Quarantine:      "state/quarantine",
		Batch:           BatchConfig{MaxResults: DefaultMaxResults, MaxDelay: config.Duration(DefaultMaxDelay)},
		EnvelopeTTL:     config.Duration(DefaultEnvelopeTTL),
		DrainTimeout:    config.Duration(DefaultDrainTimeout),
		Heartbeat:       config.Duration(DefaultHeartbeat),
		PeerSilence:     config.Duration(DefaultPeerSilence),
		MaxSeqJump:      DefaultMaxSeqJump,
		Alarms:          alarm.DefaultConfig(),
	}
}

// LoadConfig reads the config file at path strictly over DefaultConfig,
// resolves its relative paths against the file's directory and validates
// it. Errors are *config.Error values naming file, line and field.
func LoadConfig(path string) (*Config, error) {
	data, err := config.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	c := DefaultConfig()
	root, err := config.Decode(path, data, &c)
	if err != nil {
		return nil, err
	}
	c.file, c.root = path, root
	if err := c.Validate(); err != nil {
		return nil, err
	}
	for _, p := range []*string{&c.Keys, &c.Policy, &c.Admins, &c.Approvals, &c.Replica, &c.AuditLog, &c.Inbox, &c.Quarantine} {
		*p = config.Resolve(path, *p)
	}
	// A directory medium's dir is local; an SFTP drop's dir is on the
	// server and stays as written, while its key files are local.
	c.Send, c.Receive = c.Send.Resolve(path), c.Receive.Resolve(path)
	c.Admin, c.Alarms = c.Admin.Resolve(path), c.Alarms.Resolve(path)
	return &c, nil
}

// Validate checks the configuration and returns every problem it finds,
// each a *config.Error naming file, line and field, joined with
// errors.Join (errors.As finds the first). A check that depends on
// another value (audit_log against replica, say) is skipped when that
// value is itself wrong.
func (c *Config) Validate() error {
	file := c.file
	if file == "" {
		file = "intranet config"
	}
	p := config.Problems{File: file, Root: c.root}
	if msg, key := keys.CheckZonePair(c.Zone, c.Peer); msg != "" {
		p.Add(msg, key)
	}
	if c.Keys == "" {
		p.Add("required: the zone's key directory", "keys")
	}
	if c.Policy == "" {
		p.Add("required: the policy file", "policy")
	}
	if c.Admins == "" {
		p.Add("required: the directory of the admins' public keys", "admins")
	}
	if c.PolicySigs < 1 || c.PolicySigs > MaxPolicySignatures {
		p.Add(fmt.Sprintf("must be between 1 and %d", MaxPolicySignatures), "policy_signatures")
	}
	if c.Approvals == "" {
		p.Add("required: the directory admins put signed approvals in", "approvals")
	}
	if c.ApprovalPoll < config.Duration(100*time.Millisecond) || c.ApprovalPoll > config.Duration(time.Minute) {
		p.Add("must be between 100ms and 1m", "approval_poll")
	}
	if c.Replica == "" {
		p.Add("required: the replica database file", "replica")
	}
	switch {
	case c.AuditLog == "":
		p.Add("required: the audit log database file", "audit_log")
	case c.AuditLog == c.Replica:
		p.Add("must differ from replica", "audit_log")
	}
	if c.AuditCheckpoint < config.Duration(time.Second) || c.AuditCheckpoint > config.Duration(time.Hour) {
		p.Add("must be between 1s and 1h", "audit_checkpoint")
	}
	if c.AuditRetention != 0 && c.AuditRetention < config.Duration(audit.MinRetention) {
		p.Add("must be at least 180d (the operating rules keep audit entries six months), or 0 to keep them for ever", "audit_retention")
	}
	if c.Inbox == "" {
		p.Add("required: the inbox directory", "inbox")
	}
	if c.Quarantine == "" {
		p.Add("required: the quarantine directory", "quarantine")
	}
	if c.Batch.MaxResults < 1 || c.Batch.MaxResults > batch.MaxResults {
		p.Add(fmt.Sprintf("must be between 1 and %d", batch.MaxResults), "batch", "max_results")
	}
	if c.Batch.MaxDelay <= 0 || time.Duration(c.Batch.MaxDelay) > time.Minute {
		p.Add("must be above 0 and at most 1m", "batch", "max_delay")
	}
	if time.Duration(c.EnvelopeTTL) < time.Minute {
		p.Add("must be at least 1m", "envelope_ttl")
	}
	if c.DrainTimeout < 0 {
		p.Add("must not be negative", "drain_timeout")
	}
	if c.Heartbeat < config.Duration(100*time.Millisecond) || c.Heartbeat > config.Duration(time.Hour) {
		p.Add("must be between 100ms and 1h", "heartbeat")
	}
	if c.PeerSilence < config.Duration(time.Second) {
		p.Add("must be at least 1s", "peer_silence")
	}
	if c.MaxSeqJump < 1 || c.MaxSeqJump > MaxSeqJumpLimit {
		p.Add(fmt.Sprintf("must be between 1 and %d", uint64(MaxSeqJumpLimit)), "max_seq_jump")
	}
	recvMsg, key := c.Receive.Check(false)
	if recvMsg != "" {
		p.Add(recvMsg, "receive", key)
	}
	sendMsg, key := c.Send.Check(true)
	if sendMsg != "" {
		p.Add(sendMsg, "send", key)
	}
	// Two media are compared only when each is valid on its own.
	if recvMsg == "" && sendMsg == "" && c.Receive.SameDrop(c.Send) {
		p.Add("must differ from receive.dir: each direction has its own medium", "send", "dir")
	}
	if msg, key := c.Admin.Check(""); msg != "" {
		p.Add(msg, "admin", key)
	}
	if msg, path := c.Alarms.Check(); msg != "" {
		p.Add(msg, append([]string{"alarms"}, path...)...)
	}
	return p.Err()
}
