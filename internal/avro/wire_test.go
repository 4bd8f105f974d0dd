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

// EncodeWire and EncodeJSONWire are Encode and EncodeJSON behind the wire header: the same
// bytes, and the same errors, field rules included.
func TestEncodeWireIsEncodeWithTheHeader(t *testing.T) {
	t.Parallel()
	s := orderSchema(t)
	native, err := s.FromJSON([]byte(validOrder))
	require.NoError(t, err)
	plain, err := s.Encode(native)
	require.NoError(t, err)
	wire, err := s.EncodeWire(42, native)
	require.NoError(t, err)
	require.Equal(t, AppendWire(nil, 42, plain), wire)
	wire, err = s.EncodeJSONWire(42, []byte(validOrder))
	require.NoError(t, err)
	require.Equal(t, AppendWire(nil, 42, plain), wire)
	_, err = s.EncodeJSONWire(42, []byte(`{"order_id": 1}`))
	require.ErrorAs(t, err, new(*ValidationError))

	ruled := ruleSchema(t, `{"name":"v","type":"string","maxLength":3}`)
	for _, v := range []string{"abc", "abcd", "äöü", "ä😀üö"} {
		rec := map[string]any{"v": v}
		_, want := ruled.Encode(rec)
		got, err := ruled.EncodeWire(7, rec)
		require.Equal(t, want, err, v)
		require.Equal(t, len([]rune(v)) > 3, err != nil, v)
		if want == nil {
			plain, _ := ruled.Encode(rec)
			require.Equal(t, AppendWire(nil, 7, plain), got)
		}
	}
}
