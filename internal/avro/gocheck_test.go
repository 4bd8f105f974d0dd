package avro

import (
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestEncodeRefusesWhatHambaWouldChange: Go values that hamba/avro would write as other
// values fail with the rule FromJSON uses for the same JSON, at the same path.
func TestEncodeRefusesWhatHambaWouldChange(t *testing.T) {
	t.Parallel()
	type inner struct {
		Qty int `avro:"qty"`
	}
	type Embedded struct {
		Qty int `avro:"qty"`
	}
	type outer struct {
		Embedded
	}
	type hidden struct {
		Qty int `avro:"qty"`
	}
	type outerHidden struct {
		hidden
	}
	tests := []struct {
		name, typ string
		value     any
		rule      string
		path      string
	}{
		{"int beyond 32 bits", `"int"`, map[string]any{"v": 3000000000}, RuleRange, "v"},
		{"negative int beyond 32 bits", `"int"`, map[string]any{"v": -2147483649}, RuleRange, "v"},
		{"uint beyond 31 bits", `"int"`, map[string]any{"v": uint(1 << 31)}, RuleRange, "v"},
		{"struct int", `{"type":"record","name":"In","fields":[{"name":"qty","type":"int"}]}`,
			map[string]any{"v": inner{Qty: 1 << 40}}, RuleRange, "v.qty"},
		{"embedded struct int", `{"type":"record","name":"In","fields":[{"name":"qty","type":"int"}]}`,
			map[string]any{"v": &outer{Embedded{Qty: -1 << 40}}}, RuleRange, "v.qty"},
		{"unexported embedded struct int", `{"type":"record","name":"In","fields":[{"name":"qty","type":"int"}]}`,
			map[string]any{"v": outerHidden{hidden{Qty: 1 << 40}}}, RuleRange, "v.qty"},
		{"int in array", `{"type":"array","items":"int"}`, map[string]any{"v": []any{1, 1 << 33}}, RuleRange, "v[1]"},
		{"int in map", `{"type":"map","values":"int"}`, map[string]any{"v": map[string]int{"a b": 1 << 33}}, RuleRange, `v["a b"]`},
		{"int in nullable union", `["null","int"]`, map[string]any{"v": 1 << 33}, RuleRange, "v"},
		{"int in wrapped union", `["null","string","int"]`, map[string]any{"v": map[string]any{"int": 1 << 33}}, RuleRange, `v["int"]`},
		{"uuid", `{"type":"string","logicalType":"uuid"}`, map[string]any{"v": "nope"}, RuleUUID, "v"},
		{"time-millis beyond a day", `{"type":"int","logicalType":"time-millis"}`, map[string]any{"v": 30 * 24 * time.Hour}, RuleRange, "v"},
		{"negative time-micros", `{"type":"long","logicalType":"time-micros"}`, map[string]any{"v": -time.Second}, RuleRange, "v"},
		{"date before 1970 at noon", `{"type":"int","logicalType":"date"}`,
			map[string]any{"v": time.Date(1969, 12, 31, 12, 0, 0, 0, time.UTC)}, RuleDate, "v"},
		{"date beyond 32 bits", `{"type":"int","logicalType":"date"}`,
			map[string]any{"v": time.Date(9999999, 1, 1, 0, 0, 0, 0, time.UTC)}, RuleRange, "v"},
		{"timestamp-millis beyond 64 bits", `{"type":"long","logicalType":"timestamp-millis"}`,
			map[string]any{"v": time.Date(300000000, 1, 1, 0, 0, 0, 0, time.UTC)}, RuleRange, "v"},
		{"timestamp-micros beyond 64 bits", `{"type":"long","logicalType":"timestamp-micros"}`,
			map[string]any{"v": time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC)}, RuleRange, "v"},
		{"decimal beyond scale", `{"type":"bytes","logicalType":"decimal","precision":4,"scale":2}`,
			map[string]any{"v": big.NewRat(1, 3)}, RuleDecimal, "v"},
		{"decimal beyond scale, half a cent", `{"type":"bytes","logicalType":"decimal","precision":4,"scale":2}`,
			map[string]any{"v": big.NewRat(1, 1000)}, RuleDecimal, "v"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := fieldSchema(t, tt.typ)
			_, err := s.Encode(tt.value)
			verr := requireValidation(t, err)
			require.Len(t, verr.Fields, 1, "%+v", verr.Fields)
			require.Equal(t, tt.rule, verr.Fields[0].Rule, verr.Fields[0].Message)
			require.Equal(t, tt.path, verr.Fields[0].Path)
			_, err = s.EncodeWire(1, tt.value)
			requireValidation(t, err)
			// Without field rules, still without silent changes (an upcaster's output); a
			// uuid's format is a rule (hamba writes the string as given).
			_, err = s.EncodeWithoutRules(tt.value)
			if tt.rule == RuleUUID {
				require.NoError(t, err)
			} else {
				requireValidation(t, err)
			}
		})
	}
}

// TestEncodeAcceptsWhatHambaKeeps: the edges of those ranges still encode, and decode to
// the same value.
func TestEncodeAcceptsWhatHambaKeeps(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		typ   string
		value any
	}{
		{`"int"`, 2147483647},
		{`"int"`, -2147483648},
		{`"long"`, int64(1 << 62)},
		{`{"type":"string","logicalType":"uuid"}`, "123E4567-e89b-12d3-a456-426614174000"},
		{`{"type":"int","logicalType":"time-millis"}`, 24*time.Hour - time.Millisecond},
		{`{"type":"int","logicalType":"date"}`, time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC)},
		{`{"type":"int","logicalType":"date"}`, time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)},
		{`{"type":"long","logicalType":"timestamp-millis"}`, time.UnixMilli(-1 << 63).UTC()},
		{`{"type":"long","logicalType":"timestamp-millis"}`, time.UnixMilli(1<<63 - 1).UTC()},
		{`{"type":"long","logicalType":"timestamp-micros"}`, time.UnixMicro(-1 << 63).UTC()},
		{`{"type":"long","logicalType":"timestamp-micros"}`, time.UnixMicro(1<<63 - 1).UTC()},
		{`{"type":"bytes","logicalType":"decimal","precision":4,"scale":2}`, big.NewRat(-9999, 100)},
	} {
		s := fieldSchema(t, tt.typ)
		b, err := s.Encode(map[string]any{"v": tt.value})
		require.NoError(t, err, "%s %v", tt.typ, tt.value)
		got, err := s.Decode(b)
		require.NoError(t, err)
		requireNativeEqual(t, map[string]any{"v": tt.value}, got)
	}
}
