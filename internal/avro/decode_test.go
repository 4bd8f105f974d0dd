package avro

import (
	"encoding/binary"
	"math/big"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDecodeRejectsBadLength(t *testing.T) {
	t.Parallel()
	s := orderSchema(t)
	b, err := s.EncodeJSON([]byte(validOrder))
	require.NoError(t, err)

	_, err = s.Decode(append(b[:len(b):len(b)], 0))
	require.ErrorIs(t, err, ErrInvalidPayload)
	require.ErrorContains(t, err, "1 bytes after the end")
	_, err = s.DecodeJSON(append(b[:len(b):len(b)], 0, 0))
	require.ErrorIs(t, err, ErrInvalidPayload)

	for i := range len(b) {
		_, err := s.Decode(b[:i])
		require.ErrorIs(t, err, ErrInvalidPayload, "prefix of %d bytes", i)
	}
}

// appendLong appends a zigzag varint.
func appendLong(b []byte, v int64) []byte {
	return binary.AppendUvarint(b, uint64(v<<1^v>>63))
}

func TestDecodeRejectsInvalidPayloads(t *testing.T) {
	t.Parallel()
	str := fieldSchema(t, `"string"`)
	arr := fieldSchema(t, `{"type":"array","items":"null"}`)
	mp := fieldSchema(t, `{"type":"map","values":"null"}`)
	enum := fieldSchema(t, `{"type":"enum","name":"E","symbols":["A","B"]}`)
	union := fieldSchema(t, `["null","string"]`)
	boolean := fieldSchema(t, `"boolean"`)
	integer := fieldSchema(t, `"int"`)
	long := fieldSchema(t, `"long"`)
	tests := []struct {
		name    string
		s       *Schema
		payload []byte
		wantErr string
	}{
		{"empty", str, nil, "unexpected end"},
		{"negative length", str, appendLong(nil, -1), "negative length"},
		{"length past end", str, appendLong(nil, 10), "unexpected end"},
		{"length over limit", str, appendLong(nil, MaxBytesSize+1), "limit"},
		{"array count over limit", arr, appendLong(nil, MaxItems+1), "item limit"},
		{"array count over budget", arr, appendLong(nil, extraItems+100), "item limit"},
		{"array counts add up", arr, appendLong(appendLong(appendLong(nil, extraItems), extraItems), 0), "item limit"},
		{"array min block count", arr, appendLong(nil, -1<<63), "invalid block count"},
		{"array negative block size", arr, appendLong(appendLong(nil, -1), -1), "negative block size"},
		{"array unterminated", arr, appendLong(nil, 1), "unexpected end"},
		{"map count over budget", mp, appendLong(nil, 1<<40), "item limit"},
		{"map key past end", mp, appendLong(appendLong(nil, 1), 5), "unexpected end"},
		{"enum index", enum, appendLong(nil, 2), "enum index 2"},
		{"enum negative", enum, appendLong(nil, -1), "enum index -1"},
		{"union index", union, appendLong(nil, 2), "union index 2"},
		{"bool byte", boolean, []byte{2}, "invalid boolean"},
		{"int overflow", integer, appendLong(nil, 1<<31), "int overflows"},
		{"int too long", integer, []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, "varint longer"},
		{"long overflow", long, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, "long overflows"},
		{"long too long", long, []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, "long overflows"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := tt.s.Decode(tt.payload)
			require.ErrorIs(t, err, ErrInvalidPayload)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}

	// Within the budget, zero-size items decode.
	v, err := arr.Decode(appendLong(appendLong(nil, 1000), 0))
	require.NoError(t, err)
	require.Len(t, v.(map[string]any)["v"], 1000)
	v, err = arr.Decode(appendLong(appendLong(appendLong(nil, -2), 0), 0))
	require.NoError(t, err, "blocks with a byte size are accepted")
	require.Len(t, v.(map[string]any)["v"], 2)
}

// Recursive data cannot nest deeper than MaxDepth, in JSON or in Avro.
func TestDecodeDepthLimit(t *testing.T) {
	t.Parallel()
	s := fieldSchema(t, `"int"`, `{"name":"next","type":["null","R"]}`)
	chain := func(n int) []byte {
		var b []byte
		for range n {
			b = append(b, 0, 2) // v=0, next: branch 1
		}
		return append(b, 0, 0) // v=0, next: null
	}
	_, err := s.Decode(chain(MaxDepth - 1))
	require.NoError(t, err)
	_, err = s.Decode(chain(MaxDepth))
	require.ErrorIs(t, err, ErrInvalidPayload)
	require.ErrorContains(t, err, "nesting deeper")
	_, err = s.Decode(chain(100_000))
	require.ErrorIs(t, err, ErrInvalidPayload)

	json := func(n int) string {
		return strings.Repeat(`{"v":0,"next":`, n) + `{"v":0,"next":null}` + strings.Repeat("}", n)
	}
	b, err := s.EncodeJSON([]byte(json(MaxDepth - 1)))
	require.NoError(t, err)
	require.Equal(t, chain(MaxDepth-1), b)
	_, err = s.EncodeJSON([]byte(json(MaxDepth)))
	require.ErrorIs(t, err, ErrMalformedJSON)
}

// A payload whose length prefix claims 2^40 bytes fails at once, without
// allocating anything like that. Not parallel: it measures the heap.
func TestDecodeHostileLength(t *testing.T) {
	s := orderSchema(t)
	payload := appendLong(nil, 1<<40) // order_id claims a terabyte
	payload = append(payload, "7c9e6679"...)
	arr := fieldSchema(t, `{"type":"array","items":"long"}`)
	arrPayload := appendLong(nil, 1<<40)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 10 {
		_, err := s.Decode(payload)
		require.ErrorIs(t, err, ErrInvalidPayload)
		_, err = s.DecodeJSON(payload)
		require.ErrorIs(t, err, ErrInvalidPayload)
		_, err = arr.Decode(arrPayload)
		require.ErrorIs(t, err, ErrInvalidPayload)
	}
	runtime.ReadMemStats(&after)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20), "allocated bytes")
}

