package avro

import (
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDecodeJSONOrder(t *testing.T) {
	t.Parallel()
	s := orderSchema(t)
	b, err := s.EncodeJSON([]byte(validOrder))
	require.NoError(t, err)
	j, err := s.DecodeJSON(b)
	require.NoError(t, err)
	require.Equal(t, `{"order_id":"7c9e6679-7425-40de-944b-e07fc1f90ae7",`+
		`"customer":{"id":"c-42","email":"ada@example.com"},`+
		`"items":[{"sku":"BOOK-1","quantity":1,"unit_price":"12.50"},{"sku":"PEN-7","quantity":3,"unit_price":"0.99"}],`+
		`"placed_at":"2024-05-01T12:30:00.25Z","note":"leave at the door","channel":"WEB"}`, string(j))

	b2, err := s.EncodeJSON(j)
	require.NoError(t, err)
	require.Equal(t, b, b2)
}

// JSON -> Avro -> JSON -> Avro gives the same bytes and the same JSON.
func TestJSONRoundTrip(t *testing.T) {
	t.Parallel()
	order, all := orderSchema(t), allSchema(t)
	point := `{"type":"record","name":"Point","fields":[{"name":"x","type":"int"}]}`
	tests := []struct {
		name string
		s    *Schema
		in   string
	}{
		{"order", order, validOrder},
		{"order null note", order, `{"order_id":"7c9e6679-7425-40de-944b-e07fc1f90ae7","customer":{"id":"","email":""},"items":[],"placed_at":-1,"note":null,"channel":"PHONE"}`},
		{"all types", all, validAll},
		{"union wrapped int", fieldSchema(t, `["null","int","string",`+point+`]`), `{"v":{"int":1}}`},
		{"union plain string", fieldSchema(t, `["null","int","string",`+point+`]`), `{"v":"s"}`},
		{"union record", fieldSchema(t, `["null","int","string",`+point+`]`), `{"v":{"x":-1}}`},
		{"union of primitives", fieldSchema(t, `["int","long","double"]`), `{"v":{"long":5}}`},
		{"union logical", fieldSchema(t, `["null","long",{"type":"long","logicalType":"timestamp-micros"}]`), `{"v":"2024-01-01T00:00:00.000001Z"}`},
		{"union same avro name", fieldSchema(t, `["null","long",{"type":"long","logicalType":"timestamp-micros"}]`), `{"v":{"long":1}}`},
		{"nullable array", fieldSchema(t, `["null",{"type":"array","items":"string"}]`), `{"v":["a"]}`},
		{"nullable map", fieldSchema(t, `["null",{"type":"map","values":"string"}]`), `{"v":{"k":"a"}}`},
		{"nullable decimal", fieldSchema(t, `["null",{"type":"bytes","logicalType":"decimal","precision":4,"scale":2}]`), `{"v":"-0.5"}`},
		{"nullable date", fieldSchema(t, `["null",{"type":"int","logicalType":"date"}]`), `{"v":"0001-01-01"}`},
		{"float precision", fieldSchema(t, `"float"`), `{"v":0.1}`},
		{"double precision", fieldSchema(t, `"double"`), `{"v":0.1}`},
		{"double negative zero", fieldSchema(t, `"double"`), `{"v":-0.0}`},
		{"double infinity", fieldSchema(t, `"double"`), `{"v":"Infinity"}`},
		{"float tiny", fieldSchema(t, `"float"`), `{"v":1e-45}`},
		{"timestamp far future", fieldSchema(t, `{"type":"long","logicalType":"timestamp-millis"}`), `{"v":9223372036854775807}`},
		{"timestamp far past", fieldSchema(t, `{"type":"long","logicalType":"timestamp-micros"}`), `{"v":-9223372036854775808}`},
		{"date far future", fieldSchema(t, `{"type":"int","logicalType":"date"}`), `{"v":2147483647}`},
		{"date far past", fieldSchema(t, `{"type":"int","logicalType":"date"}`), `{"v":-2147483648}`},
		{"local timestamp", fieldSchema(t, `{"type":"long","logicalType":"local-timestamp-micros"}`), `{"v":"2024-03-31T02:30:00.000001"}`},
		{"control characters", fieldSchema(t, `"string"`), `{"v":"\u0000\u001f\u007f\n\"\\"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b1, err := tt.s.EncodeJSON([]byte(tt.in))
			require.NoError(t, err)
			j1, err := tt.s.DecodeJSON(b1)
			require.NoError(t, err)
			b2, err := tt.s.EncodeJSON(j1)
			require.NoError(t, err, "DecodeJSON output %s", j1)
			require.Equal(t, b1, b2, "JSON in between: %s", j1)
			j2, err := tt.s.DecodeJSON(b2)
			require.NoError(t, err)
			require.Equal(t, string(j1), string(j2))
		})
	}
}

func TestRenderJSONFormats(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, typ, in, want string
	}{
		{"timestamp-millis truncates", `{"type":"long","logicalType":"timestamp-millis"}`, `"2024-01-01T00:00:00.1239Z"`, `"2024-01-01T00:00:00.123Z"`},
		{"timestamp to UTC", `{"type":"long","logicalType":"timestamp-millis"}`, `"2024-01-01T02:00:00+02:00"`, `"2024-01-01T00:00:00Z"`},
		{"timestamp before 1970", `{"type":"long","logicalType":"timestamp-millis"}`, `-1`, `"1969-12-31T23:59:59.999Z"`},
		{"timestamp-micros", `{"type":"long","logicalType":"timestamp-micros"}`, `"2024-01-01T00:00:00.1234567Z"`, `"2024-01-01T00:00:00.123456Z"`},
		{"timestamp beyond year 9999", `{"type":"long","logicalType":"timestamp-millis"}`, `253402300800000`, `253402300800000`},
		{"date", `{"type":"int","logicalType":"date"}`, `-1`, `"1969-12-31"`},
		{"date beyond year 9999", `{"type":"int","logicalType":"date"}`, `2932897`, `2932897`},
		{"date before year 0", `{"type":"int","logicalType":"date"}`, `-719529`, `-719529`},
		{"time-millis", `{"type":"int","logicalType":"time-millis"}`, `45296789`, `"12:34:56.789"`},
		{"time-micros", `{"type":"long","logicalType":"time-micros"}`, `"01:02:03.4"`, `"01:02:03.400000"`},
		{"decimal scale digits", `{"type":"bytes","logicalType":"decimal","precision":9,"scale":3}`, `-1.5`, `"-1.500"`},
		{"decimal zero scale", `{"type":"bytes","logicalType":"decimal","precision":9,"scale":0}`, `"42"`, `"42"`},
		{"bytes", `"bytes"`, `"AAEC/w=="`, `"AAEC/w=="`},
		{"float", `"float"`, `3.4028235e38`, `3.4028235e+38`},
		{"double NaN", `"double"`, `"NaN"`, `"NaN"`},
		{"string escapes", `"string"`, `"<a href=\"x\">\u2028</a>"`, `"<a href=\"x\">\u2028</a>"`},
		{"union wrapper", `["int","string"]`, `"x"`, `{"string":"x"}`},
		{"union named wrapper", `["int",{"type":"enum","name":"E","symbols":["A"]}]`, `"A"`, `{"test.E":"A"}`},
		{"union logical name", `["long",{"type":"long","logicalType":"timestamp-millis"}]`, `{"long.timestamp-millis":0}`, `{"long.timestamp-millis":"1970-01-01T00:00:00Z"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := fieldSchema(t, tt.typ)
			in := `{"v":` + tt.in + `}`
			b, err := s.EncodeJSON([]byte(in))
			require.NoError(t, err)
			j, err := s.DecodeJSON(b)
			require.NoError(t, err)
			require.Equal(t, `{"v":`+tt.want+`}`, string(j))
		})
	}
}

func TestRenderJSONRejectsForeignValues(t *testing.T) {
	t.Parallel()
	s := fieldSchema(t, `"int"`, `{"name":"u","type":["null","string"]}`)
	for _, v := range []any{
		map[string]any{"v": "1", "u": nil},
		map[string]any{"v": 1},
		map[string]any{"v": 1, "u": 5},
		map[string]any{"v": 1, "u": map[string]any{"long": int64(1)}},
		[]any{},
	} {
		_, err := s.RenderJSON(v)
		require.Error(t, err, "%#v", v)
	}
	j, err := s.RenderJSON(map[string]any{"v": int32(1), "u": map[string]any{"string": "x"}})
	require.NoError(t, err)
	require.Equal(t, `{"v":1,"u":"x"}`, string(j))

	d := fieldSchema(t, `{"type":"bytes","logicalType":"decimal","precision":4,"scale":1}`)
	j, err = d.RenderJSON(map[string]any{"v": big.NewRat(1, 4)})
	require.NoError(t, err)
	require.Equal(t, `{"v":"0.3"}`, string(j), "FloatString rounds values that were not produced by FromJSON")

	ts := fieldSchema(t, `{"type":"long","logicalType":"timestamp-millis"}`)
	_, err = ts.RenderJSON(map[string]any{"v": time.Duration(1)})
	require.Error(t, err)
}
