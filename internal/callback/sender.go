package callback

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/ferrybridge/ferry/internal/alarm"
)

const (
	// retryWaitMin and retryWaitMax bound the wait between the quick
	// retries of one delivery; a Retry-After is capped at retryWaitMax.
	retryWaitMin = 500 * time.Millisecond
	retryWaitMax = 30 * time.Second
	// maxResponse is how much of an answer's body is read (and
	// discarded) so that the connection can be reused; a receiver
	// cannot make the agent read more.
	maxResponse = 4 << 10
	// maxResponseHeader bounds an answer's header.
	maxResponseHeader = 64 << 10
	// userAgent is sent with every delivery.
	userAgent = "ferry-dmz-agent"
)

// Log attribute keys.
const (
	keyID      = "webhook_id"
	keyAttempt = "attempt"
	keyStatus  = "status"
	keyError   = "error"
)

// Sender posts deliveries to one client's URL. It is safe for concurrent
// use.
type Sender struct {
	url     string
	secret  []byte
	retries int
	logger  *slog.Logger
	client  *retryablehttp.Client
	now     func() time.Time
}

// New returns a Sender for c once c passes Check, reading its secret
// (0600, see alarm.ReadSecret) and CA file. logger gets a DEBUG line for
// each attempt that is retried (naming the delivery's id, never the URL);
// nil logs nothing.
func New(c Config, logger *slog.Logger) (*Sender, error) {
	if msg, key := c.Check(); msg != "" {
		return nil, fmt.Errorf("callback %s: %s", key, msg)
	}
	return newSender(c, logger)
}

// newSender is New without Check, so that the tests can show that the
// dial-time check refuses what Check would have refused earlier.
func newSender(c Config, logger *slog.Logger) (*Sender, error) {
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
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if !c.AllowPrivate {
		// After resolution, at every connection: a name that resolves
		// to an inner address, now or later, is refused.
		dialer.Control = refusePrivate
	}
	transport := &http.Transport{
		Proxy:                  nil, // never a proxy from the environment
		DialContext:            dialer.DialContext,
		TLSClientConfig:        tlsConf,
		TLSHandshakeTimeout:    timeout,
		ResponseHeaderTimeout:  timeout,
		MaxResponseHeaderBytes: maxResponseHeader,
		DisableCompression:     true, // the answer is discarded
		MaxIdleConnsPerHost:    8,
		IdleConnTimeout:        90 * time.Second,
		ForceAttemptHTTP2:      true,
	}
	s := &Sender{url: c.URL, secret: secret, retries: retries, logger: logger, now: time.Now}
	s.client = &retryablehttp.Client{
		HTTPClient: &http.Client{
			Transport: transport,
			Timeout:   timeout, // each attempt, its body included
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse // a 3xx is answered, not followed
			},
		},
		Logger:       nil, // its lines would name the URL
		RetryWaitMin: retryWaitMin,
		RetryWaitMax: retryWaitMax,
		RetryMax:     retries,
		CheckRetry:   s.checkRetry,
		Backoff:      backoff,
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
		PrepareRetry: s.resign,
	}
	return s, nil
}

// CloseIdleConnections closes the Sender's idle keep-alive connections;
// call it when dropping a Sender (on a config reload, say).
func (s *Sender) CloseIdleConnections() { s.client.HTTPClient.CloseIdleConnections() }

// tries is the state of one Deliver, carried by its request's context to
// checkRetry.
type tries struct {
	id string
	n  int // attempts made
}

type triesKey struct{}

// Deliver posts d, retrying as the package documentation says, each
// attempt within the config's timeout and all of them within ctx. It
// returns nil once the receiver answered 2xx; otherwise an error that
// wraps ErrPermanent if trying again later is useless. The error names
// neither the URL nor the body.
func (s *Sender) Deliver(ctx context.Context, d Delivery) error {
	if err := d.check(); err != nil {
		return err
	}
	t := &tries{id: d.ID}
	req, err := retryablehttp.NewRequestWithContext(context.WithValue(ctx, triesKey{}, t), http.MethodPost, s.url, d.Body)
	if err != nil {
		return fmt.Errorf("%w: cannot build the request", ErrPermanent)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
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
		return fmt.Errorf("%w: %w", ErrPermanent, cause(err))
	case err != nil:
		return fmt.Errorf("callback not delivered after %s: %w", attempts(t.n), cause(err))
	case resp.StatusCode >= 200 && resp.StatusCode <= 299:
		return nil
	case resp.StatusCode >= 300 && resp.StatusCode <= 399:
		return fmt.Errorf("%w: the receiver answered %s; redirects are not followed", ErrPermanent, status(resp))
	case resp.StatusCode >= 400 && resp.StatusCode <= 499 &&
		resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests:
		return fmt.Errorf("%w: the receiver answered %s", ErrPermanent, status(resp))
	}
	return fmt.Errorf("callback not delivered after %s: the receiver answered %s", attempts(t.n), status(resp))
}

