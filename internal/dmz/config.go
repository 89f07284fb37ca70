package dmz

import (
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

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
	DefaultListen       = "127.0.0.1:8080"
	DefaultMaxRequests  = 256
	DefaultMaxDelay     = 5 * time.Millisecond
	DefaultEnvelopeTTL  = 24 * time.Hour
	DefaultDrainTimeout = 10 * time.Second
	// DefaultResendAfter is how long a published request envelope waits
	// for the intranet's acknowledgement before what it carries is sent
	// again in a new envelope.
	DefaultResendAfter = 2 * time.Minute
	// DefaultResendMax caps the re-send backoff: each re-publication of
	// an unacknowledged envelope doubles its wait, up to this.
	DefaultResendMax = 30 * time.Minute
	// DefaultMaxResends is how many times an unacknowledged envelope is
	// sent again before it becomes a dead letter.
	DefaultMaxResends = 20
	// DefaultPeerSilence is how long the intranet may stay unheard before
	// the agent reports the results channel as silent.
	DefaultPeerSilence = 2 * time.Minute
	// DefaultHeartbeat is how long the requests channel may stay quiet
	// before the batcher seals an envelope carrying nothing, so that the
	// intranet hears that the DMZ lives and the medium moves.
	DefaultHeartbeat = 30 * time.Second
	// DefaultAuditCheckpoint is how often the audit log signs a
	// checkpoint when it grew.
	DefaultAuditCheckpoint = 10 * time.Second
	// DefaultMaxSeqJump bounds how far above the highest sequence number
	// received a result envelope may be before it is refused.
	DefaultMaxSeqJump = 100000
	// MaxSeqJumpLimit is the largest max_seq_jump allowed.
	MaxSeqJumpLimit = 1 << 32
	// DefaultMaxBacklog bounds the requests accepted and not yet final.
	DefaultMaxBacklog = 100000
	// DefaultMaxUnacked bounds the request envelopes published and not
	// yet acknowledged.
	DefaultMaxUnacked = 4096
	// DefaultRetryAfter is the Retry-After of a 503 for backpressure.
	DefaultRetryAfter = 5 * time.Second
	// RequestsChannel is the channel name of request envelopes.
	RequestsChannel = "requests"
	// ResultsChannel is the channel name of result envelopes.
	ResultsChannel = "results"
	// MediumDir is the default medium type: a directory (see
	// docs/media.md for the others).
	MediumDir = medium.TypeDir
)

// Config is the DMZ agent's configuration file.
//
//	zone: dmz
//	peer: intranet
//	listen: 127.0.0.1:8080
//	keys: keys                  # keys.LoadZone(dir) and keys.LoadPeer(dir)
//	policy: policy.yaml         # optional: used until the intranet's catalogue arrives
//	spool: state/spool.db
//	audit_log: state/audit.db   # optional: the zone's audit log (keys: audit.key, audit-hmac.key)
//	audit_checkpoint: 10s       # optional: how often the audit log signs its checkpoint
//	audit_retention: 180d       # optional: how long audit entries are kept (at least 180d; 0: for ever)
//	send: {type: dir, dir: ../exchange/requests}
//	receive: {type: dir, dir: ../exchange/results}
//	inbox: state/inbox
//	quarantine: state/quarantine
//	batch: {max_requests: 256, max_delay: 5ms}
//	envelope_ttl: 24h
//	drain_timeout: 10s          # optional
//	resend_after: 2m            # optional
//	resend_max: 30m             # optional: cap of the re-send backoff
//	max_resends: 20             # optional: then the envelope is a dead letter
//	peer_silence: 2m            # optional: report the results channel silent after this
//	heartbeat: 30s              # optional: longest quiet time on the requests channel
//	max_seq_jump: 100000        # optional: refuse result envelopes further ahead
//	limits: {max_backlog: 100000, max_unacked: 4096, retry_after: 5s}   # optional
//	clients:
//	  - name: portal
//	    token_sha256: 9f86d0…   # hex SHA-256 of the bearer token
//	    operations: [a, b]      # optional: allow only these operations
//
// Relative paths are relative to the directory of the config file. The
// policy file is a bootstrap: the agent checks requests against it only
// until the first operation catalogue arrives from the intranet, and not
// at all once the spool holds one. Without it, the agent refuses every
// request (503 catalogue_unavailable) until the catalogue arrives.
type Config struct {
	Zone     string `yaml:"zone"`
	Peer     string `yaml:"peer"`
	Listen   string `yaml:"listen"`
	Keys     string `yaml:"keys"`
	Policy   string `yaml:"policy"` // optional; "" for none
	Spool    string `yaml:"spool"`
	AuditLog string `yaml:"audit_log"`
	// AuditCheckpoint is how often the audit log signs a checkpoint when
	// it grew.
	AuditCheckpoint config.Duration `yaml:"audit_checkpoint"`
	// AuditRetention is how long audit entry bodies are kept (their
	// hashes stay): at least audit.MinRetention, or 0 for ever.
	AuditRetention config.Duration `yaml:"audit_retention"`
	Send           MediumConfig    `yaml:"send"`
	Receive        MediumConfig    `yaml:"receive"`
	Inbox          string          `yaml:"inbox"`
	Quarantine     string          `yaml:"quarantine"`
	Batch          BatchConfig     `yaml:"batch"`
	EnvelopeTTL    config.Duration `yaml:"envelope_ttl"`
	DrainTimeout   config.Duration `yaml:"drain_timeout"`
	ResendAfter    config.Duration `yaml:"resend_after"`
	ResendMax      config.Duration `yaml:"resend_max"`
	MaxResends     int             `yaml:"max_resends"`
	PeerSilence    config.Duration `yaml:"peer_silence"`
	Heartbeat      config.Duration `yaml:"heartbeat"`
	MaxSeqJump     uint64          `yaml:"max_seq_jump"`
	Limits         LimitsConfig    `yaml:"limits"`
	Clients        []ClientConfig  `yaml:"clients"`

	// Admin is the admin socket and metrics listener (package status).
	Admin status.Config `yaml:"admin"`
	// Alarms holds the thresholds of the alarms (package alarm).
	Alarms alarm.Config `yaml:"alarms"`

	file string     // the config file, for errors
	root *yaml.Node // its node tree, for line numbers
}

