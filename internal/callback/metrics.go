package callback

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// MetricDeliveries counts deliveries (calls of Deliver, not attempts) by
// outcome: OutcomeDelivered, OutcomeFailed or OutcomeRefused.
const MetricDeliveries = "ferry_callback_deliveries_total"

// The outcomes of a delivery.
const (
	// OutcomeDelivered: the receiver answered 2xx.
	OutcomeDelivered = "delivered"
	// OutcomeFailed: a temporary failure; the delivery is tried again
	// later.
	OutcomeFailed = "failed"
	// OutcomeRefused: a permanent failure (ErrPermanent): a 3xx or 4xx,
	// an address not allowed, an invalid delivery.
	OutcomeRefused = "refused"
)

// Outcome returns the outcome of a delivery that Deliver ended with err.
func Outcome(err error) string {
	switch {
	case err == nil:
		return OutcomeDelivered
	case errors.Is(err, ErrPermanent):
		return OutcomeRefused
	}
	return OutcomeFailed
}

// Metrics counts deliveries in MetricDeliveries. One Metrics serves all
// of an agent's Senders (they come and go with config reloads); it is a
// prometheus.Collector for the agent to register.
type Metrics struct {
	deliveries *prometheus.CounterVec
}

// NewMetrics returns a Metrics with every outcome at zero.
func NewMetrics() *Metrics {
	m := &Metrics{deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricDeliveries,
		Help: "Result callback deliveries by outcome: delivered, failed (tried again later), refused (for good).",
	}, []string{"outcome"})}
	for _, o := range []string{OutcomeDelivered, OutcomeFailed, OutcomeRefused} {
		m.deliveries.WithLabelValues(o)
	}
	return m
}

// Count counts one delivery that Deliver ended with err. A nil Metrics
// counts nothing. A caller that is stopping should not count a delivery
// cut short by its own context.
func (m *Metrics) Count(err error) {
	if m == nil {
		return
	}
	m.deliveries.WithLabelValues(Outcome(err)).Inc()
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { m.deliveries.Describe(ch) }

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) { m.deliveries.Collect(ch) }
