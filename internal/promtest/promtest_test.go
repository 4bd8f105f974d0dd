package promtest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

func TestSum(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c_total", Help: "c"}, []string{"group", "result"})
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h", Help: "h"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "g", Help: "g"})
	reg.MustRegister(c, h, g)
	c.WithLabelValues("a", "ok").Add(2)
	c.WithLabelValues("a", "error").Add(3)
	c.WithLabelValues("b", "ok").Add(5)
	h.Observe(1.5)
	h.Observe(2)
	g.Set(-4)

	require.Equal(t, 10.0, Value(t, reg, "c_total"))
	require.Equal(t, 7.0, Value(t, reg, "c_total", "result", "ok"))
	require.Equal(t, 3.0, Must(t, reg, "c_total", "group", "a", "result", "error"))
	require.Equal(t, 3.5, Value(t, reg, "h"))
	require.Equal(t, -4.0, Value(t, reg, "g"))
	require.Zero(t, Value(t, reg, "c_total", "group", "c"))
	_, found, err := Sum(reg, "missing")
	require.NoError(t, err)
	require.False(t, found)
}
