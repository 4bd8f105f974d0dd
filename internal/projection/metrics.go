package projection

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	batches    *prometheus.CounterVec
	applied    prometheus.Counter
	skipped    prometheus.Counter
	resets     prometheus.Counter
	readErrors prometheus.Counter
	duration   prometheus.Histogram
	lag        prometheus.Gauge
	active     prometheus.Gauge
	checkpoint prometheus.Gauge
	pending    *pendingCollector
}

func newMetrics(reg prometheus.Registerer, name string) (*metrics, error) {
	labels := prometheus.Labels{"projection": name}
	m := &metrics{
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgjet_projection_batches_total", Help: "Batches applied, by result (ok, error).", ConstLabels: labels,
		}, []string{"result"}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgjet_projection_events_applied_total", Help: "Events applied to the read model.", ConstLabels: labels,
		}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgjet_projection_events_skipped_total", Help: "Events delivered again after the checkpoint had passed them (another instance applied them first), skipped.", ConstLabels: labels,
		}),
		resets: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgjet_projection_resets_total", Help: "Times the projector re-created its consumer at the checkpoint: after a failed batch, a delivery lost in flight (a dropped connection, a server restart) or a lost consumer.", ConstLabels: labels,
		}),
		readErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgjet_projection_read_errors_total", Help: "Failed reads of the projection's events from JetStream (a fetch, or re-creating the consumer at the checkpoint), each followed by a back-off while the projector keeps its lock.", ConstLabels: labels,
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pgjet_projection_batch_duration_seconds", Help: "Time to apply one batch and commit it.", ConstLabels: labels,
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
		}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgjet_projection_lag_seconds", Help: "Age of the last applied event when it was applied; 0 once a pull finds nothing waiting.", ConstLabels: labels,
		}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgjet_projection_active", Help: "1 while this projector is the projection's active instance, 0 while it stands by.", ConstLabels: labels,
		}),
		checkpoint: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgjet_projection_checkpoint_sequence", Help: "JetStream stream sequence of the last applied event.", ConstLabels: labels,
		}),
		pending: newPendingCollector(labels),
	}
	for _, result := range []string{"ok", "error"} {
		m.batches.WithLabelValues(result)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.batches, m.applied, m.skipped, m.resets, m.readErrors, m.duration, m.lag, m.active, m.checkpoint, m.pending} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// pendingTTL is how long a consumer-info answer serves scrapes.
const pendingTTL = 2 * time.Second

// pendingCollector exports pgjet_projection_lag_events: the events the consumer has not yet
// delivered, from JetStream consumer info, asked
// at scrape time at most once per pendingTTL. Without a consumer (standing by) it exports
// nothing.
type pendingCollector struct {
	desc *prometheus.Desc

	mu    sync.Mutex
	cons  consumerInfo
	at    time.Time
	value float64
	ok    bool
}

func newPendingCollector(labels prometheus.Labels) *pendingCollector {
	return &pendingCollector{desc: prometheus.NewDesc("pgjet_projection_lag_events",
		"Events in the stream the projection has not fetched yet (consumer pending), refreshed at most every 2s.", nil, labels)}
}

// consumerInfo is what the collector asks: a *subscription.Cursor.
type consumerInfo interface {
	Info(ctx context.Context) (*jetstream.ConsumerInfo, error)
}

// setConsumer sets the consumer to ask, or nil while standing by.
func (c *pendingCollector) setConsumer(cons consumerInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cons, c.ok = cons, false
}

// Describe implements prometheus.Collector.
func (c *pendingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *pendingCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cons == nil {
		return
	}
	if !c.ok || time.Since(c.at) > pendingTTL {
		// Collect has no context of its own: the scrape is bounded by this timeout alone.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		info, err := c.cons.Info(ctx)
		cancel()
		if err != nil {
			if !c.ok {
				return
			}
		} else {
			c.value, c.at, c.ok = float64(info.NumPending), time.Now(), true
		}
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, c.value)
}
