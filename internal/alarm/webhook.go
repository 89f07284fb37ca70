package alarm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/prometheus/client_golang/prometheus"
)

// Event is the body of one webhook delivery: an alarm raised or cleared.
type Event struct {
	// ID is random (16 bytes in hex) and is also the webhook-id header,
	// the same on every retry: receivers use it to drop duplicates.
	ID    string `json:"id"`
	Zone  string `json:"zone"`
	Alarm string `json:"alarm"`
	// Severity is the alarm's severity (the last one, for a cleared alarm).
	Severity Severity `json:"severity"`
	// State is StateRaised or StateCleared.
	State string `json:"state"`
	// Message is the alarm's message; it never holds personal data.
	Message string `json:"message"`
	// Time is when the alarm was raised or cleared.
	Time time.Time `json:"time"`
}

// Webhook defaults that are not in the config.
const (
	// DefaultQueue is how many events wait for delivery at most.
	DefaultQueue = 256
	// DefaultDrain is how long Run goes on delivering what is queued once
	// its context ends.
	DefaultDrain = 2 * time.Second
	// DefaultRetryWaitMin and DefaultRetryWaitMax bound the wait between
	// two attempts (retryablehttp's defaults).
	DefaultRetryWaitMin = 1 * time.Second
	DefaultRetryWaitMax = 30 * time.Second
)

// The outcomes of MetricDeliveries.
const (
	OutcomeDelivered = "delivered"
	OutcomeFailed    = "failed"
	OutcomeDropped   = "dropped"
)

// Webhook posts alarm events, signed, to one URL. Notify queues an event
// and never blocks; Run delivers the queue in order. It is a
// prometheus.Collector of [MetricDeliveries].
type Webhook struct {
	url    string
	secret []byte
	logger *slog.Logger
	client *retryablehttp.Client
	now    func() time.Time
	drain  time.Duration
	max    int

	deliveries *prometheus.CounterVec

	mu       sync.Mutex
	queue    []Event
	dropping bool // a burst of drops is under way (logged once)
	dropped  int  // events dropped in this burst
	wake     chan struct{}
}

// NewWebhook returns a Webhook for cfg, reading its secret from
// cfg.SecretFile (see [ReadSecret]). A zero Timeout or a negative Retries
// takes the default.
//
// Delivery uses retryablehttp with cfg.Retries retries after the first
// attempt, each attempt bounded by cfg.Timeout. It retries on network
// errors, 429 and 5xx except 501 (retryablehttp.DefaultRetryPolicy);
// anything else but 2xx fails at once. The wait between attempts is
// retryablehttp.DefaultBackoff (exponential from 1s, at most 30s, or the
// server's Retry-After on 429 and 503, capped at 30s too) plus up to a
// quarter more at random. Redirects are not followed: a 3xx fails.
func NewWebhook(cfg WebhookConfig, logger *slog.Logger) (*Webhook, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil {
		// The URL may hold a token: it is not repeated in the error.
		return nil, errors.New("webhook: invalid url: want https://host/path without a user or password")
	}
	if cfg.SecretFile == "" {
		return nil, errors.New("webhook: no secret_file")
	}
	secret, err := ReadSecret(cfg.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	timeout := time.Duration(cfg.Timeout)
	if timeout <= 0 {
		timeout = DefaultWebhookTimeout
	}
	retries := cfg.Retries
	if retries < 0 {
		retries = DefaultWebhookRetries
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w := &Webhook{
		url:    cfg.URL,
		secret: secret,
		logger: logger,
		now:    time.Now,
		drain:  DefaultDrain,
		max:    DefaultQueue,
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricDeliveries,
			Help: "Alarm webhook deliveries by outcome.",
		}, []string{"outcome"}),
		wake: make(chan struct{}, 1),
	}
	for _, o := range []string{OutcomeDelivered, OutcomeFailed, OutcomeDropped} {
		w.deliveries.WithLabelValues(o)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	w.client = &retryablehttp.Client{
		HTTPClient: &http.Client{
			Transport: transport,
			Timeout:   timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				// Return the 3xx itself: it is a failure, not retried.
				return http.ErrUseLastResponse
			},
		},
		// No logger: retryablehttp's lines would name the URL, which may
		// hold a token. Run logs failures itself.
		Logger:       nil,
		RetryWaitMin: DefaultRetryWaitMin,
		RetryWaitMax: DefaultRetryWaitMax,
		RetryMax:     retries,
		CheckRetry:   retryablehttp.DefaultRetryPolicy,
		Backoff:      backoff,
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
		PrepareRetry: w.resign,
	}
	return w, nil
}

// backoff is retryablehttp.DefaultBackoff capped at max (a Retry-After
// header can ask for any wait) plus up to a quarter more at random, so
// that agents failing together do not retry together.
func backoff(minWait, maxWait time.Duration, attempt int, resp *http.Response) time.Duration {
	d := min(retryablehttp.DefaultBackoff(minWait, maxWait, attempt, resp), maxWait)
	if d <= 0 {
		return 0
	}
	return d + rand.N(d/4+1)
}

