package avro

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// binaryRuleSchemas are schemas whose rules binaryRules checks: rules on numbers of every
// kind, strings, enums, nullable and general unions of them, in nested records, beside
// fields without rules of every shape.
func binaryRuleSchemas(t testing.TB) []*Schema {
	t.Helper()
	var out []*Schema
	for _, fields := range []string{
		`{"name":"i","type":"int","minimum":1,"exclusiveMaximum":100},
		 {"name":"l","type":"long","maximum":10},
		 {"name":"f","type":"float","exclusiveMinimum":0.5},
		 {"name":"d","type":"double","minimum":-1.25,"maximum":1e6},
		 {"name":"s","type":"string","minLength":2,"maxLength":5,"pattern":"^[a-z]+$"},
		 {"name":"e","type":{"type":"enum","name":"E","symbols":["AB","C","DEF"]},"pattern":"^..$"}`,
		`{"name":"id","type":{"type":"string","logicalType":"uuid"},"format":"uuid"},
		 {"name":"mail","type":["null","string"],"format":"email","maxLength":20},
		 {"name":"u","type":["null","int","string","boolean"],"minimum":5,"maxLength":1},
		 {"name":"tags","type":{"type":"array","items":"string"}},
		 {"name":"m","type":{"type":"map","values":["null","long"]}},
		 {"name":"when","type":{"type":"long","logicalType":"timestamp-millis"}},
		 {"name":"n","type":{"type":"record","name":"N","fields":[
			{"name":"uri","type":"string","format":"uri"},
			{"name":"q","type":["int","null"],"maximum":3},
			{"name":"raw","type":"bytes"}]}},
		 {"name":"tail","type":"string","minLength":1}`,
	} {
		s := ruleSchema(t, fields)
		require.True(t, s.binaryRules, fields)
		out = append(out, s)
	}
	return out
}

// binaryRulesApply takes schemas whose rules sit on single values reached through records
// only, and leaves the others to the native walk.
func TestBinaryRulesApply(t *testing.T) {
	t.Parallel()
	binaryRuleSchemas(t)
	for _, fields := range []string{
		`{"name":"a","type":{"type":"array","items":"int"},"minItems":1}`,
		`{"name":"a","type":{"type":"array","items":"string"},"maxLength":2}`,
		`{"name":"m","type":{"type":"map","values":{"type":"record","name":"V","fields":[{"name":"x","type":"int","minimum":0}]}}}`,
		`{"name":"o","type":["null",{"type":"record","name":"O","fields":[{"name":"x","type":"int","minimum":0}]}]}`,
	} {
		require.False(t, ruleSchema(t, fields).binaryRules, fields)
	}
}

// Encode reports the same failures either way, in the same order.
func TestBinaryRulesReportAsTheNativeWalk(t *testing.T) {
	t.Parallel()
	s := binaryRuleSchemas(t)[0]
	b, err := s.encode(map[string]any{"i": 100, "l": int64(11), "f": float32(0.5), "d": -2.0, "s": "ABCDEFG", "e": "C"})
	require.NoError(t, err)
	binErr := s.checkRulesBinary(b)
	decoded, err := s.Decode(b)
	require.NoError(t, err)
	nativeErr := s.checkRules(decoded)
	require.Equal(t, nativeErr, binErr)
	var verr *ValidationError
	require.ErrorAs(t, binErr, &verr)
	var rules []string
	for _, f := range verr.Fields {
		rules = append(rules, f.Path+" "+f.Rule)
	}
	require.Equal(t, []string{"i exclusiveMaximum", "l maximum", "f exclusiveMinimum", "d minimum",
		"s maxLength", "s pattern", "e pattern"}, rules)
}

// FuzzBinaryRulesMatchNative: on any payload checkEncoded accepts, binaryRules reports
// exactly what the native walk reports on the payload decoded.
func FuzzBinaryRulesMatchNative(f *testing.F) {
	schemas := binaryRuleSchemas(f)
	for i, s := range schemas {
		for _, in := range [][]byte{
			[]byte(`{"i":5,"l":3,"f":1.5,"d":0,"s":"abc","e":"AB"}`),
			[]byte(`{"id":"7c9e6679-7425-40de-944b-e07fc1f90ae7","mail":{"string":"a@b.c"},"u":{"int":7},"tags":["x"],"m":{"k":{"long":1}},"when":1,"n":{"uri":"https://x","q":{"int":2},"raw":"\u0001"},"tail":"t"}`),
		} {
			if v, err := s.FromJSON(in); err == nil {
				b, err := s.encode(v)
				require.NoError(f, err)
				f.Add(i, b)
			}
		}
	}
	f.Add(0, []byte{0xc8, 0x01, 0x16, 0, 0, 0, 0x3f, 0, 0, 0, 0, 0, 0, 0xf0, 0xbf, 0x02, 'A', 0x02})
	f.Fuzz(func(t *testing.T, which int, b []byte) {
		if which < 0 {
			which = -which
		}
		s := schemas[which%len(schemas)]
		if checkEncoded(s.avro, b) != nil {
			return
		}
		native, err := s.Decode(b)
		require.NoError(t, err)
		require.Equal(t, s.checkRules(native), s.checkRulesBinary(b))
	})
}
