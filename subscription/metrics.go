package subscription

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of one subscriber, labelled with its group ("" for ephemeral consumers).
// Subscribers of the same group in one process share the series.
type metrics struct {
	events        *prometheus.CounterVec // by result: handled, skipped, failed, deadlettered, held
	redeliveries  prometheus.Counter
	deadLetters   prometheus.Counter
	missedBeats   prometheus.Counter
	recoveries    prometheus.Counter
	handleSeconds prometheus.Histogram
	lagSeconds    prometheus.Gauge
	pending       prometheus.Gauge
	parked        prometheus.Counter
	partitions    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, group string) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgjet_subscription_events_total",
			Help: "Events delivered to the subscription, by result: handled, skipped (rejected by the predicate or, in a replay, the filters; a repeat; re-driven for another group), failed (naked), deadlettered or held (behind a parked stream).",
		}, []string{"result"}),
		redeliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgjet_subscription_redeliveries_total",
			Help: "Deliveries of events delivered before.",
		}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgjet_subscription_dead_letters_total",
			Help: "Events published to the dead-letter stream.",
		}),
		missedBeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgjet_subscription_missed_heartbeats_total",
			Help: "Pulls whose idle heartbeats stopped arriving.",
		}),
		recoveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgjet_subscription_recoveries_total",
			Help: "Times the subscription re-established its consumer (deleted consumer, server restart, errors).",
		}),
		handleSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pgjet_subscription_handle_seconds",
			Help:    "Time handlers took per event or batch.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}),
		lagSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgjet_subscription_lag_seconds",
			Help: "Age (since its append) of the last handled event.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgjet_subscription_pending_events",
			Help: "Events in the stream the consumer has not delivered yet, as of the last delivery.",
		}),
		parked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgjet_subscription_parked_streams_total",
			Help: "Streams an ordered group parked because one of their events was dead-lettered.",
		}),
		partitions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgjet_subscription_partitions",
			Help: "Partitions of an ordered group owned by the subscribers of this process.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	reg = prometheus.WrapRegistererWith(prometheus.Labels{"group": group}, reg)
	var err error
	m.events = register(reg, m.events, &err)
	m.redeliveries = register(reg, m.redeliveries, &err)
	m.deadLetters = register(reg, m.deadLetters, &err)
	m.missedBeats = register(reg, m.missedBeats, &err)
	m.recoveries = register(reg, m.recoveries, &err)
	m.handleSeconds = register(reg, m.handleSeconds, &err)
	m.lagSeconds = register(reg, m.lagSeconds, &err)
	m.pending = register(reg, m.pending, &err)
	m.parked = register(reg, m.parked, &err)
	m.partitions = register(reg, m.partitions, &err)
	return m, err
}

// register registers c, or returns the collector already registered under its name.
func register[C prometheus.Collector](reg prometheus.Registerer, c C, errp *error) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	if *errp == nil {
		*errp = err
	}
	return c
}
