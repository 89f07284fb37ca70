// Package callback delivers request results to a client's callback URL
// from a host that faces the internet, safely.
//
// A delivery is one POST of a JSON body, signed the Standard Webhooks way
// (package alarm's Sign: webhook-id, webhook-timestamp, webhook-signature,
// HMAC-SHA256 with the client's whsec_ secret), with the webhook-id also
// sent as Idempotency-Key so that the receiver can process it once. The
// Sender uses go-retryablehttp: network errors, 429 and 5xx are retried a
// few times with jittered, capped backoff, each retry signed anew; a 3xx
// is never followed, and it and any other 4xx fail for good
// (ErrPermanent).
//
// The Sender never connects to an address inside the platform unless the
// config allows it (AllowPrivate): the check is made on the address being
// dialled, after name resolution, at every connection, so a DNS name whose
// answer changes cannot turn the agent into a client of the internal
// network (server-side request forgery). Proxies from the environment are
// not used. The URL may hold a token: it is never logged.
package callback

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/ferrybridge/ferry/internal/alarm"
	"github.com/ferrybridge/ferry/internal/config"
)

// Defaults of a Config.
const (
	DefaultTimeout = 10 * time.Second
	DefaultRetries = 3
	// retryWaitMin and retryWaitMax bound the wait between the quick
	// retries of one delivery; a Retry-After is capped at retryWaitMax.
	retryWaitMin = 500 * time.Millisecond
	retryWaitMax = 30 * time.Second
	// maxResponse is how much of an answer is read (and discarded).
	maxResponse = 16 << 10
)

// Config is a client's callback.
//
//	callback:
//	  url: https://portal.example/ferry/results
//	  secret_file: keys/portal-callback.secret   # whsec_…, 0600
//	  allow_private: false   # true: private, loopback, link-local addresses allowed, and http://
//	  ca_file: tls/portal-ca.crt   # optional: a CA for the receiver's certificate
//	  timeout: 10s           # each attempt
//	  retries: 3             # quick retries within one delivery
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
func (c Config) Check() (string, string) {
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return "required: the receiver's https:// URL", "url"
	case err != nil || u.Host == "" || u.Opaque != "":
		return "not an absolute URL", "url"
	case u.User != nil:
		return "must not hold a user or password: authenticate the callbacks by their signature", "url"
	case u.Fragment != "":
		return "must not have a #fragment", "url"
	case u.Scheme == "http" && !c.AllowPrivate:
		return "must be https:// (http:// only with allow_private, for a receiver on the platform's private network)", "url"
	case u.Scheme != "https" && u.Scheme != "http":
		return "must be https://", "url"
	case c.SecretFile == "":
		return "required: the whsec_ secret file that signs the callbacks (ferryctl alarm secret FILE makes one)", "secret_file"
	case c.Timeout != 0 && (c.Timeout < config.Duration(time.Second) || c.Timeout > config.Duration(time.Minute)):
		return "must be between 1s and 1m", "timeout"
	case c.Retries != nil && (*c.Retries < 0 || *c.Retries > 10):
		return "must be between 0 and 10", "retries"
	}
	return "", ""
}

// Resolve makes the config's files relative to the config file at path.
func (c Config) Resolve(path string) Config {
	c.SecretFile = config.Resolve(path, c.SecretFile)
	c.CAFile = config.Resolve(path, c.CAFile)
	return c
}

// ErrPermanent is wrapped by a failure that trying again will not mend: a
// redirect, a 4xx other than 408 and 429, a refused address.
var ErrPermanent = errors.New("callback refused for good")

// ErrAddress is wrapped (with ErrPermanent) when the URL's host resolves
// to an address the config does not allow.
var ErrAddress = errors.New("address not allowed for callbacks")

// Delivery is one callback.
type Delivery struct {
	// ID is the idempotency key, the same on every attempt: webhook-id
	// and Idempotency-Key. It must not hold a full stop.
	ID   string
	Body []byte // JSON
}

// Sender posts deliveries to one client's URL.
type Sender struct {
	url    string
	secret []byte
	client *retryablehttp.Client
	now    func() time.Time
}

// New returns a Sender for c, reading its secret (0600, see
// alarm.ReadSecret) and CA file.
func New(c Config, logger *slog.Logger) (*Sender, error) {
	if msg, key := c.Check(); msg != "" {
		return nil, fmt.Errorf("callback %s: %s", key, msg)
	}
	secret, err := alarm.ReadSecret(c.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("callback: %w", err)
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("callback ca_file: %w", err)
		}
		tlsConf.RootCAs = x509.NewCertPool()
		if !tlsConf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("callback ca_file: %s holds no PEM certificate", c.CAFile)
		}
	}
	timeout := time.Duration(c.Timeout)
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	retries := DefaultRetries
	if c.Retries != nil {
		retries = *c.Retries
	}
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if !c.AllowPrivate {
		dialer.Control = refusePrivate
	}
	transport := &http.Transport{
		Proxy:                 nil, // never a proxy from the environment
		DialContext:           dialer.DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	s := &Sender{url: c.URL, secret: secret, now: time.Now}
	s.client = &retryablehttp.Client{
		HTTPClient: &http.Client{
			Transport: transport,
			Timeout:   timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse // a 3xx is answered, not followed
			},
		},
		Logger:       nil, // its lines would name the URL
		RetryWaitMin: retryWaitMin,
		RetryWaitMax: retryWaitMax,
		RetryMax:     retries,
		CheckRetry:   checkRetry,
		Backoff:      backoff,
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
		PrepareRetry: s.resign,
	}
	return s, nil
}

