package relay

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A stream whose publish failed is left out of its partition's reads until its retry time,
// which backs off per stream; then it is read again, and a stream that stops failing or
// whose partition is given away is forgotten. At most maxHeld streams are held back.
func TestHeldStreams(t *testing.T) {
	var count int
	h := heldStreams{count: func(n int) { count = n }}
	t0 := time.Unix(1000, 0)
	parts := []int16{3, 4}

	s, ok := h.hold("order-1", 3, t0)
	require.True(t, ok)
	require.Equal(t, minHold, s.hold)
	require.Equal(t, 1, count)
	skipParts, skip, due := h.skip(parts, t0)
	require.Equal(t, []int16{3}, skipParts)
	require.Equal(t, []string{"order-1"}, skip)
	require.Empty(t, due)
	_, skip, _ = h.skip([]int16{4}, t0)
	require.Equal(t, []string{}, skip, "another partition's read leaves out nothing, and says so with an empty array")

	require.Equal(t, t0.Add(minHold), h.next(parts), "the drain of its partition is due at its retry time")
	require.True(t, h.next([]int16{4}).IsZero(), "nothing held back in partition 4")

	_, skip, due = h.skip(parts, t0.Add(minHold))
	require.Empty(t, skip)
	require.Equal(t, []string{"order-1"}, due, "read again at its retry time")
	var holds []time.Duration
	for i := range 5 {
		s, _ := h.hold("order-1", 3, t0.Add(time.Duration(i)*time.Minute))
		holds = append(holds, s.hold)
	}
	require.Equal(t, []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond, 3200 * time.Millisecond}, holds)
	s, _ = h.hold("order-1", 3, t0)
	require.Equal(t, maxHold, s.hold)
	require.Equal(t, 7, h.m["order-1"].failures)
	require.Equal(t, t0, h.m["order-1"].since)

	h.release("order-1")
	require.Zero(t, count)
	_, skip, due = h.skip(parts, t0)
	require.Empty(t, skip)
	require.Empty(t, due)

	for i := range maxHeld {
		_, ok := h.hold(fmt.Sprintf("order-%d", i), int16(i%32), t0)
		require.True(t, ok)
	}
	_, ok = h.hold("order-one-too-many", 0, t0)
	require.False(t, ok, "at most maxHeld streams are held back")
	require.Equal(t, maxHeld, count)
	h.keep([]int16{3})
	require.Equal(t, maxHeld/32+1, count, "streams of partitions given away are forgotten")
	_, skip, _ = h.skip(parts, t0)
	require.Len(t, skip, count)
}
