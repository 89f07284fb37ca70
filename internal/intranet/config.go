package intranet

import (
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ferrybridge/ferry/internal/admin"
	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/config"
	"github.com/ferrybridge/ferry/internal/keys"
	"github.com/ferrybridge/ferry/internal/medium"
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
	return &c, nil
}

// Validate checks the configuration and returns a *config.Error for the
// first problem found.
func (c *Config) Validate() error {
	fail := func(msg string, path ...string) error {
		file := c.file
		if file == "" {
			file = "intranet config"
		}
		return config.FieldError(file, c.root, msg, path...)
	}
	if msg, key := keys.CheckZonePair(c.Zone, c.Peer); msg != "" {
		return fail(msg, key)
	}
	switch {
	case c.Keys == "":
		return fail("required: the zone's key directory", "keys")
	case c.Policy == "":
		return fail("required: the policy file", "policy")
	case c.Admins == "":
		return fail("required: the directory of the admins' public keys", "admins")
	case c.PolicySigs < 1 || c.PolicySigs > MaxPolicySignatures:
		return fail(fmt.Sprintf("must be between 1 and %d", MaxPolicySignatures), "policy_signatures")
	case c.Approvals == "":
		return fail("required: the directory admins put signed approvals in", "approvals")
	case c.ApprovalPoll < config.Duration(100*time.Millisecond) || c.ApprovalPoll > config.Duration(time.Minute):
		return fail("must be between 100ms and 1m", "approval_poll")
	case c.Replica == "":
		return fail("required: the replica database file", "replica")
	case c.AuditLog == "":
		return fail("required: the audit log database file", "audit_log")
	case c.AuditLog == c.Replica:
		return fail("must differ from replica", "audit_log")
	case c.AuditCheckpoint < config.Duration(time.Second) || c.AuditCheckpoint > config.Duration(time.Hour):
		return fail("must be between 1s and 1h", "audit_checkpoint")
	case c.AuditRetention != 0 && c.AuditRetention < config.Duration(audit.MinRetention):
		return fail("must be at least 180d (the operating rules keep audit entries six months), or 0 to keep them for ever", "audit_retention")
	case c.Inbox == "":
		return fail("required: the inbox directory", "inbox")
	case c.Quarantine == "":
		return fail("required: the quarantine directory", "quarantine")
	case c.Batch.MaxResults < 1 || c.Batch.MaxResults > batch.MaxResults:
		return fail(fmt.Sprintf("must be between 1 and %d", batch.MaxResults), "batch", "max_results")
	case c.Batch.MaxDelay <= 0 || time.Duration(c.Batch.MaxDelay) > time.Minute:
		return fail("must be above 0 and at most 1m", "batch", "max_delay")
	case time.Duration(c.EnvelopeTTL) < time.Minute:
		return fail("must be at least 1m", "envelope_ttl")
	case c.DrainTimeout < 0:
		return fail("must not be negative", "drain_timeout")
	case c.Heartbeat < config.Duration(100*time.Millisecond) || c.Heartbeat > config.Duration(time.Hour):
		return fail("must be between 100ms and 1h", "heartbeat")
	case c.PeerSilence < config.Duration(time.Second):
		return fail("must be at least 1s", "peer_silence")
	case c.MaxSeqJump < 1 || c.MaxSeqJump > MaxSeqJumpLimit:
		return fail(fmt.Sprintf("must be between 1 and %d", uint64(MaxSeqJumpLimit)), "max_seq_jump")
	}
	if msg, key := c.Receive.Check(false); msg != "" {
		return fail(msg, "receive", key)
	}
	if msg, key := c.Send.Check(true); msg != "" {
		return fail(msg, "send", key)
	}
	if c.Receive.SameDrop(c.Send) {
		return fail("must differ from receive.dir: each direction has its own medium", "send", "dir")
	}
	return nil
}
