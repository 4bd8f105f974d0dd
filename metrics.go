package pgjet

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// storeMetrics are the append path's Prometheus metrics.
type storeMetrics struct {
	appends    *prometheus.CounterVec
	events     prometheus.Counter
	perAppend  prometheus.Histogram
	duration   prometheus.Histogram
	validation *prometheus.CounterVec

	groupSize      prometheus.Histogram
	groupFallbacks prometheus.Counter
	groupMerged    prometheus.Counter
}

func newStoreMetrics(reg prometheus.Registerer) (*storeMetrics, error) {
	m := &storeMetrics{
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgjet_append_total",
			Help: "Append calls by result: ok, duplicate (idempotent retry), conflict (wrong expected version), invalid (rejected before writing) or error.",
		}, []string{"result"}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgjet_append_events_total",
			Help: "Events written by appends (idempotent retries write none).",
		}),
		perAppend: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pgjet_append_events_per_call",
			Help:    "Events per successful append call.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000},
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pgjet_append_duration_seconds",
			Help:    "Time an append call takes, validation and commit included (AppendTx: without the caller's commit).",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14),
		}),
		validation: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgjet_validation_failures_total",
			Help: "Failing fields of rejected events, by rule (type, required, enum, range, ...).",
		}, []string{"rule"}),
		groupSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pgjet_append_group_size",
			Help:    "Appends committed together by group commit.",
			Buckets: []float64{2, 4, 8, 16, 32, 64, 128, 256},
		}),
		groupFallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgjet_append_group_fallbacks_total",
			Help: "Group commits that failed as a whole and were retried one append at a time.",
		}),
		groupMerged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgjet_append_group_merged_total",
			Help: "Appends that group commit wrote with one statement for many appends (all expecting Any).",
		}),
	}
	// Every result exists from the start, so rate() and the error alert see a series
	// before the first failure: a series born at 1 shows no increase.
	for _, result := range []string{"ok", "duplicate", "conflict", "invalid", "error"} {
		m.appends.WithLabelValues(result)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.appends, m.events, m.perAppend, m.duration, m.validation, m.groupSize, m.groupFallbacks, m.groupMerged} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// observe records one append call's outcome.
func (m *storeMetrics) observe(start time.Time, res AppendResult, err error) {
	m.duration.Observe(time.Since(start).Seconds())
	var verr *ValidationError
	switch {
	case err == nil && res.Duplicate:
		m.appends.WithLabelValues("duplicate").Inc()
	case err == nil:
		m.appends.WithLabelValues("ok").Inc()
		m.events.Add(float64(len(res.EventIDs)))
		m.perAppend.Observe(float64(len(res.EventIDs)))
	case errors.Is(err, ErrWrongExpectedVersion):
		m.appends.WithLabelValues("conflict").Inc()
	case errors.As(err, &verr):
		m.appends.WithLabelValues("invalid").Inc()
		for _, f := range verr.Fields {
			m.validation.WithLabelValues(f.Rule).Inc()
		}
	case errors.Is(err, ErrInvalidAppend), errors.Is(err, ErrInvalidStreamID), errors.Is(err, ErrInvalidEventType),
		errors.Is(err, ErrUnknownEventType), errors.Is(err, ErrTooLarge), errors.Is(err, ErrEventIDReused):
		m.appends.WithLabelValues("invalid").Inc()
	default:
		m.appends.WithLabelValues("error").Inc()
	}
}