// MediumConfig says where envelopes are written to or read from.
type MediumConfig = medium.Config

// BatchConfig bounds request envelopes: at most MaxRequests requests, and
// no request waits longer than MaxDelay for others to join it.
type BatchConfig struct {
	MaxRequests int             `yaml:"max_requests"`
	MaxDelay    config.Duration `yaml:"max_delay"`
}

// LimitsConfig bounds what the DMZ holds for the intranet. When either
// bound is reached, the API refuses new requests with 503 and a
// Retry-After of RetryAfter instead of letting the spool grow.
type LimitsConfig struct {
	// MaxBacklog bounds the requests accepted and not yet final or held.
	MaxBacklog int `yaml:"max_backlog"`
	// MaxUnacked bounds the request envelopes published and not yet
	// acknowledged by the intranet.
	MaxUnacked int `yaml:"max_unacked"`
	// RetryAfter is what a refused client is told to wait.
	RetryAfter config.Duration `yaml:"retry_after"`
}

// ClientConfig is one API client.
type ClientConfig struct {
	Name string `yaml:"name"`
	// TokenSHA256 is the hex SHA-256 of the client's bearer token; the
	// token itself is never stored.
	TokenSHA256 string `yaml:"token_sha256"`
	// Operations, when set, is the only operations the client may submit.
	Operations []string `yaml:"operations"`
}

// DefaultConfig returns the configuration a file starts from.
func DefaultConfig() Config {
	return Config{
		Zone:            "dmz",
		Peer:            "intranet",
		Listen:          DefaultListen,
		Keys:            "keys",
		Spool:           "state/spool.db",
		AuditLog:        "state/" + audit.FileName,
		AuditCheckpoint: config.Duration(DefaultAuditCheckpoint),
		AuditRetention:  config.Duration(audit.MinRetention),
		Send:            MediumConfig{Type: MediumDir},
		Receive:         MediumConfig{Type: MediumDir},
		Inbox:           "state/inbox",
		Quarantine:      "state/quarantine",
		Batch:           BatchConfig{MaxRequests: DefaultMaxRequests, MaxDelay: config.Duration(DefaultMaxDelay)},
		EnvelopeTTL:     config.Duration(DefaultEnvelopeTTL),
		DrainTimeout:    config.Duration(DefaultDrainTimeout),
		ResendAfter:     config.Duration(DefaultResendAfter),
		ResendMax:       config.Duration(DefaultResendMax),
		MaxResends:      DefaultMaxResends,
		PeerSilence:     config.Duration(DefaultPeerSilence),
		Heartbeat:       config.Duration(DefaultHeartbeat),
		MaxSeqJump:      DefaultMaxSeqJump,
		Alarms:          alarm.DefaultConfig(),
		Limits: LimitsConfig{
			MaxBacklog: DefaultMaxBacklog,
			MaxUnacked: DefaultMaxUnacked,
			RetryAfter: config.Duration(DefaultRetryAfter),
		},
	}
}

