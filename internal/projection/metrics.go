package projection

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	batches  *prometheus.CounterVec
	applied  prometheus.Counter
	skipped  prometheus.Counter
	duration prometheus.Histogram
	lag      prometheus.Gauge
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
			Name: "pgjet_projection_events_skipped_total", Help: "Redelivered events skipped because the checkpoint had passed them.", ConstLabels: labels,
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pgjet_projection_batch_duration_seconds", Help: "Time to apply one batch and commit it.", ConstLabels: labels,
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
		}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgjet_projection_lag_seconds", Help: "Age of the last applied event when it was applied.", ConstLabels: labels,
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.batches, m.applied, m.skipped, m.duration, m.lag} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
