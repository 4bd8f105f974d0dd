package relay

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A partition is drained by one worker at a time. A worker given a partition that another
// still drains (the level changed between them) leaves it, and the holder learns at release
// that it must wake the partition's worker. A batch publish that stopped short makes the
// partitions' next drain go one event per stream at a time, whichever worker runs it.
func TestPartitionClaims(t *testing.T) {
	var c partitionClaims
	all := []int16{0, 1, 2, 3}
	held, perStream := c.claim(all) // one worker, no backlog: every partition
	require.Equal(t, all, held)
	require.False(t, perStream)

	got, _ := c.claim([]int16{1, 5}) // worker 1 at the new level
	require.Equal(t, []int16{5}, got, "partition 1 is still drained by the first worker")
	require.Equal(t, []int16{1}, c.release(held, true), "partition 1's new worker must be woken")

	got, perStream = c.claim([]int16{1})
	require.Equal(t, []int16{1}, got, "free once released")
	require.True(t, perStream, "the batch publish of partition 1 stopped short")
	require.Empty(t, c.release(got, false))
	require.Empty(t, c.release([]int16{5}, false))

	got, perStream = c.claim(all)
	require.Equal(t, all, got)
	require.True(t, perStream, "partitions 0, 2 and 3 have not been drained since")
	require.Empty(t, c.release(got, false))
	_, perStream = c.claim(all)
	require.False(t, perStream)
}
