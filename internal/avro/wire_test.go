package avro

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWire(t *testing.T) {
	t.Parallel()
	msg := AppendWire(nil, 0x01020304, []byte{0xaa, 0xbb})
	require.Equal(t, []byte{0x00, 0x01, 0x02, 0x03, 0x04, 0xaa, 0xbb}, msg)

	id, payload, err := SplitWire(msg)
	require.NoError(t, err)
	require.Equal(t, uint32(0x01020304), id)
	require.Equal(t, []byte{0xaa, 0xbb}, payload)

	prefix := []byte("hdr")
	msg = AppendWire(prefix, 7, nil)
	require.Equal(t, []byte{'h', 'd', 'r', 0, 0, 0, 0, 7}, msg)
	id, payload, err = SplitWire(msg[3:])
	require.NoError(t, err)
	require.Equal(t, uint32(7), id)
	require.Empty(t, payload)

	id, _, err = SplitWire(AppendWire(nil, 0xffffffff, nil))
	require.NoError(t, err)
	require.Equal(t, uint32(0xffffffff), id)
}

func TestSplitWireRejects(t *testing.T) {
	t.Parallel()
	for _, b := range [][]byte{nil, {}, {0}, {0, 0, 0, 1}, {1, 0, 0, 0, 1}, {0xff, 0, 0, 0, 1, 2}} {
		_, _, err := SplitWire(b)
		require.ErrorIs(t, err, ErrNotWireFormat, "%x", b)
	}
}
