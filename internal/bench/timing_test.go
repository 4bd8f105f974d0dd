package bench

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func ms1to(n int) []time.Duration {
	d := make([]time.Duration, n)
	for i := range d {
		d[len(d)-1-i] = time.Duration(i+1) * time.Millisecond // descending: quantile sorts
	}
	return d
}

func TestQuantileIsTheNearestRank(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n    int
		q    float64
		want time.Duration
	}{
		{100, 0.99, 99 * time.Millisecond}, // not the largest of 100
		{100, 0.5, 50 * time.Millisecond},  // the 50th, not the 51st
		{4, 0.5, 2 * time.Millisecond},
		{3, 0.5, 2 * time.Millisecond},
		{2, 0.5, 1 * time.Millisecond},
		{1000, 0.99, 990 * time.Millisecond},
		{15001, 0.99, 14851 * time.Millisecond}, // ceil(14850.99)
		{100, 0.07, 7 * time.Millisecond},       // 0.07*100 is 7.000000000000001 in floating point
		{100, 0.57, 57 * time.Millisecond},      // and 0.57*100 is 56.99999999999999
	} {
		got, err := quantile(ms1to(tc.n), tc.q)
		require.NoError(t, err, "n %d q %g", tc.n, tc.q)
		require.Equal(t, tc.want, got, "n %d q %g", tc.n, tc.q)
	}
}

func TestQuantileRefusesTooFewSamples(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n int
		q float64
	}{{99, 0.99}, {0, 0.99}, {1, 0.5}, {0, 0.5}, {999, 0.999}} {
		_, err := quantile(ms1to(tc.n), tc.q)
		require.ErrorContains(t, err, "too few", "n %d q %g", tc.n, tc.q)
	}
	_, err := quantile(ms1to(10), 1)
	require.Error(t, err)
}

// An event delivered and projected before its appender saw the append return is in the
// sample (at 0), not left out; a redelivery does not count again; an event not yet
// delivered or projected is missing, not left out of the percentiles silently; ids that
// were not measured (the warm-up's) are not recorded.
func TestTimings(t *testing.T) {
	t.Parallel()
	at := time.Unix(1000, 0)
	tm := newTimings()
	tm.add("early")
	require.True(t, tm.deliveredAt("early", at))
	require.True(t, tm.projectedAt("early", at.Add(time.Millisecond)))
	tm.committedAt("early", at.Add(2*time.Millisecond))

	tm.add("normal")
	tm.committedAt("normal", at)
	tm.deliveredAt("normal", at.Add(3*time.Millisecond))
	tm.deliveredAt("normal", at.Add(30*time.Millisecond)) // redelivered
	tm.projectedAt("normal", at.Add(5*time.Millisecond))

	tm.add("slow")
	tm.committedAt("slow", at)
	tm.deliveredAt("slow", at.Add(time.Millisecond))

	require.False(t, tm.projectedAt("warm-up", at))
	require.Equal(t, 3, tm.count())
	require.Equal(t, 1, tm.pending())

	delivered, projected, missing := tm.samples()
	require.Equal(t, 1, missing)
	require.ElementsMatch(t, []time.Duration{0, 3 * time.Millisecond}, delivered)
	require.ElementsMatch(t, []time.Duration{0, 5 * time.Millisecond}, projected)
}
