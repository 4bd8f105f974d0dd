package avro

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	havro "github.com/hamba/avro/v2"
	"github.com/stretchr/testify/require"
)

// fuzzSchemas are the schemas every fuzz input is tried against.
func fuzzSchemas(f *testing.F) []*Schema {
	return []*Schema{
		orderSchema(f),
		allSchema(f),
		fieldSchema(f, `["null","int","string",{"type":"map","values":["null","double"]},{"type":"array","items":"R"}]`),
		// Local timestamps, which hamba does not handle here (wallclock.go), recursive too.
		fieldSchema(f, `["null",{"type":"long","logicalType":"local-timestamp-micros"},`+
			`{"type":"map","values":{"type":"long","logicalType":"local-timestamp-millis"}},{"type":"array","items":"R"}]`),
	}
}

// FuzzFromJSON: FromJSON never panics, and whatever it accepts encodes,
// decodes to JSON that FromJSON accepts again, and encodes to the same Avro
// bytes (map entries aside, whose order hamba does not fix).
func FuzzFromJSON(f *testing.F) {
	schemas := fuzzSchemas(f)
	for _, seed := range []string{
		validOrder, validAll, `{}`, `null`, `[]`, `{"v":null}`, `{"v":{"int":1}}`, `{"v":"s"}`,
		`{"v":{"a":1.5,"b":null}}`, `{"v":[{"v":[]},{"v":{"map":{}}}]}`, `{"v":{"x":"\ud83d\ude00"}}`,
		// Edges of ranges that hamba/avro would wrap or round when given as Go values.
		`{"v":2147483648}`, `{"v":{"int":-2147483649}}`, `{"v":9007199254740993}`,
		strings.Replace(validAll, `"tsu":1700000000000001`, `"tsu":-9223372036854775808`, 1),
		strings.Replace(validAll, `"date":"1969-12-31"`, `"date":-2147483648`, 1),
		`{"v":"2026-03-29T02:30:00.000001"}`, `{"v":{"map":{"a":"2026-10-25T01:30:00","b":-1}}}`,
		`{"v":{"array":[{"v":"0001-01-01T00:00:00"},{"v":null}]}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, s := range schemas {
			v, err := s.FromJSON(data)
			if err != nil {
				continue
			}
			b1, err := s.Encode(v)
			require.NoError(t, err, "hamba rejected what FromJSON accepted: %#v", v)
			j1, err := s.DecodeJSON(b1)
			require.NoError(t, err)
			v2, err := s.FromJSON(j1)
			require.NoError(t, err, "FromJSON rejected DecodeJSON output %s", j1)
			b2, err := s.Encode(v2)
			require.NoError(t, err)
			j2, err := s.DecodeJSON(b2)
			require.NoError(t, err)
			require.Equal(t, string(j1), string(j2))
			if !hasMultiEntryMap(s.Avro(), v) {
				require.Equal(t, b1, b2, "JSON in between: %s", j1)
			}
		}
	})
}

// FuzzDecode: arbitrary payloads never panic; what decodes renders as JSON.
func FuzzDecode(f *testing.F) {
	schemas := fuzzSchemas(f)
	for _, s := range schemas[:2] {
		in := validOrder
		if s.FullName() == "test.All" {
			in = validAll
		}
		b, err := s.EncodeJSON([]byte(in))
		require.NoError(f, err)
		f.Add(b)
	}
	b, err := schemas[3].EncodeJSON([]byte(`{"v":{"array":[{"v":"2026-03-29T02:30:00.000001"},{"v":{"map":{"a":"2026-10-25T01:30:00"}}}]}}`))
	require.NoError(f, err)
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte{0x02, 0x02, 0x06, 0x00})
	f.Add(appendLong(nil, 1<<40))
	f.Fuzz(func(t *testing.T, payload []byte) {
		for _, s := range schemas {
			v, err := s.Decode(payload)
			if err != nil {
				require.ErrorIs(t, err, ErrInvalidPayload)
				continue
			}
			j, err := s.RenderJSON(v)
			require.NoError(t, err)
			_, err = ResolveDecode(s, s, payload)
			require.NoError(t, err)
			if s.wall == nil {
				continue
			}
			// Local timestamps that Decode gives, Encode takes back to the same wall clocks
			// (upcasters rely on it); Decode reads invalid UTF-8, which Encode refuses.
			b, err := s.encode(v)
			if errors.Is(err, ErrInvalidPayload) && strings.Contains(err.Error(), "UTF-8") {
				continue
			}
			require.NoError(t, err, "decoded %#v", v)
			j2, err := s.DecodeJSON(b)
			require.NoError(t, err)
			require.Equal(t, string(j), string(j2))
		}
	})
}

// FuzzSplitWire: SplitWire never panics and inverts AppendWire.
func FuzzSplitWire(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 1})
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6})
	f.Add([]byte{1, 0, 0, 0, 1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, payload, err := SplitWire(b)
		if err != nil {
			require.ErrorIs(t, err, ErrNotWireFormat)
			require.True(t, len(b) < WireHeaderSize || b[0] != 0)
			return
		}
		require.True(t, bytes.Equal(b, AppendWire(nil, id, payload)))
	})
}

// hasMultiEntryMap reports whether a native value holds an Avro map with more
// than one entry, whose encoding order is then unspecified.
func hasMultiEntryMap(s havro.Schema, v any) bool {
	s = deref(s)
	switch s := s.(type) {
	case *havro.MapSchema:
		m, _ := v.(map[string]any)
		if len(m) > 1 {
			return true
		}
		for _, e := range m {
			if hasMultiEntryMap(s.Values(), e) {
				return true
			}
		}
	case *havro.ArraySchema:
		arr, _ := v.([]any)
		for _, e := range arr {
			if hasMultiEntryMap(s.Items(), e) {
				return true
			}
		}
	case *havro.RecordSchema:
		m, _ := v.(map[string]any)
		for _, f := range s.Fields() {
			if hasMultiEntryMap(f.Type(), m[f.Name()]) {
				return true
			}
		}
	case *havro.UnionSchema:
		if v == nil {
			return false
		}
		if m, ok := v.(map[string]any); ok && len(m) == 1 {
			for name, e := range m {
				if b, i := s.Types().Get(name); i >= 0 {
					return hasMultiEntryMap(b, e)
				}
			}
		}
		if plainUnion(s) {
			if i := plainBranch(s, v); i >= 0 {
				return hasMultiEntryMap(s.Types()[i], v)
			}
		}
	}
	return false
}
