package avro

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// A payload whose schema id belongs to another type never decodes into the reader's
// shape, even when hamba, which compares short names only, would resolve the two.
func TestResolveDecodeRejectsOtherTypes(t *testing.T) {
	t.Parallel()
	placed, err := Parse(`{"type":"record","name":"shop.order.Placed","fields":[{"name":"id","type":"string"}]}`)
	require.NoError(t, err)
	other, err := Parse(`{"type":"record","name":"shop.payment.Placed","fields":[{"name":"id","type":"string"}]}`)
	require.NoError(t, err)
	renamed, err := Parse(`{"type":"record","name":"shop.orders.Placed","aliases":["shop.order.Placed"],
		"fields":[{"name":"id","type":"string"}]}`)
	require.NoError(t, err)
	payload, err := placed.EncodeJSON([]byte(`{"id":"o-1"}`))
	require.NoError(t, err)

	_, err = ResolveDecode(placed, other, payload)
	require.ErrorIs(t, err, ErrIncompatibleSchema)
	require.ErrorContains(t, err, "shop.order.Placed is not of type shop.payment.Placed")
	require.False(t, CanResolve(placed, other))

	v, err := ResolveDecode(placed, renamed, payload)
	require.NoError(t, err, "an alias of the full name makes it a version of the type")
	require.Equal(t, map[string]any{"id": "o-1"}, v)
}

// Encode never writes a string that is not UTF-8, whatever Go value it is given;
// Decode still reads one, so data stored before the check stays readable.
func TestEncodeRejectsInvalidUTF8(t *testing.T) {
	t.Parallel()
	str := fieldSchema(t, `"string"`)
	_, err := str.Encode(map[string]any{"v": "ok\xff"})
	require.ErrorIs(t, err, ErrInvalidPayload)
	require.ErrorContains(t, err, "not valid UTF-8")

	mp := fieldSchema(t, `{"type":"map","values":"int"}`)
	_, err = mp.Encode(map[string]any{"v": map[string]any{"k\xc3": 1}})
	require.ErrorIs(t, err, ErrInvalidPayload, "map keys are strings too")

	raw := fieldSchema(t, `"bytes"`)
	_, err = raw.Encode(map[string]any{"v": []byte{0xff, 0xfe}})
	require.NoError(t, err, "bytes hold any bytes")

	payload := appendLong(nil, 3)
	payload = append(payload, 'a', 'b', 0xff)
	v, err := str.Decode(payload)
	require.NoError(t, err)
	require.Equal(t, "ab\xff", v.(map[string]any)["v"])
	j, err := str.DecodeJSON(payload)
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(j, []byte(`{"v":"ab`)), "%s", j)
}

// The hamba configuration behind every decode caps what a length or count may make it
// allocate, so a hostile payload fails even if it ever reached hamba unchecked.
func TestHambaLimits(t *testing.T) {
	t.Parallel()
	str := fieldSchema(t, `"string"`)
	var v any
	err := api.Unmarshal(str.Avro(), appendLong(nil, MaxBytesSize+1), &v)
	require.ErrorContains(t, err, "size is greater than")

	arr := fieldSchema(t, `{"type":"array","items":"null"}`)
	err = api.Unmarshal(arr.Avro(), appendLong(appendLong(nil, MaxItems+1), 0), &v)
	require.Error(t, err)
}
