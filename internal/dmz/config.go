package dmz

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ferrybridge/ferry/internal/alarm"
	"github.com/ferrybridge/ferry/internal/audit"
	"github.com/ferrybridge/ferry/internal/batch"
	"github.com/ferrybridge/ferry/internal/callback"
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
	// DefaultMaxLongPolls caps the long polls waiting at once.
	DefaultMaxLongPolls = 4096
	// DefaultMaxConnections caps the API's open connections.
	DefaultMaxConnections = 10000
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
//	limits:                     # optional; see LimitsConfig
//	  max_backlog: 100000
//	  max_unacked: 4096
//	  retry_after: 5s
//	  ip_rate: {per_second: 2000, burst: 4000}   # per source address
//	  max_long_polls: 4096
//	  max_connections: 10000
//	  allow: [10.20.0.0/16]     # optional: only these source addresses
//	  block: [10.20.9.0/24]     # optional: never these
//	  trusted_proxies: [10.20.1.5/32]   # optional: whose X-Forwarded-For is believed
//	tls:                        # required unless listen is a loopback address
//	  cert: tls/server.crt
//	  key: tls/server.key       # 0600
//	  client_ca: tls/clients.crt   # optional: verify client certificates
//	clients:
//	  - name: portal
//	    token_sha256: 9f86d0…   # hex SHA-256 of the bearer token
//	    operations: [a, b]      # optional: allow only these operations
//	    rate: {per_second: 1000, burst: 2000}   # optional
//	    tls_name: portal.example   # optional: its certificate's name
//	    callback:               # optional: results POSTed here (package callback)
//	      url: https://portal.example/ferry/results
//	      secret_file: keys/portal-callback.secret   # whsec_…, 0600
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
	TLS            TLSConfig       `yaml:"tls"`
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

	// IPRate is the token bucket of each source address (an IPv6
	// address counts with its whole /64), applied to every /v1/ request
	// before authentication. Zero is no limit.
	IPRate RateConfig `yaml:"ip_rate"`
	// MaxLongPolls caps the GET /v1/requests/{id}?wait= polls waiting at
	// once; one more is answered 429 too_many_waits.
	MaxLongPolls int `yaml:"max_long_polls"`
	// MaxConnections caps the API's open connections; more wait in the
	// kernel's accept queue. Restart-only.
	MaxConnections int `yaml:"max_connections"`
	// Allow, when not empty, is the only source addresses (CIDR) served;
	// Block is addresses never served, even when Allow holds them. Both
	// apply to every path, before anything else (403 ip_forbidden).
	Allow []string `yaml:"allow"`
	Block []string `yaml:"block"`
	// TrustedProxies are the addresses (CIDR) of the reverse proxies in
	// front of the agent. Only a connection from one of them has its
	// X-Forwarded-For believed: the client is then the rightmost address
	// in it that is not itself a trusted proxy. Otherwise the header is
	// ignored, so that a client cannot choose the address it is limited
	// and filtered as.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// RateConfig is a token bucket: PerSecond tokens are added every second,
// up to Burst; each request takes one. A zero PerSecond is no limit.
type RateConfig struct {
	PerSecond float64 `yaml:"per_second" json:"per_second"`
	Burst     int     `yaml:"burst" json:"burst"`
}

// TLSConfig is the API listener's TLS. Cert and Key are PEM files (the
// key 0600); both are read again on reload, so a renewed certificate
// is put in force by SIGHUP. With ClientCA, clients may present a
// certificate, verified against it; a client with a tls_name must.
type TLSConfig struct {
	Cert     string `yaml:"cert"`
	Key      string `yaml:"key"`
	ClientCA string `yaml:"client_ca"`
}

// Enabled reports whether the listener speaks TLS.
func (t TLSConfig) Enabled() bool { return t.Cert != "" || t.Key != "" }