func TestResolveDecode(t *testing.T) {
	t.Parallel()
	v1, err := Parse(`{"type":"record","name":"shop.Customer","fields":[
		{"name":"id","type":"string"},
		{"name":"visits","type":"int"},
		{"name":"email","type":"string"},
		{"name":"legacy","type":"string"},
		{"name":"tier","type":{"type":"enum","name":"shop.Tier","symbols":["GOLD","SILVER"]}}]}`)
	require.NoError(t, err)
	v2, err := Parse(`{"type":"record","name":"shop.Customer","fields":[
		{"name":"id","type":"string"},
		{"name":"visits","type":"long"},
		{"name":"email_address","type":"string","aliases":["email"]},
		{"name":"tier","type":{"type":"enum","name":"shop.Tier","symbols":["GOLD","SILVER","BRONZE"]}},
		{"name":"country","type":"string","default":"NL"},
		{"name":"nickname","type":["null","string"],"default":null},
		{"name":"since","type":{"type":"long","logicalType":"timestamp-millis"},"default":0}]}`)
	require.NoError(t, err)

	payload, err := v1.EncodeJSON([]byte(`{"id":"c-1","visits":3,"email":"a@b.c","legacy":"x","tier":"SILVER"}`))
	require.NoError(t, err)

	for range 2 { // the second call uses the cached resolution
		got, err := ResolveDecode(v1, v2, payload)
		require.NoError(t, err)
		m := got.(map[string]any)
		require.Equal(t, int64(3), m["visits"], "int promoted to long")
		require.Equal(t, "a@b.c", m["email_address"], "renamed field found by alias")
		require.NotContains(t, m, "legacy", "dropped field skipped")
		require.Equal(t, "NL", m["country"], "new field takes its default")
		require.Contains(t, m, "nickname")
		require.Nil(t, m["nickname"])
		j, err := v2.RenderJSON(got)
		require.NoError(t, err)
		require.Equal(t, `{"id":"c-1","visits":3,"email_address":"a@b.c","tier":"SILVER","country":"NL","nickname":null,"since":"1970-01-01T00:00:00Z"}`, string(j))
	}

	same, err := ResolveDecode(v1, v1, payload)
	require.NoError(t, err)
	direct, err := v1.Decode(payload)
	require.NoError(t, err)
	requireNativeEqual(t, direct, same)

	// Reading new data with the old schema drops what v1 does not know.
	newPayload, err := v2.EncodeJSON([]byte(`{"id":"c-2","visits":1,"email_address":"x@y.z","tier":"GOLD"}`))
	require.NoError(t, err)
	_, err = ResolveDecode(v2, v1, newPayload)
	require.ErrorIs(t, err, ErrIncompatibleSchema, "v1 requires legacy, which v2 lacks")

	// A reader field without a default that the writer lacks is incompatible.
	v3, err := Parse(`{"type":"record","name":"shop.Customer","fields":[
		{"name":"id","type":"string"},{"name":"vip","type":"boolean"}]}`)
	require.NoError(t, err)
	_, err = ResolveDecode(v1, v3, payload)
	require.ErrorIs(t, err, ErrIncompatibleSchema)

	// Pairs hamba's resolution accepts but reads as other values (CheckResolution) are
	// refused: the decimal 12.34 would read as 1.234, a timestamp 1000 times off.
	for _, tt := range []struct {
		writer, reader string
		v              any
	}{
		{`{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}`,
			`{"type":"bytes","logicalType":"decimal","precision":9,"scale":3}`, big.NewRat(1234, 100)},
		{`{"type":"long","logicalType":"timestamp-millis"}`, `{"type":"long","logicalType":"timestamp-micros"}`, time.UnixMilli(1)},
	} {
		w, r := fieldSchema(t, tt.writer), fieldSchema(t, tt.reader)
		p, err := w.Encode(map[string]any{"v": tt.v})
		require.NoError(t, err)
		_, err = ResolveDecode(w, r, p)
		require.ErrorIs(t, err, ErrIncompatibleSchema, tt.reader)
		require.Error(t, Resolvable(w, r))
	}

	// Payload errors are checked against the writer schema.
	_, err = ResolveDecode(v1, v2, payload[:len(payload)-1])
	require.ErrorIs(t, err, ErrInvalidPayload)
	_, err = ResolveDecode(v1, v2, append(payload[:len(payload):len(payload)], 1))
	require.ErrorIs(t, err, ErrInvalidPayload)
}