// LoadConfig reads the config file at path strictly over DefaultConfig,
// validates it and resolves its relative paths against the file's
// directory. Errors are *config.Error values naming file, line and field.
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
	for _, p := range []*string{&c.Keys, &c.Policy, &c.Spool, &c.AuditLog, &c.Inbox, &c.Quarantine} {
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
// another value (resend_max on resend_after, say) is skipped when that
// value is itself wrong.
func (c *Config) Validate() error {
	file := c.file
	if file == "" {
		file = "dmz config"
	}
	p := config.Problems{File: file, Root: c.root}
	if msg, key := keys.CheckZonePair(c.Zone, c.Peer); msg != "" {
		p.Add(msg, key)
	}
	if c.Listen == "" {
		p.Add("required: the HTTP API's host:port", "listen")
	}
	if c.Keys == "" {
		p.Add("required: the zone's key directory", "keys")
	}
	if c.Spool == "" {
		p.Add("required: the spool database file", "spool")
	}
	switch {
	case c.AuditLog == "":
		p.Add("required: the audit log database file", "audit_log")
	case c.AuditLog == c.Spool:
		p.Add("must differ from spool", "audit_log")
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
	switch {
	case c.Quarantine == "":
		p.Add("required: the quarantine directory", "quarantine")
	case c.Inbox == c.Quarantine:
		p.Add("must differ from inbox", "quarantine")
	}
	if c.Batch.MaxRequests < 1 || c.Batch.MaxRequests > batch.MaxRequests {
		p.Add(fmt.Sprintf("must be between 1 and %d", batch.MaxRequests), "batch", "max_requests")
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
	switch {
	case time.Duration(c.ResendAfter) < time.Second:
		p.Add("must be at least 1s", "resend_after")
	case c.ResendMax < c.ResendAfter:
		p.Add("must be at least resend_after", "resend_max")
	}
	if c.MaxResends < 1 || c.MaxResends > 1000 {
		p.Add("must be between 1 and 1000", "max_resends")
	}
	if c.PeerSilence < config.Duration(time.Second) {
		p.Add("must be at least 1s", "peer_silence")
	}
	if c.Heartbeat < config.Duration(100*time.Millisecond) || c.Heartbeat > config.Duration(time.Hour) {
		p.Add("must be between 100ms and 1h", "heartbeat")
	}
	if c.MaxSeqJump < 1 || c.MaxSeqJump > MaxSeqJumpLimit {
		p.Add(fmt.Sprintf("must be between 1 and %d", uint64(MaxSeqJumpLimit)), "max_seq_jump")
	}
	if c.Limits.MaxBacklog < 1 {
		p.Add("must be at least 1", "limits", "max_backlog")
	}
	if c.Limits.MaxUnacked < 1 {
		p.Add("must be at least 1", "limits", "max_unacked")
	}
	if c.Limits.RetryAfter < config.Duration(time.Second) || c.Limits.RetryAfter > config.Duration(time.Hour) {
		p.Add("must be between 1s and 1h", "limits", "retry_after")
	}
	if c.Listen != "" {
		if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
			p.Add(fmt.Sprintf("invalid address %q: want host:port", c.Listen), "listen")
		}
	}
	sendMsg, key := c.Send.Check(true)
	if sendMsg != "" {
		p.Add(sendMsg, "send", key)
	}
	recvMsg, key := c.Receive.Check(false)
	if recvMsg != "" {
		p.Add(recvMsg, "receive", key)
	}
	// Two media are compared only when each is valid on its own.
	if sendMsg == "" && recvMsg == "" && c.Receive.SameDrop(c.Send) {
		p.Add("must differ from send.dir: each direction has its own medium", "receive", "dir")
	}
	c.validateClients(&p)
	if msg, key := c.Admin.Check(c.Listen); msg != "" {
		p.Add(msg, "admin", key)
	}
	if msg, path := c.Alarms.Check(); msg != "" {
		p.Add(msg, append([]string{"alarms"}, path...)...)
	}
	return p.Err()
}

// validateClients adds the problems of the clients list to p: every
// client's every field, and names or tokens that repeat an earlier
// client's valid one.
func (c *Config) validateClients(p *config.Problems) {
	if len(c.Clients) == 0 {
		p.Add("required: at least one API client", "clients")
		return
	}
	names := map[string]bool{}
	hashes := map[string]bool{}
	for i, cl := range c.Clients {
		idx := strconv.Itoa(i)
		switch {
		case cl.Name == "" || len(cl.Name) > batch.MaxClientName || !printable(cl.Name):
			p.Add(fmt.Sprintf("want 1 to %d printable ASCII characters", batch.MaxClientName), "clients", idx, "name")
		case names[cl.Name]:
			p.Add(fmt.Sprintf("duplicate client name %q", cl.Name), "clients", idx, "name")
		default:
			names[cl.Name] = true
		}
		switch {
		case !validTokenHash(cl.TokenSHA256):
			p.Add("want 64 lowercase hex digits: the SHA-256 of the bearer token", "clients", idx, "token_sha256")
		case hashes[cl.TokenSHA256]:
			p.Add("another client has the same token", "clients", idx, "token_sha256")
		default:
			hashes[cl.TokenSHA256] = true
		}
		for j, op := range cl.Operations {
			if op == "" || len(op) > batch.MaxOpName {
				p.Add("invalid operation name", "clients", idx, "operations", strconv.Itoa(j))
			}
		}
	}
}

func validTokenHash(s string) bool {
	if len(s) != 64 || strings.ToLower(s) != s {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// printable reports whether s is printable ASCII without spaces.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
