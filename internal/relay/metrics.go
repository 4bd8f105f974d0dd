package relay

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	published   *prometheus.CounterVec
	latency     prometheus.Histogram
	batch       prometheus.Histogram
	owned       prometheus.Gauge
	workers     prometheus.Gauge
	lastPublish prometheus.Gauge
	held        prometheus.Gauge
	atomic      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgjet_relay_published_total",
			Help: "Outbox events published to JetStream, by result: ok, duplicate (already stored; success; batch publishes count these as ok) or error.",
		}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pgjet_relay_publish_duration_seconds",
			Help:    "Time from sending a publish to its JetStream acknowledgement; for a batch publish, from its first message to the batch's acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12),
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pgjet_relay_batch_size",
			Help:    "Outbox rows read per batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 7),
		}),
		owned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgjet_relay_partitions_owned",
			Help: "Outbox partitions this relay owns.",
		}),
		workers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgjet_relay_workers_draining",
			Help: "Workers draining the owned partitions: 1 without a backlog, Config.Workers while batches come back full.",
		}),
		lastPublish: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgjet_relay_last_publish_timestamp_seconds",
			Help: "Unix time of the last acknowledged publish.",
		}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgjet_relay_streams_held_back",
			Help: "Event streams this relay leaves out of its reads after their publish failed, each retried on its own schedule.",
		}),
		atomic: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgjet_relay_atomic_batches_total",
			Help: "Atomic batch publishes (Config.AtomicPublish), by result: stored, or per_stream (not taken, its events published again per stream).",
		}, []string{"result"}),
	}
	// Every result exists from the start, so rate() and alerts see a series before the
	// first failure.
	for _, result := range []string{"ok", "duplicate", "error"} {
		m.published.WithLabelValues(result)
	}
	for _, result := range []string{"stored", "per_stream"} {
		m.atomic.WithLabelValues(result)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.published, m.latency, m.batch, m.owned, m.workers, m.lastPublish, m.held, m.atomic} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// streamInfoTTL is how long one JetStream stream-info answer serves scrapes.
const streamInfoTTL = 2 * time.Second

// StreamCollector exports the state of the JetStream events stream, asked at scrape time
// at most once per 2s: pgjet_jetstream_stream_messages, _bytes, _last_sequence and
// _consumers, labelled with the JetStream stream name (label "jetstream"; "stream" means an
// event stream id in pgjet). A failed ask leaves them out of that scrape.
type StreamCollector struct {
	js   jetstream.JetStream
	name string

	messages, bytes, lastSeq, consumers *prometheus.Desc

	mu   sync.Mutex
	at   time.Time
	info *jetstream.StreamInfo
}

// NewStreamCollector returns a collector of the stream named name.
func NewStreamCollector(js jetstream.JetStream, name string) *StreamCollector {
	d := func(metric, help string) *prometheus.Desc {
		return prometheus.NewDesc("pgjet_jetstream_stream_"+metric, help, nil, prometheus.Labels{"jetstream": name})
	}
	return &StreamCollector{
		js: js, name: name,
		messages:  d("messages", "Messages stored in the JetStream events stream."),
		bytes:     d("bytes", "Bytes stored in the JetStream events stream."),
		lastSeq:   d("last_sequence", "Sequence of the last message stored in the JetStream events stream."),
		consumers: d("consumers", "Consumers of the JetStream events stream."),
	}
}

// Describe implements prometheus.Collector.
func (c *StreamCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.messages
	ch <- c.bytes
	ch <- c.lastSeq
	ch <- c.consumers
}

// Collect implements prometheus.Collector.
func (c *StreamCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.info == nil || time.Since(c.at) > streamInfoTTL {
		// Collect has no context of its own: the scrape is bounded by this timeout alone.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s, err := c.js.Stream(ctx, c.name)
		if err != nil {
			return
		}
		info, err := s.Info(ctx)
		if err != nil {
			return
		}
		c.info, c.at = info, time.Now()
	}
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	g(c.messages, float64(c.info.State.Msgs))
	g(c.bytes, float64(c.info.State.Bytes))
	g(c.lastSeq, float64(c.info.State.LastSeq))
	g(c.consumers, float64(c.info.State.Consumers))
}
