// Package promtest reads metrics out of a Prometheus registry in tests.
package promtest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Sum gathers g and adds up the series of the metric family name whose labels include
// every name, value pair in labels ("result", "ok", ...): a counter's, gauge's or untyped
// metric's value, a histogram's or summary's sample sum. found reports whether any series
// matched.
func Sum(g prometheus.Gatherer, name string, labels ...string) (total float64, found bool, err error) {
	families, err := g.Gather()
	if err != nil {
		return 0, false, err
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if matches(m, labels) {
				total += value(m)
				found = true
			}
		}
	}
	return total, found, nil
}

// Value is Sum for a test: a failed gather fails t, and no matching series is 0.
func Value(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	v, _, err := Sum(g, name, labels...)
	if err != nil {
		t.Fatalf("promtest: gathering %s: %v", name, err)
	}
	return v
}

// Must is Value that also fails t when no series matches.
func Must(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	v, found, err := Sum(g, name, labels...)
	if err != nil {
		t.Fatalf("promtest: gathering %s: %v", name, err)
	}
	if !found {
		t.Fatalf("promtest: no series %s%v", name, labels)
	}
	return v
}

func matches(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
		}
		if !found {
			return false
		}
	}
	return true
}

func value(m *dto.Metric) float64 {
	return m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue() +
		m.GetHistogram().GetSampleSum() + m.GetSummary().GetSampleSum()
}
