package avro

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckDefaults(t *testing.T) {
	t.Parallel()
	rec := func(field string) string {
		return `{"type":"record","name":"R","namespace":"test","fields":[{"name":"v",` + field + `}]}`
	}
	// Each of these parses, and hamba/avro would write a different value than the default.
	bad := []struct{ field, want string }{
		{`"type":"int","default":1.5`, "not an integer"},
		{`"type":"int","default":3000000000`, "out of range for a 32-bit int"},
		{`"type":"long","default":9007199254740993`, "cannot be held exactly"},
		{`"type":"long","default":9223372036854775807`, "cannot be held exactly"},
		{`"type":"long","default":1e19`, "out of range for a 64-bit long"},
		{`"type":"float","default":1e300`, "out of range for a float"},
		{`"type":["int","null"],"default":2147483648`, "out of range"},
		{`"type":{"type":"fixed","name":"F","size":4},"default":"\u0001"`, "has 1 bytes"},
		{`"type":{"type":"bytes","logicalType":"decimal","precision":2,"scale":1},"default":"\u0001\u0000"`, "more than the precision 2"},
		{`"type":{"type":"string","logicalType":"uuid"},"default":"nope"`, "not a UUID"},
		{`"type":{"type":"int","logicalType":"time-millis"},"default":86400000`, "not a time of day"},
		{`"type":{"type":"long","logicalType":"time-micros"},"default":-1`, "not a time of day"},
		{`"type":{"type":"array","items":"int"},"default":[1,2.5]`, "[1]: is not an integer"},
		{`"type":{"type":"map","values":"long"},"default":{"a":1,"b":9007199254740993}`, `["b"]: cannot be held exactly`},
		{`"type":{"type":"record","name":"In","fields":[{"name":"n","type":"int"}]},"default":{"n":1e10}`, "n: is out of range"},
		// A nested definition's own field defaults are checked too.
		{`"type":{"type":"record","name":"In","fields":[{"name":"n","type":"int","default":0.5}]}`, "field n of test.In"},
		{`"type":["null",{"type":"record","name":"In","fields":[{"name":"n","type":"int","default":0.5}]}]`, "field n of test.In"},
	}
	for _, tt := range bad {
		text := rec(tt.field)
		_, err := Parse(text)
		require.NoError(t, err, "Parse stays lenient so that stored schemas load: %s", tt.field)
		err = CheckDefaults(text)
		require.ErrorContains(t, err, tt.want, tt.field)
	}
	good := []string{
		`"type":"int","default":-2147483648`,
		`"type":"int","default":1e3`,
		`"type":"long","default":9007199254740992`,
		`"type":"long","default":-9223372036854775808`, // -2^63 is a float64
		`"type":"double","default":1e300`,
		`"type":"float","default":1e-50`, // rounds like any float
		`"type":{"type":"fixed","name":"F","size":2},"default":"\u00ff\u0000"`,
		`"type":{"type":"bytes","logicalType":"decimal","precision":2,"scale":1},"default":"\u00ff\u009d"`, // -99
		`"type":{"type":"string","logicalType":"uuid"},"default":"123e4567-e89b-12d3-a456-426614174000"`,
		`"type":{"type":"int","logicalType":"time-millis"},"default":86399999`,
		`"type":["null","int"],"default":null`,
		`"type":{"type":"record","name":"In","fields":[{"name":"n","type":"int","default":1}]},"default":{}`,
	}
	for _, field := range good {
		require.NoError(t, CheckDefaults(rec(field)), field)
	}
	// A record used by name after its definition is checked once, at the definition.
	require.NoError(t, CheckDefaults(`{"type":"record","name":"R","fields":[
		{"name":"a","type":{"type":"record","name":"In","fields":[{"name":"n","type":"int","default":1}]}},
		{"name":"b","type":"In","default":{"n":2}}]}`))
	require.ErrorContains(t, CheckDefaults(`{"type":"record","name":"R","fields":[
		{"name":"a","type":{"type":"record","name":"In","fields":[{"name":"n","type":"int","default":1}]}},
		{"name":"b","type":"In","default":{"n":2.5}}]}`), "field b of R")
}

// TestParseRefusesWhatPanicsTheParser: hamba/avro panics on a default for an empty
// union, directly or inside an array or map; Parse, and so the registry, refuses it.
func TestParseRefusesWhatPanicsTheParser(t *testing.T) {
	t.Parallel()
	for _, field := range []string{
		`"type":[],"default":null`,
		`"type":{"type":"array","items":[]},"default":[1]`,
		`"type":{"type":"map","values":[]},"default":{"a":null}`,
	} {
		text := `{"type":"record","name":"R","fields":[{"name":"v",` + field + `}]}`
		_, err := Parse(text)
		require.ErrorContains(t, err, "empty union", field)
		require.ErrorContains(t, CheckDefaults(text), "empty union", field)
	}
	// An empty union without a default parses: no value fits it, so a record with one
	// cannot be written, but an always-empty array of it can.
	_, err := Parse(`{"type":"record","name":"R","fields":[{"name":"v","type":{"type":"array","items":[]}}]}`)
	require.NoError(t, err)
}

// FuzzCheckDefaults: CheckDefaults never panics on schema text from outside, and a schema
// it passes writes its defaults as given: encoding {} (every field defaulted) and decoding
// again yields JSON that encodes to the same bytes.
func FuzzCheckDefaults(f *testing.F) {
	for _, seed := range []string{
		`{"type":"record","name":"R","fields":[{"name":"v","type":"int","default":3000000000}]}`,
		`{"type":"record","name":"R","fields":[{"name":"v","type":"long","default":9007199254740993}]}`,
		`{"type":"record","name":"R","fields":[{"name":"v","type":["null","R"],"default":null}]}`,
		`{"type":"record","name":"R","fields":[{"name":"v","type":{"type":"map","values":"int"},"default":{"a":1.5}}]}`,
		`{"type":"record","name":"R","fields":[{"name":"v","type":{"type":"fixed","name":"F","size":2},"default":"\u00ff"}]}`,
		`{"type":"record","name":"R","fields":[{"name":"v","type":{"type":"record","name":"In","fields":[{"name":"n","type":"int","default":1}]},"default":{"n":2}}]}`,
		`{"type":"record","name":"R","fields":[{"name":"v","type":[],"default":null}]}`, // panicked hamba/avro
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		if CheckNesting(text) != nil || CheckDefaults(text) != nil {
			return
		}
		s, err := Parse(text)
		require.NoError(t, err)
		b, err := s.EncodeJSON([]byte(`{}`))
		if err != nil {
			return // a field without a default
		}
		j, err := s.DecodeJSON(b)
		require.NoError(t, err)
		b2, err := s.EncodeJSON(j)
		require.NoError(t, err, "defaults rendered as %s", j)
		v, err := s.Decode(b)
		require.NoError(t, err)
		if !hasMultiEntryMap(s.Avro(), v) {
			require.Equal(t, b, b2, "defaults rendered as %s", j)
		}
	})
}
