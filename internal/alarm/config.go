package alarm

import (
	"fmt"
	"net/url"
	"time"

	"github.com/ferrybridge/ferry/internal/config"
)

// Defaults of a Config.
const (
	DefaultUnacked         = 15 * time.Minute
	DefaultStalled         = 10 * time.Minute
	DefaultBurstWindow     = 10 * time.Minute
	DefaultQuarantineBurst = 5
	DefaultRefusalBurst    = 200
	DefaultHighFrequency   = 120
	DefaultSpoolFull       = 0.8
	DefaultDiskFree        = 0.10
	DefaultKeyMaxAge       = 365 * 24 * time.Hour
	DefaultPolicyMaxAge    = 365 * 24 * time.Hour
	DefaultExpiryWarning   = 30 * 24 * time.Hour
	DefaultWebhookTimeout  = 10 * time.Second
	DefaultWebhookRetries  = 5
)

// Config is the alarms block of an agent config: the thresholds of the
// conditions the agent watches, and where alarms go besides the log and
// the metrics.
//
//	alarms:
//	  unacked: 15m            # oldest unacknowledged envelope older than this
//	  stalled: 10m            # work waiting and nothing moved on a medium for this long
//	  burst_window: 10m       # the window of the two bursts below
//	  quarantine_burst: 5     # this many quarantined envelopes within burst_window
//	  refusal_burst: 200      # this many refused requests within burst_window
//	  high_frequency: 120     # one client, address or subject making this many requests within a minute
//	  spool_full: 0.8         # backlog or unacknowledged window at this fraction of its limit
//	  disk_free: 0.10         # less than this fraction of the state directory's file system free
//	  key_max_age: 365d       # the operating rules' key lifetime: rotate before it ends
//	  policy_max_age: 365d    # the longest a signed policy stays in force unreviewed
//	  expiry_warning: 30d     # warn this long before a key or policy reaches its max age
//	  webhook:                # optional
//	    url: https://alerts.example.gov/ferry
//	    secret_file: keys/webhook.secret   # 0600; signs each body (Standard Webhooks, HMAC-SHA256)
//	    timeout: 10s
//	    retries: 5
//
// A zero value means the default (see DefaultConfig); the peer's silence
// is the agent's own peer_silence.
type Config struct {
	Unacked         config.Duration `yaml:"unacked"`
	Stalled         config.Duration `yaml:"stalled"`
	BurstWindow     config.Duration `yaml:"burst_window"`
	QuarantineBurst int             `yaml:"quarantine_burst"`
	RefusalBurst    int             `yaml:"refusal_burst"`
	HighFrequency   int             `yaml:"high_frequency"`
	SpoolFull       float64         `yaml:"spool_full"`
	DiskFree        float64         `yaml:"disk_free"`
	KeyMaxAge       config.Duration `yaml:"key_max_age"`
	PolicyMaxAge    config.Duration `yaml:"policy_max_age"`
	ExpiryWarning   config.Duration `yaml:"expiry_warning"`
	Webhook         WebhookConfig   `yaml:"webhook"`
}

// WebhookConfig is where alarms are posted. An empty URL means no
// webhook.
type WebhookConfig struct {
	URL        string          `yaml:"url"`
	SecretFile string          `yaml:"secret_file"`
	Timeout    config.Duration `yaml:"timeout"`
	Retries    int             `yaml:"retries"`
}

// DefaultConfig returns the thresholds an agent config starts from.
func DefaultConfig() Config {
	return Config{
		Unacked:         config.Duration(DefaultUnacked),
		Stalled:         config.Duration(DefaultStalled),
		BurstWindow:     config.Duration(DefaultBurstWindow),
		QuarantineBurst: DefaultQuarantineBurst,
		RefusalBurst:    DefaultRefusalBurst,
		HighFrequency:   DefaultHighFrequency,
		SpoolFull:       DefaultSpoolFull,
		DiskFree:        DefaultDiskFree,
		KeyMaxAge:       config.Duration(DefaultKeyMaxAge),
		PolicyMaxAge:    config.Duration(DefaultPolicyMaxAge),
		ExpiryWarning:   config.Duration(DefaultExpiryWarning),
		Webhook: WebhookConfig{
			Timeout: config.Duration(DefaultWebhookTimeout),
			Retries: DefaultWebhookRetries,
		},
	}
}

// Check returns the first problem of c, as a message and the path of the
// field below the alarms block, or "" if there is none.
func (c *Config) Check() (msg string, path []string) {
	minute := config.Duration(time.Minute)
	day := config.Duration(24 * time.Hour)
	switch {
	case c.Unacked < minute:
		return "must be at least 1m", []string{"unacked"}
	case c.Stalled < minute:
		return "must be at least 1m", []string{"stalled"}
	case c.BurstWindow < minute || c.BurstWindow > day:
		return "must be between 1m and 24h", []string{"burst_window"}
	case c.QuarantineBurst < 1:
		return "must be at least 1", []string{"quarantine_burst"}
	case c.RefusalBurst < 1:
		return "must be at least 1", []string{"refusal_burst"}
	case c.HighFrequency < 1:
		return "must be at least 1", []string{"high_frequency"}
	case !(c.SpoolFull > 0 && c.SpoolFull <= 1):
		return "must be above 0 and at most 1", []string{"spool_full"}
	case !(c.DiskFree >= 0 && c.DiskFree < 1):
		return "must be at least 0 and below 1", []string{"disk_free"}
	case c.KeyMaxAge < day:
		return "must be at least 1d", []string{"key_max_age"}
	case c.PolicyMaxAge < day:
		return "must be at least 1d", []string{"policy_max_age"}
	case c.ExpiryWarning < 0 || c.ExpiryWarning >= c.KeyMaxAge || c.ExpiryWarning >= c.PolicyMaxAge:
		return "must be at least 0 and below key_max_age and policy_max_age", []string{"expiry_warning"}
	}
	w := c.Webhook
	if w.URL == "" {
		if w.SecretFile != "" {
			return "needs webhook.url", []string{"webhook", "secret_file"}
		}
		return "", nil
	}
	u, err := url.Parse(w.URL)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return fmt.Sprintf("invalid URL %q: want https://host/path", w.URL), []string{"webhook", "url"}
	case u.User != nil:
		return "must not carry a user or password; the body is signed with secret_file", []string{"webhook", "url"}
	case w.SecretFile == "":
		return "required with webhook.url: the key that signs each alarm", []string{"webhook", "secret_file"}
	case w.Timeout < config.Duration(time.Second) || w.Timeout > config.Duration(5*time.Minute):
		return "must be between 1s and 5m", []string{"webhook", "timeout"}
	case w.Retries < 0 || w.Retries > 20:
		return "must be between 0 and 20", []string{"webhook", "retries"}
	}
	return "", nil
}

// Resolve returns c with its local file names resolved against the
// directory of the config file at cfgPath.
func (c Config) Resolve(cfgPath string) Config {
	if c.Webhook.SecretFile != "" {
		c.Webhook.SecretFile = config.Resolve(cfgPath, c.Webhook.SecretFile)
	}
	return c
}