// checkRetry retries what retryablehttp retries by default (network
// errors, 429, 5xx but 501), and 408, and never a refused address.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if errors.Is(err, ErrAddress) {
		return false, nil
	}
	if err == nil && resp.StatusCode == http.StatusRequestTimeout {
		return true, nil
	}
	return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
}

// backoff is retryablehttp's exponential backoff (or the receiver's
// Retry-After), capped at max, less up to a fifth at random so that the
// agents' retries after one outage spread out.
func backoff(minWait, maxWait time.Duration, attempt int, resp *http.Response) time.Duration {
	d := min(retryablehttp.DefaultBackoff(minWait, maxWait, attempt, resp), maxWait)
	if d <= 0 {
		return 0
	}
	return d - time.Duration(time.Now().UnixNano()%int64(d/5+1))
}

// Deliver posts d, retrying as the package documentation says, within
// ctx. It returns nil once the receiver answered 2xx; otherwise an error
// that wraps ErrPermanent if trying again later is useless.
func (s *Sender) Deliver(ctx context.Context, d Delivery) error {
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, s.url, d.Body)
	if err != nil {
		return fmt.Errorf("%w: cannot build the request", ErrPermanent)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ferry-dmz-agent")
	req.Header.Set(alarm.HeaderID, d.ID)
	req.Header.Set("Idempotency-Key", d.ID)
	s.sign(req.Request, d.Body)
	resp, err := s.client.Do(req)
	if resp != nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
		resp.Body.Close()
	}
	switch {
	case errors.Is(err, ErrAddress):
		return fmt.Errorf("%w: %w", ErrPermanent, err)
	case err != nil:
		// url.Error names the URL; keep only what went wrong.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("callback not delivered: %w", err)
	case resp.StatusCode >= 200 && resp.StatusCode <= 299:
		return nil
	case resp.StatusCode >= 300 && resp.StatusCode <= 399:
		return fmt.Errorf("%w: the receiver answered %s; redirects are not followed", ErrPermanent, resp.Status)
	case resp.StatusCode >= 400 && resp.StatusCode <= 499 &&
		resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests:
		return fmt.Errorf("%w: the receiver answered %s", ErrPermanent, resp.Status)
	}
	return fmt.Errorf("callback not delivered: the receiver answered %s", resp.Status)
}

// sign sets the timestamp and signature headers of r for this attempt.
func (s *Sender) sign(r *http.Request, body []byte) {
	now := s.now()
	r.Header.Set(alarm.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	r.Header.Set(alarm.HeaderSignature, alarm.Sign(s.secret, r.Header.Get(alarm.HeaderID), now, body))
}

// resign signs a retry with its own timestamp, as Standard Webhooks asks.
func (s *Sender) resign(r *http.Request) error {
	rc, err := r.GetBody()
	if err != nil {
		return fmt.Errorf("re-sign a retry: %w", err)
	}
	body, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return fmt.Errorf("re-sign a retry: %w", err)
	}
	r.Header = r.Header.Clone() // shared with the last attempt
	s.sign(r, body)
	return nil
}

// refusePrivate is the dialer's Control: it runs with the address about
// to be connected to, after resolution, and refuses one inside the
// platform.
func refusePrivate(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrAddress, address)
	}
	if !Public(ap.Addr()) {
		return fmt.Errorf("%w: %s is not a public address (allow_private allows it)", ErrAddress, ap.Addr())
	}
	return nil
}

// nonPublic are the prefixes Public refuses beyond the ones netip
// classifies: shared address space (carrier-grade NAT), the IETF
// protocol assignments, the documentation and benchmarking ranges, and
// the IPv4/IPv6 translation and 6to4 relay prefixes, through which an
// inner address could be reached.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("2002::/16"),
	netip.MustParsePrefix("100::/64"),
}

// Public reports whether a is a public unicast address: not loopback,
// private (RFC 1918, fc00::/7), link-local (the cloud metadata address
// 169.254.169.254 included), multicast, unspecified, nor one of
// nonPublic's ranges; an IPv4-mapped IPv6 address is judged as its IPv4
// address.
func Public(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() || !a.IsGlobalUnicast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// Verify checks a callback's signature headers against secret and body,
// with a tolerance of 5 minutes on its timestamp (alarm.Verify). A
// receiver should also process each webhook-id once.
func Verify(secret []byte, h http.Header, body []byte, now time.Time) error {
	return alarm.Verify(secret, h, body, now, VerifyTolerance)
}

// VerifyTolerance is how far a callback's timestamp may be from the
// receiver's clock.
const VerifyTolerance = 5 * time.Minute