// check refuses a delivery that cannot be sent or verified.
func (d Delivery) check() error {
	if d.ID == "" || len(d.ID) > MaxIDLen {
		return fmt.Errorf("%w: the delivery id must be 1 to %d bytes", ErrPermanent, MaxIDLen)
	}
	for i := 0; i < len(d.ID); i++ {
		if c := d.ID[i]; c <= ' ' || c >= 0x7f || c == '.' {
			return fmt.Errorf("%w: the delivery id %q holds a space, a full stop or a byte that is not printable ASCII", ErrPermanent, d.ID)
		}
	}
	if !json.Valid(d.Body) {
		return fmt.Errorf("%w: the delivery's body is not JSON", ErrPermanent)
	}
	return nil
}

// checkRetry decides whether to retry an attempt (retryPolicy), counts
// it, and logs one that will be retried.
func (s *Sender) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	retry, checkErr := retryPolicy(ctx, resp, err)
	t, _ := ctx.Value(triesKey{}).(*tries)
	if t == nil {
		return retry, checkErr
	}
	t.n++
	if retry && checkErr == nil && t.n <= s.retries {
		attrs := []any{slog.String(keyID, t.id), slog.Int(keyAttempt, t.n)}
		if err != nil {
			attrs = append(attrs, slog.String(keyError, cause(err).Error()))
		} else {
			attrs = append(attrs, slog.String(keyStatus, status(resp)))
		}
		s.logger.Debug("callback attempt failed; retrying", attrs...)
	}
	return retry, checkErr
}

// retryPolicy retries what retryablehttp retries by default (network
// errors, 429, 5xx but 501), and 408, and never a refused address.
func retryPolicy(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if errors.Is(err, ErrAddress) {
		return false, nil
	}
	if err == nil && resp.StatusCode == http.StatusRequestTimeout {
		return true, nil
	}
	return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
}

// backoff is retryablehttp's exponential backoff from minWait (or the
// receiver's Retry-After on 429 and 503), capped at maxWait, with up to a
// fifth of jitter so that the retries of many deliveries that failed
// together spread out: added to a Retry-After below the cap (never
// sooner than the receiver asked), taken off otherwise (never beyond the
// cap).
func backoff(minWait, maxWait time.Duration, attempt int, resp *http.Response) time.Duration {
	d := min(retryablehttp.DefaultBackoff(minWait, maxWait, attempt, resp), maxWait)
	if d <= 0 {
		return 0
	}
	j := rand.N(d/5 + 1)
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) &&
		resp.Header.Get("Retry-After") != "" && d < maxWait {
		return min(d+j, maxWait)
	}
	return d - j
}

// sign sets the timestamp and signature headers of r for this attempt.
func (s *Sender) sign(r *http.Request, body []byte) { alarm.SignRequest(r, s.secret, s.now(), body) }

// resign signs a retry with its own timestamp (Standard Webhooks).
func (s *Sender) resign(r *http.Request) error { return alarm.ResignRetry(r, s.secret, s.now()) }

// cause strips the *url.Error of err: its text names the URL, which may
// hold a token.
func cause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// status is an answer's status code and its standard text: not the
// receiver's own reason phrase, which could be anything.
func status(resp *http.Response) string {
	if t := http.StatusText(resp.StatusCode); t != "" {
		return strconv.Itoa(resp.StatusCode) + " " + t
	}
	return strconv.Itoa(resp.StatusCode)
}

// attempts is "1 attempt" or "n attempts".
func attempts(n int) string {
	if n == 1 {
		return "1 attempt"
	}
	return strconv.Itoa(n) + " attempts"
}
