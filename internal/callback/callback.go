// Package callback delivers request results to a client's callback URL
// from a host that faces the internet, safely.
//
// A delivery is one POST of a JSON body, signed the Standard Webhooks way
// (package alarm's Sign: webhook-id, webhook-timestamp, webhook-signature,
// HMAC-SHA256 with the client's whsec_ secret), with the webhook-id also
// sent as Idempotency-Key so that the receiver can process it once. The
// Sender uses go-retryablehttp: network errors, 408, 429 and 5xx but 501
// are retried a few times with jittered, capped backoff (a Retry-After is
// honoured up to the cap), each retry signed anew with its own timestamp;
// a 3xx is never followed, and it and any other 4xx fail for good
// (ErrPermanent). Any other failure is temporary: the caller keeps the
// delivery in its durable outbox and tries it again later.
//
// The Sender never connects to an address inside the platform unless the
// config allows it (AllowPrivate): the check is made on the address being
// dialled, after name resolution, at every connection, so a DNS name whose
// answer changes cannot turn the agent into a client of the internal
// network (server-side request forgery). Proxies from the environment are
// not used. The URL may hold a token: it is never logged nor put in an
// error, and neither is a body.
//
// Receivers check a callback with Verify. Deliveries are counted by
// outcome in MetricDeliveries (see Metrics).
package callback

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/ferrybridge/ferry/internal/alarm"
	"github.com/ferrybridge/ferry/internal/config"
)

// Defaults and bounds of a Config.
const (
	DefaultTimeout = 10 * time.Second
	DefaultRetries = 3
	MinTimeout     = time.Second
	MaxTimeout     = time.Minute
	MaxRetries     = 10
)

// Config is a client's callback.
//
//	callback:
//	  url: https://portal.example/ferry/results
//	  secret_file: keys/portal-callback.secret   # whsec_…, 0600
//	  allow_private: false   # true: private, loopback, link-local addresses allowed, and http://
//	  ca_file: tls/portal-ca.crt   # optional: a CA for the receiver's certificate
//	  timeout: 10s           # each attempt (1s to 1m)
//	  retries: 3             # quick retries within one delivery (0 to 10)
//
// A zero Timeout means DefaultTimeout and a nil Retries DefaultRetries:
// Retries is a pointer so that "retries: 0" can be told from no retries
// key at all.
type Config struct {
	URL          string          `yaml:"url"`
	SecretFile   string          `yaml:"secret_file"`
	AllowPrivate bool            `yaml:"allow_private"`
	CAFile       string          `yaml:"ca_file"`
	Timeout      config.Duration `yaml:"timeout"`
	Retries      *int            `yaml:"retries"`
}

// Check returns the first problem of c and the key it concerns, or "".
// The URL is not repeated in a message: it may hold a token.
func (c Config) Check() (msg, key string) {
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return "required: the receiver's https:// URL", "url"
	case err != nil || u.Hostname() == "" || u.Opaque != "":
		return "not an absolute URL: want https://host/path", "url"
	case u.User != nil:
		return "must not hold a user or password: authenticate the callbacks by their signature", "url"
	case u.Fragment != "":
		return "must not have a #fragment", "url"
	case u.Scheme == "http" && !c.AllowPrivate:
		return "must be https:// (http:// only with allow_private, for a receiver on the platform's private network)", "url"
	case u.Scheme != "https" && u.Scheme != "http":
		return "must be https://", "url"
	}
	if a, err := netip.ParseAddr(u.Hostname()); err == nil && !c.AllowPrivate && !Public(a) {
		// Refused at every dial anyway; say so now rather than at
		// each delivery.
		return fmt.Sprintf("%s is not a public address: set allow_private for a receiver on the platform's private network", a), "url"
	}
	switch {
	case c.SecretFile == "":
		return "required: the whsec_ secret file that signs the callbacks (ferryctl alarm secret FILE makes one)", "secret_file"
	case c.CAFile != "" && u.Scheme != "https":
		return "needs an https:// url", "ca_file"
	case c.Timeout != 0 && (c.Timeout < config.Duration(MinTimeout) || c.Timeout > config.Duration(MaxTimeout)):
		return "must be between 1s and 1m", "timeout"
	case c.Retries != nil && (*c.Retries < 0 || *c.Retries > MaxRetries):
		return "must be between 0 and 10", "retries"
	}
	return "", ""
}

// Resolve returns c with its files made relative to the directory of the
// config file at configPath.
func (c Config) Resolve(configPath string) Config {
	c.SecretFile = config.Resolve(configPath, c.SecretFile)
	c.CAFile = config.Resolve(configPath, c.CAFile)
	return c
}

// ErrPermanent is wrapped by a failure that trying again will not mend: a
// redirect, a 4xx other than 408 and 429, a refused address, a delivery
// that cannot be sent (an invalid id or body).
var ErrPermanent = errors.New("callback refused for good")

// ErrAddress is wrapped (with ErrPermanent) when the URL's host resolves
// to an address the config does not allow.
var ErrAddress = errors.New("address not allowed for callbacks")

// Delivery is one callback.
type Delivery struct {
	// ID is the idempotency key, the same on every attempt and every
	// later retry of the same delivery: it is sent as webhook-id and
	// Idempotency-Key. It is printable ASCII without spaces, at most
	// MaxIDLen bytes, and holds no full stop (the separator of the
	// signed text, which receivers refuse in an id): the DMZ agent uses
	// "<request id>-<status>".
	ID string
	// Body is the JSON document posted.
	Body []byte
}

// MaxIDLen bounds a Delivery's ID.
const MaxIDLen = 256

// VerifyTolerance is how far a callback's timestamp may be from the
// receiver's clock.
const VerifyTolerance = 5 * time.Minute

// Verify checks a callback's signature headers (webhook-id,
// webhook-timestamp, webhook-signature) against secret and body, with a
// tolerance of VerifyTolerance on its timestamp; see alarm.Verify. The
// error wraps alarm.ErrBadSignature or alarm.ErrTimestamp. A receiver
// should also process each webhook-id once.
func Verify(secret []byte, h http.Header, body []byte, now time.Time) error {
	return alarm.Verify(secret, h, body, now, VerifyTolerance)
}
