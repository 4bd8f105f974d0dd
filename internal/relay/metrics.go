package relay

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	published   *prometheus.CounterVec
	latency     prometheus.Histogram
	batch       prometheus.Histogram
	owned       prometheus.Gauge
	lastPublish prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgjet_relay_published_total",
			Help: "Outbox events published to JetStream, by result: ok, duplicate (already stored; success) or error.",
		}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pgjet_relay_publish_duration_seconds",
			Help:    "Time from sending a publish to its JetStream acknowledgement.",
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
		lastPublish: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgjet_relay_last_publish_timestamp_seconds",
			Help: "Unix time of the last acknowledged publish.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.published, m.latency, m.batch, m.owned, m.lastPublish} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