// A plain type made a union reads old data into the union's shape, the shape Decode gives
// the reader's own data: resolution alone would give the bare record.
func TestResolveDecodeIntoUnion(t *testing.T) {
	t.Parallel()
	v1, err := Parse(`{"type":"record","name":"shop.Order","fields":[
		{"name":"ship_to","type":{"type":"record","name":"shop.Address","fields":[{"name":"city","type":"string"}]}}]}`)
	require.NoError(t, err)
	v2, err := Parse(`{"type":"record","name":"shop.Order","fields":[
		{"name":"ship_to","type":["null",{"type":"record","name":"shop.Address","fields":[{"name":"city","type":"string"}]}],"default":null}]}`)
	require.NoError(t, err)

	old, err := v1.EncodeJSON([]byte(`{"ship_to":{"city":"Ghent"}}`))
	require.NoError(t, err)
	got, err := ResolveDecode(v1, v2, old)
	require.NoError(t, err)
	cur, err := v2.EncodeJSON([]byte(`{"ship_to":{"city":"Ghent"}}`))
	require.NoError(t, err)
	want, err := v2.Decode(cur)
	require.NoError(t, err)
	requireNativeEqual(t, want, got)
	require.Equal(t, map[string]any{"shop.Address": map[string]any{"city": "Ghent"}}, got.(map[string]any)["ship_to"])
}

// hamba caches decoders by a key that leaves out which fields of a resolved record are
// skipped and which take defaults, so reading one writer's data with two readers that
// differ only in that must not share a decoder: here v3 skips f0, and v2 reads it.
func TestResolveDecodeSharesNoDecoderAcrossReaders(t *testing.T) {
	t.Parallel()
	v1, err := Parse(`{"type":"record","name":"t.Shared","fields":[{"name":"f0","type":"string"}]}`)
	require.NoError(t, err)
	v2, err := Parse(`{"type":"record","name":"t.Shared","fields":[{"name":"f0","type":"string"},{"name":"n","type":"int","default":7}]}`)
	require.NoError(t, err)
	v3, err := Parse(`{"type":"record","name":"t.Shared","fields":[{"name":"n","type":"int","default":7}]}`)
	require.NoError(t, err)
	payload, err := v1.EncodeJSON([]byte(`{"f0":"kept"}`))
	require.NoError(t, err)

	got, err := ResolveDecode(v1, v3, payload)
	require.NoError(t, err)
	require.Equal(t, map[string]any{"n": 7}, got)
	got, err = ResolveDecode(v1, v2, payload)
	require.NoError(t, err)
	require.Equal(t, map[string]any{"f0": "kept", "n": 7}, got)
}
