package registry

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Registration results, the values of pgjet_registry_registrations_total's result label.
const (
	registeredNew          = "created"      // a new version (and maybe a new global id)
	registeredExisting     = "existing"     // the subject already had the schema: nothing written
	registeredIncompatible = "incompatible" // refused by the subject's compatibility level
	registeredInvalid      = "invalid"      // not a valid Avro record schema, or no subject
	registeredError        = "error"        // Postgres failed
)

// Values of pgjet_registry_compatibility_rejections_total's operation label.
const (
	opRegister = "register" // Register refused the schema
	opCheck    = "check"    // CheckCompatibility / CheckCompatibilityWith answered "incompatible"
)

// Values of pgjet_registry_cache_lookups_total's cache label.
const (
	cacheID     = "id"     // schemas by global id (kept for the registry's life)
	cacheLatest = "latest" // a subject's newest version (kept for Config.LatestTTL)
)

// metrics are the registry's Prometheus metrics. No label names a subject: subjects are
// event types, bounded in practice but chosen by whoever registers, so they stay out.
type metrics struct {
	registrations *prometheus.CounterVec
	rejections    *prometheus.CounterVec
	lookups       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgjet_registry_registrations_total",
			Help: "Schema registrations by result: created (a new version), existing (already registered; nothing written), incompatible (refused by the compatibility level), invalid (not a valid schema) or error.",
		}, []string{"result"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgjet_registry_compatibility_rejections_total",
			Help: "Schemas found incompatible with a subject's registered versions, by operation (register: the registration was refused; check: a compatibility check answered no) and the compatibility level in force.",
		}, []string{"operation", "level"}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgjet_registry_cache_lookups_total",
			Help: "Registry cache lookups by cache (id: schemas by global id; latest: a subject's newest version) and result (hit: answered from memory; miss: read from Postgres).",
		}, []string{"cache", "result"}),
	}
	// Every series exists from the start, so rate() and ratios see it before the first event.
	for _, r := range []string{registeredNew, registeredExisting, registeredIncompatible, registeredInvalid, registeredError} {
		m.registrations.WithLabelValues(r)
	}
	for _, op := range []string{opRegister, opCheck} {
		for _, l := range []Compatibility{Backward, BackwardTransitive, Forward, ForwardTransitive, Full, FullTransitive} {
			m.rejections.WithLabelValues(op, string(l))
		}
	}
	for _, c := range []string{cacheID, cacheLatest} {
		m.lookups.WithLabelValues(c, "hit")
		m.lookups.WithLabelValues(c, "miss")
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.registrations, m.rejections, m.lookups} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// registered records one Register call's outcome; created says it wrote a new version.
func (m *metrics) registered(created bool, err error) {
	incompatible, isIncompatible := errors.AsType[*IncompatibleError](err)
	switch {
	case err == nil && created:
		m.registrations.WithLabelValues(registeredNew).Inc()
	case err == nil:
		m.registrations.WithLabelValues(registeredExisting).Inc()
	case isIncompatible:
		m.registrations.WithLabelValues(registeredIncompatible).Inc()
		m.rejected(opRegister, incompatible)
	case errors.Is(err, ErrInvalidSchema), errors.Is(err, ErrSubjectNotFound):
		m.registrations.WithLabelValues(registeredInvalid).Inc()
	default:
		m.registrations.WithLabelValues(registeredError).Inc()
	}
}

// checked records a compatibility check's outcome: only a rejection counts.
func (m *metrics) checked(err error) {
	if incompatible, ok := errors.AsType[*IncompatibleError](err); ok {
		m.rejected(opCheck, incompatible)
	}
}

func (m *metrics) rejected(op string, err *IncompatibleError) {
	m.rejections.WithLabelValues(op, string(err.Level)).Inc()
}

// lookup records one cache lookup.
func (m *metrics) lookup(cache string, hit bool) {
	result := "miss"
	if hit {
		result = "hit"
	}
	m.lookups.WithLabelValues(cache, result).Inc()
}