// ClientConfig is one API client.
type ClientConfig struct {
	Name string `yaml:"name"`
	// TokenSHA256 is the hex SHA-256 of the client's bearer token; the
	// token itself is never stored.
	TokenSHA256 string `yaml:"token_sha256"`
	// Operations, when set, is the only operations the client may submit.
	Operations []string `yaml:"operations"`
	// Rate, when set, is the client's own token bucket, applied after
	// authentication to every /v1/ request it makes.
	Rate RateConfig `yaml:"rate"`
	// TLSName, when set, binds the client to a TLS client certificate:
	// its token is accepted only on a connection that presented a
	// certificate verified against tls.client_ca whose DNS name (or,
	// without any, common name) is TLSName.
	TLSName string `yaml:"tls_name"`
	// Callback, when set, is where the client's results are POSTed when
	// each request becomes held and final (package callback).
	Callback *callback.Config `yaml:"callback"`
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
			MaxBacklog:     DefaultMaxBacklog,
			MaxUnacked:     DefaultMaxUnacked,
			RetryAfter:     config.Duration(DefaultRetryAfter),
			MaxLongPolls:   DefaultMaxLongPolls,
			MaxConnections: DefaultMaxConnections,
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
	for _, p := range []*string{&c.Keys, &c.Policy, &c.Spool, &c.AuditLog, &c.Inbox, &c.Quarantine,
		&c.TLS.Cert, &c.TLS.Key, &c.TLS.ClientCA} {
		*p = config.Resolve(path, *p)
	}
	// A directory medium's dir is local; an SFTP drop's dir is on the
	// server and stays as written, while its key files are local.
	c.Send, c.Receive = c.Send.Resolve(path), c.Receive.Resolve(path)
	c.Admin, c.Alarms = c.Admin.Resolve(path), c.Alarms.Resolve(path)
	for i := range c.Clients {
		if cb := c.Clients[i].Callback; cb != nil {
			r := cb.Resolve(path)
			c.Clients[i].Callback = &r
		}
	}
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
		} else if !c.TLS.Enabled() && !loopback(c.Listen) {
			p.Add("plain HTTP is served on a loopback address only: set tls (cert and key) or listen on 127.0.0.1", "listen")
		}
	}
	c.validateEdge(&p)
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
		if msg, key := cl.Rate.check(); msg != "" {
			p.Add(msg, "clients", idx, "rate", key)
		}
		if cl.Callback != nil {
			if msg, key := cl.Callback.Check(); msg != "" {
				p.Add(msg, "clients", idx, "callback", key)
			}
		}
		if cl.TLSName != "" {
			switch {
			case len(cl.TLSName) > 253 || !printable(cl.TLSName):
				p.Add("want a DNS name or common name of printable ASCII", "clients", idx, "tls_name")
			case c.TLS.ClientCA == "":
				p.Add("needs tls.client_ca: the CA client certificates are verified against", "clients", idx, "tls_name")
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

// maxRate bounds per_second and burst: far above what one agent serves,
// low enough that a typo (an extra few zeros) is caught.
const maxRate = 1_000_000

// check returns a problem of a token bucket and the key concerned.
func (r RateConfig) check() (string, string) {
	switch {
	case r.PerSecond < 0 || r.PerSecond > maxRate:
		return fmt.Sprintf("must be between 0 (no limit) and %d", maxRate), "per_second"
	case r.PerSecond == 0 && r.Burst != 0:
		return "needs per_second: a burst without a rate limits nothing", "burst"
	case r.PerSecond > 0 && (r.Burst < 1 || r.Burst > maxRate):
		return fmt.Sprintf("must be between 1 and %d", maxRate), "burst"
	}
	return "", ""
}

// validateEdge adds the problems of the limits that guard the API (rates,
// caps, address lists) and of its TLS to p.
func (c *Config) validateEdge(p *config.Problems) {
	if msg, key := c.Limits.IPRate.check(); msg != "" {
		p.Add(msg, "limits", "ip_rate", key)
	}
	if c.Limits.MaxLongPolls < 1 || c.Limits.MaxLongPolls > 1_000_000 {
		p.Add("must be between 1 and 1000000", "limits", "max_long_polls")
	}
	if c.Limits.MaxConnections < 1 || c.Limits.MaxConnections > 1_000_000 {
		p.Add("must be between 1 and 1000000", "limits", "max_connections")
	}
	for _, l := range []struct {
		key  string
		list []string
	}{{"allow", c.Limits.Allow}, {"block", c.Limits.Block}, {"trusted_proxies", c.Limits.TrustedProxies}} {
		for i, s := range l.list {
			if _, err := parsePrefix(s); err != nil {
				p.Add(err.Error(), "limits", l.key, strconv.Itoa(i))
			}
		}
	}
	t := c.TLS
	switch {
	case t.Cert == "" && t.Key != "":
		p.Add("required with tls.key: the certificate chain's PEM file", "tls", "cert")
	case t.Cert != "" && t.Key == "":
		p.Add("required with tls.cert: the private key's PEM file (0600)", "tls", "key")
	case t.ClientCA != "" && !t.Enabled():
		p.Add("needs tls.cert and tls.key: client certificates are asked for over TLS only", "tls", "client_ca")
	}
}

// parsePrefix parses a CIDR prefix, or a single address as a prefix of
// its full length.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR prefix %q", s)
		}
		if p != p.Masked() {
			return netip.Prefix{}, fmt.Errorf("%q has bits set past its prefix length; did you mean %s?", s, p.Masked())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("invalid address or CIDR prefix %q", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// PublicListener reports whether the API listens on an address other
// than a loopback one.
func (c *Config) PublicListener() bool { return !loopback(c.Listen) }

// loopback reports whether the host of addr (host:port) is a loopback
// address or "localhost".
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}