// Notify queues ev for delivery and returns at once. When the queue is
// full the oldest event is dropped and counted; the first drop of a burst
// is logged at WARN, and the burst's count when the queue next empties.
func (w *Webhook) Notify(ev Event) {
	w.mu.Lock()
	first := false
	if len(w.queue) >= w.max {
		w.queue = w.queue[1:]
		w.deliveries.WithLabelValues(OutcomeDropped).Inc()
		w.dropped++
		first = !w.dropping
		w.dropping = true
	}
	w.queue = append(w.queue, ev)
	w.mu.Unlock()
	if first {
		w.logger.Warn("alarm webhook queue full: dropping the oldest events", slog.Int(keyQueue, w.max))
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// pop takes the oldest queued event.
func (w *Webhook) pop() (Event, bool) {
	w.mu.Lock()
	if len(w.queue) == 0 {
		w.mu.Unlock()
		return Event{}, false
	}
	ev := w.queue[0]
	w.queue[0] = Event{}
	w.queue = w.queue[1:]
	var dropped int
	if len(w.queue) == 0 && w.dropping {
		dropped, w.dropping, w.dropped = w.dropped, false, 0
	}
	w.mu.Unlock()
	if dropped > 0 {
		w.logger.Warn("alarm webhook queue drained after dropping events", slog.Int(keyDropped, dropped))
	}
	return ev, true
}

// Run delivers queued events in order until ctx ends. Then it goes on
// delivering what is queued for at most 2 seconds, counts what is left as
// dropped, and returns nil.
func (w *Webhook) Run(ctx context.Context) error {
	// hard ends the deliveries a drain time after ctx.
	hard, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		t := time.NewTimer(w.drain)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			cancelHard()
		}
	}()
	defer func() {
		close(done)
		wg.Wait()
		cancelHard()
	}()

	for ctx.Err() == nil {
		ev, ok := w.pop()
		if !ok {
			select {
			case <-ctx.Done():
			case <-w.wake:
			}
			continue
		}
		w.deliver(hard, ev)
	}
	for hard.Err() == nil {
		ev, ok := w.pop()
		if !ok {
			break
		}
		w.deliver(hard, ev)
	}
	w.mu.Lock()
	left := len(w.queue)
	w.queue = nil
	w.dropping, w.dropped = false, 0
	w.mu.Unlock()
	if left > 0 {
		w.deliveries.WithLabelValues(OutcomeDropped).Add(float64(left))
		w.logger.Warn("alarm webhook stopped with events undelivered", slog.Int(keyDropped, left))
	}
	return nil
}

// deliver posts ev with retries and counts the outcome.
func (w *Webhook) deliver(ctx context.Context, ev Event) {
	status, err := w.post(ctx, ev)
	if status != "" || err != nil {
		w.fail(ev, status, err)
		return
	}
	w.deliveries.WithLabelValues(OutcomeDelivered).Inc()
}

// Send posts ev now, with the config's retries, and returns nil once the
// receiver answered 2xx, or why not (never naming the URL). It counts
// nothing: `ferryctl alarm test` uses it to try a webhook.
func (w *Webhook) Send(ctx context.Context, ev Event) error {
	status, err := w.post(ctx, ev)
	switch {
	case err != nil:
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("alarm webhook: %w", err)
	case status != "":
		return fmt.Errorf("alarm webhook: the receiver answered %s", status)
	}
	return nil
}

// post posts ev with retries; it returns the status of a final answer
// that is not 2xx, or the error that ended the tries.
func (w *Webhook) post(ctx context.Context, ev Event) (string, error) {
	body, err := json.Marshal(ev)
	if err != nil {
		// Cannot happen with Event's field types.
		return "", err
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, w.url, body)
	if err != nil {
		return "", errors.New("cannot build the request")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ferry-alarm")
	req.Header.Set(HeaderID, ev.ID)
	w.sign(req.Request, body)
	resp, err := w.client.Do(req)
	if resp != nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}
	switch {
	case err != nil:
		return "", err
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return resp.Status, nil
	}
	return "", nil
}

// sign sets the timestamp and signature headers of r for this attempt.
func (w *Webhook) sign(r *http.Request, body []byte) { SignRequest(r, w.secret, w.now(), body) }

// resign signs a retry with its own timestamp.
func (w *Webhook) resign(r *http.Request) error { return ResignRetry(r, w.secret, w.now()) }

// fail counts and logs a failed delivery, naming the alarm and the status
// or the error, never the URL (it may hold a token) nor the secret.
func (w *Webhook) fail(ev Event, status string, err error) {
	attrs := []any{slog.String(keyAlarm, ev.Alarm), slog.String(keyEvent, ev.ID)}
	if status != "" {
		attrs = append(attrs, slog.String(keyStatus, status))
	}
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			// Its text would name the URL; keep only the cause.
			err = ue.Err
		}
		attrs = append(attrs, slog.String(keyError, err.Error()))
	}
	w.logger.Warn("alarm webhook delivery failed", attrs...)
	// Counted once logged: whoever watches the counter finds the line.
	w.deliveries.WithLabelValues(OutcomeFailed).Inc()
}

// Describe implements prometheus.Collector.
func (w *Webhook) Describe(ch chan<- *prometheus.Desc) { w.deliveries.Describe(ch) }

// Collect implements prometheus.Collector.
func (w *Webhook) Collect(ch chan<- prometheus.Metric) { w.deliveries.Collect(ch) }

// TestAlarm is the alarm name of the event TestEvent makes.
const TestAlarm = "test"

// TestEvent returns the event `ferryctl alarm test` sends: alarm "test",
// state raised, severity warning, and a message saying no action is
// needed. A receiver may treat it like any other, or drop it by name.
func TestEvent(zone string, now time.Time) Event {
	return Event{ID: newID(), Zone: zone, Alarm: TestAlarm, Severity: Warning, State: StateRaised,
		Message: "a test of the alarm webhook (ferryctl alarm test); no action needed", Time: now.UTC()}
}
