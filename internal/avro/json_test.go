package avro

import (
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFromJSONOrder(t *testing.T) {
	t.Parallel()
	s := orderSchema(t)
	v, err := s.FromJSON([]byte(validOrder))
	require.NoError(t, err)
	requireNativeEqual(t, map[string]any{
		"order_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
		"customer": map[string]any{"id": "c-42", "email": "ada@example.com"},
		"items": []any{
			map[string]any{"sku": "BOOK-1", "quantity": 1, "unit_price": big.NewRat(1250, 100)},
			map[string]any{"sku": "PEN-7", "quantity": 3, "unit_price": big.NewRat(99, 100)},
		},
		"placed_at": time.Date(2024, 5, 1, 12, 30, 0, 250e6, time.UTC),
		"note":      "leave at the door",
		"channel":   "WEB",
	}, v)

	// A missing field with a default takes it.
	noNote := strings.Replace(validOrder, `"note": "leave at the door",`, "", 1)
	v, err = s.FromJSON([]byte(noNote))
	require.NoError(t, err)
	m := v.(map[string]any)
	require.Contains(t, m, "note")
	require.Nil(t, m["note"])
}

// oneError runs FromJSON and returns the single field error, or nil.
func fromJSONErrors(t *testing.T, s *Schema, in string) []FieldError {
	t.Helper()
	_, err := s.FromJSON([]byte(in))
	if err == nil {
		return nil
	}
	var verr *ValidationError
	require.ErrorAs(t, err, &verr, "want a *ValidationError, got %v", err)
	require.NotErrorIs(t, err, ErrMalformedJSON)
	return verr.Fields
}

func TestFromJSONRules(t *testing.T) {
	t.Parallel()
	const (
		point    = `{"type":"record","name":"Point","fields":[{"name":"x","type":"int"}]}`
		dec      = `{"type":"bytes","logicalType":"decimal","precision":5,"scale":2}`
		fixedDec = `{"type":"fixed","name":"FD","size":2,"logicalType":"decimal","precision":4,"scale":0}`
	)
	tests := []struct {
		name     string
		typ      string // type of field "v"
		in       string // JSON of field "v"
		wantRule string // "" for success
		wantPath string // defaults to "v"
	}{
		// primitives
		{"null ok", `"null"`, `null`, "", ""},
		{"null wrong", `"null"`, `0`, RuleType, ""},
		{"boolean ok", `"boolean"`, `true`, "", ""},
		{"boolean from string", `"boolean"`, `"true"`, RuleType, ""},
		{"int ok", `"int"`, `-2147483648`, "", ""},
		{"int exponent", `"int"`, `1e3`, "", ""},
		{"int integral fraction", `"int"`, `2.000`, "", ""},
		{"int fraction", `"int"`, `2.5`, RuleType, ""},
		{"int too big", `"int"`, `2147483648`, RuleRange, ""},
		{"int huge exponent", `"int"`, `1e999999999999`, RuleRange, ""},
		{"int tiny exponent", `"int"`, `1e-999999999999`, RuleType, ""},
		{"int zero exponent", `"int"`, `0e999999999999`, "", ""},
		{"int from string", `"int"`, `"1"`, RuleType, ""},
		{"long ok", `"long"`, `9223372036854775807`, "", ""},
		{"long too small", `"long"`, `-9223372036854775809`, RuleRange, ""},
		{"float ok", `"float"`, `3.25`, "", ""},
		{"float too big", `"float"`, `1e39`, RuleRange, ""},
		{"double too big", `"double"`, `1e309`, RuleRange, ""},
		{"double NaN", `"double"`, `"NaN"`, "", ""},
		{"double -Infinity", `"double"`, `"-Infinity"`, "", ""},
		{"double lowercase nan", `"double"`, `"nan"`, RuleType, ""},
		{"double from bool", `"double"`, `false`, RuleType, ""},
		{"string ok", `"string"`, `"x"`, "", ""},
		{"string from number", `"string"`, `1`, RuleType, ""},
		{"bytes ok", `"bytes"`, `"AP8="`, "", ""},
		{"bytes not base64", `"bytes"`, `"***"`, RuleBase64, ""},
		{"bytes unpadded", `"bytes"`, `"AP8"`, RuleBase64, ""},
		{"bytes from array", `"bytes"`, `[0]`, RuleType, ""},
		// named and complex types
		{"fixed ok", `{"type":"fixed","name":"F","size":2}`, `"AP8="`, "", ""},
		{"fixed wrong size", `{"type":"fixed","name":"F","size":4}`, `"AP8="`, RuleFixedSize, ""},
		{"enum ok", `{"type":"enum","name":"E","symbols":["A","B"]}`, `"B"`, "", ""},
		{"enum unknown", `{"type":"enum","name":"E","symbols":["A","B"]}`, `"C"`, RuleEnum, ""},
		{"enum case", `{"type":"enum","name":"E","symbols":["A","B"]}`, `"a"`, RuleEnum, ""},
		{"array ok", `{"type":"array","items":"int"}`, `[1,2]`, "", ""},
		{"array bad item", `{"type":"array","items":"int"}`, `[1,"2"]`, RuleType, "v[1]"},
		{"array from object", `{"type":"array","items":"int"}`, `{}`, RuleType, ""},
		{"map ok", `{"type":"map","values":"long"}`, `{"a":1,"b.c":2}`, "", ""},
		{"map bad value", `{"type":"map","values":"long"}`, `{"a.b":"x"}`, RuleType, `v["a.b"]`},
		{"record ok", point, `{"x":1}`, "", ""},
		{"record missing", point, `{}`, RuleRequired, "v.x"},
		{"record unknown", point, `{"x":1,"y":2}`, RuleUnknownField, "v.y"},
		{"record unknown odd key", point, `{"x":1,"a b":2}`, RuleUnknownField, `v["a b"]`},
		{"record from array", point, `[]`, RuleType, ""},
		// unions
		{"nullable null", `["null","string"]`, `null`, "", ""},
		{"nullable value", `["null","string"]`, `"x"`, "", ""},
		{"nullable reversed", `["string","null"]`, `"x"`, "", ""},
		{"nullable avro-json wrapper", `["null","string"]`, `{"string":"x"}`, "", ""},
		{"nullable wrong type", `["null","string"]`, `1`, RuleType, ""},
		{"nullable record errors propagate", `["null",` + point + `]`, `{"x":"1"}`, RuleType, "v.x"},
		{"union unambiguous int", `["int","string"]`, `5`, "", ""},
		{"union unambiguous string", `["int","string"]`, `"5"`, "", ""},
		{"union no branch", `["int","string"]`, `true`, RuleUnion, ""},
		{"union null not allowed", `["int","string"]`, `null`, RuleUnion, ""},
		{"union ambiguous", `["int","long"]`, `5`, RuleUnion, ""},
		{"union wrapper", `["int","long"]`, `{"long":5}`, "", ""},
		{"union wrapper wrong value", `["int","long"]`, `{"long":"5"}`, RuleType, `v["long"]`},
		{"union wrapper null", `["null","int","long"]`, `{"null":null}`, "", ""},
		{"union record by shape", `["null","int",` + point + `]`, `{"x":1}`, "", ""},
		{"union record short name", `["null","int",` + point + `]`, `{"Point":{"x":1}}`, "", ""},
		{"union record full name", `["null","int",` + point + `]`, `{"test.Point":{"x":1}}`, "", ""},
		{"union record errors propagate", `["null","int",` + point + `]`, `{"x":1.5}`, RuleType, "v.x"},
		{"union record wrapper errors", `["null","int",` + point + `]`, `{"Point":{"x":1,"z":0}}`, RuleUnknownField, `v["Point"].z`},
		{"union enum symbol", `["int",{"type":"enum","name":"E","symbols":["A"]}]`, `"A"`, "", ""},
		{"union enum bad symbol", `["int",{"type":"enum","name":"E","symbols":["A"]}]`, `"B"`, RuleEnum, ""},
		{"union string or enum", `["string",{"type":"enum","name":"E","symbols":["A"]}]`, `"A"`, RuleUnion, ""},
		{"union array", `["null","int",{"type":"array","items":"int"}]`, `[1]`, "", ""},
		{"union logical wrapper", `["null","long",{"type":"long","logicalType":"timestamp-millis"}]`, `{"long.timestamp-millis":"2024-01-01T00:00:00Z"}`, "", ""},
		{"union plain name ambiguous", `["null","long",{"type":"long","logicalType":"timestamp-millis"}]`, `{"long":5}`, "", ""},
		// logical types
		{"uuid ok", `{"type":"string","logicalType":"uuid"}`, `"7C9E6679-7425-40DE-944B-E07FC1F90AE7"`, "", ""},
		{"uuid no hyphens", `{"type":"string","logicalType":"uuid"}`, `"7c9e6679742540de944be07fc1f90ae7"`, RuleUUID, ""},
		{"uuid urn", `{"type":"string","logicalType":"uuid"}`, `"urn:uuid:7c9e6679-7425-40de-944b-e07fc1f90ae7"`, RuleUUID, ""},
		{"uuid not hex", `{"type":"string","logicalType":"uuid"}`, `"7c9e6679-7425-40de-944b-e07fc1f90aeg"`, RuleUUID, ""},
		{"timestamp rfc3339", `{"type":"long","logicalType":"timestamp-millis"}`, `"2024-05-01T12:30:00+02:00"`, "", ""},
		{"timestamp epoch", `{"type":"long","logicalType":"timestamp-millis"}`, `1714559400000`, "", ""},
		{"timestamp negative epoch", `{"type":"long","logicalType":"timestamp-micros"}`, `-1`, "", ""},
		{"timestamp no zone", `{"type":"long","logicalType":"timestamp-millis"}`, `"2024-05-01T12:30:00"`, RuleTimestamp, ""},
		{"timestamp date only", `{"type":"long","logicalType":"timestamp-micros"}`, `"2024-05-01"`, RuleTimestamp, ""},
		{"timestamp fraction", `{"type":"long","logicalType":"timestamp-millis"}`, `1.5`, RuleTimestamp, ""},
		{"timestamp bool", `{"type":"long","logicalType":"timestamp-millis"}`, `true`, RuleType, ""},
		{"local timestamp", `{"type":"long","logicalType":"local-timestamp-millis"}`, `"2024-05-01T12:30:00.5"`, "", ""},
		{"local timestamp with zone", `{"type":"long","logicalType":"local-timestamp-micros"}`, `"2024-05-01T12:30:00Z"`, RuleTimestamp, ""},
		{"date ok", `{"type":"int","logicalType":"date"}`, `"2024-02-29"`, "", ""},
		{"date days", `{"type":"int","logicalType":"date"}`, `-1`, "", ""},
		{"date invalid day", `{"type":"int","logicalType":"date"}`, `"2023-02-29"`, RuleDate, ""},
		{"date with time", `{"type":"int","logicalType":"date"}`, `"2024-02-29T00:00:00Z"`, RuleDate, ""},
		{"date days out of range", `{"type":"int","logicalType":"date"}`, `3000000000`, RuleRange, ""},
		{"time-millis string", `{"type":"int","logicalType":"time-millis"}`, `"23:59:59.999"`, "", ""},
		{"time-millis no fraction", `{"type":"int","logicalType":"time-millis"}`, `"08:00:00"`, "", ""},
		{"time-millis int", `{"type":"int","logicalType":"time-millis"}`, `86399999`, "", ""},
		{"time-millis a day", `{"type":"int","logicalType":"time-millis"}`, `86400000`, RuleRange, ""},
		{"time-millis bad", `{"type":"int","logicalType":"time-millis"}`, `"24:00:00"`, RuleTime, ""},
		{"time-micros int", `{"type":"long","logicalType":"time-micros"}`, `86399999999`, "", ""},
		{"decimal string", dec, `"-123.45"`, "", ""},
		{"decimal number", dec, `123.4`, "", ""},
		{"decimal exponent", dec, `1.2e2`, "", ""},
		{"decimal too many fraction digits", dec, `"1.234"`, RuleDecimal, ""},
		{"decimal too many digits", dec, `1000`, RuleDecimal, ""},
		{"decimal huge exponent", dec, `1e999999999`, RuleDecimal, ""},
		{"decimal not a number", dec, `"12,5"`, RuleDecimal, ""},
		{"decimal bool", dec, `true`, RuleType, ""},
		{"fixed decimal ok", fixedDec, `-9999`, "", ""},
		{"fixed decimal fits", `{"type":"fixed","name":"FD","size":3,"logicalType":"decimal","precision":7,"scale":0}`, `-8388608`, "", ""},
		{"fixed decimal overflow", `{"type":"fixed","name":"FD","size":3,"logicalType":"decimal","precision":7,"scale":0}`, `8388608`, RuleDecimal, ""},
		{"fixed decimal fraction", fixedDec, `"1.5"`, RuleDecimal, ""},
		{"duration ok", `{"type":"fixed","name":"D","size":12,"logicalType":"duration"}`, `{"months":1,"milliseconds":5}`, "", ""},
		{"duration negative", `{"type":"fixed","name":"D","size":12,"logicalType":"duration"}`, `{"days":-1}`, RuleRange, "v.days"},
		{"duration unknown part", `{"type":"fixed","name":"D","size":12,"logicalType":"duration"}`, `{"weeks":1}`, RuleUnknownField, `v["weeks"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := fieldSchema(t, tt.typ)
			in := `{"v":` + tt.in + `}`
			errs := fromJSONErrors(t, s, in)
			if tt.wantRule == "" {
				require.Empty(t, errs)
				// hamba accepts what FromJSON produced, and decodes it to the same value.
				v, err := s.FromJSON([]byte(in))
				require.NoError(t, err)
				b, err := s.Encode(v)
				require.NoError(t, err)
				back, err := s.Decode(b)
				require.NoError(t, err)
				requireNativeEqual(t, v, back)
				return
			}
			wantPath := tt.wantPath
			if wantPath == "" {
				wantPath = "v"
			}
			require.Len(t, errs, 1, "%v", errs)
			require.Equal(t, tt.wantRule, errs[0].Rule, errs[0].Message)
			require.Equal(t, wantPath, errs[0].Path)
			require.NotEmpty(t, errs[0].Message)
		})
	}
}

// Every failing field is reported in one error, in schema order.
func TestFromJSONCollectsAllErrors(t *testing.T) {
	t.Parallel()
	s := orderSchema(t)
	in := `{
	  "order_id": "not-a-uuid",
	  "customer": {"id": "c-42", "nickname": "ada"},
	  "items": [
	    {"sku": "A", "quantity": 1, "unit_price": "1.234"},
	    {"sku": "B", "quantity": 2, "unit_price": "1.00"},
	    {"sku": "C", "quantity": "three", "unit_price": "1.00"},
	    {"sku": "D", "quantity": 99999999999, "unit_price": 1, "colour": "red"}
	  ],
	  "placed_at": "yesterday",
	  "channel": "FAX",
	  "coupon": "X"
	}`
	_, err := s.FromJSON([]byte(in))
	var verr *ValidationError
	require.ErrorAs(t, err, &verr)
	type pr struct{ Path, Rule string }
	var got []pr
	for _, f := range verr.Fields {
		got = append(got, pr{f.Path, f.Rule})
	}
	require.Equal(t, []pr{
		{"order_id", RuleUUID},
		{"customer.email", RuleRequired},
		{"customer.nickname", RuleUnknownField},
		{"items[0].unit_price", RuleDecimal},
		{"items[2].quantity", RuleType},
		{"items[3].quantity", RuleRange},
		{"items[3].colour", RuleUnknownField},
		{"placed_at", RuleTimestamp},
		{"channel", RuleEnum},
		{"coupon", RuleUnknownField},
	}, got)

	msg := err.Error()
	require.Contains(t, msg, "10 errors")
	for _, f := range verr.Fields {
		require.Contains(t, msg, f.Path+" ("+f.Rule+")")
	}
	require.Equal(t, `"three"`, verr.Fields[4].Value)
	require.Equal(t, `"FAX"`, verr.Fields[8].Value)
	require.Empty(t, verr.Fields[1].Value, "a missing field has no value")

	// The root of the document is path "".
	_, err = s.FromJSON([]byte(`[]`))
	require.ErrorAs(t, err, &verr)
	require.Equal(t, []FieldError{{Path: "", Rule: RuleType, Message: "expected record shop.order.OrderPlaced, got array", Value: "[]"}}, verr.Fields)
	require.Contains(t, err.Error(), "(root) (type)")
}

func TestFromJSONValueRendering(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 100)
	s := fieldSchema(t, `"int"`, `{"name":"secret","type":"bytes"}`, `{"name":"h","type":{"type":"fixed","name":"H","size":2}}`)
	errs := fromJSONErrors(t, s, `{"v":"`+long+`","secret":"c2VjcmV0IQ","h":"c2VjcmV0IQ=="}`)
	require.Len(t, errs, 3)
	require.LessOrEqual(t, len(errs[0].Value), maxShownValue+len("…"))
	require.True(t, strings.HasPrefix(errs[0].Value, `"éé`))
	require.True(t, strings.HasSuffix(errs[0].Value, "…"))
	require.Equal(t, RuleBase64, errs[1].Rule)
	require.Empty(t, errs[1].Value, "bytes values are not echoed")
	require.Equal(t, RuleFixedSize, errs[2].Rule)
	require.Empty(t, errs[2].Value, "fixed values are not echoed")
}

func TestFromJSONMalformed(t *testing.T) {
	t.Parallel()
	s := fieldSchema(t, `["null","string",{"type":"array","items":"string"}]`)
	deep := strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1)
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ``},
		{"whitespace", `   `},
		{"syntax", `{"v":}`},
		{"unterminated", `{"v":"x"`},
		{"trailing value", `{"v":"x"} {}`},
		{"trailing garbage", `{"v":"x"}x`},
		{"duplicate key", `{"v":"x","v":"y"}`},
		{"invalid UTF-8", "{\"v\":\"\xff\xfe\"}"},
		{"invalid UTF-8 outside strings", "{\"v\":null}\xff"},
		{"lone high surrogate", `{"v":"\ud800"}`},
		{"lone low surrogate", `{"v":"\udc00x"}`},
		{"high surrogate then letter", `{"v":"\ud800\u0041"}`},
		{"too deep", `{"v":` + deep + `}`},
		{"single quotes", `{'v':'x'}`},
		{"NaN literal", `{"v":NaN}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := s.FromJSON([]byte(tt.in))
			require.ErrorIs(t, err, ErrMalformedJSON)
			var verr *ValidationError
			require.False(t, errors.As(err, &verr))
			_, err = s.EncodeJSON([]byte(tt.in))
			require.ErrorIs(t, err, ErrMalformedJSON)
		})
	}

	v, err := s.FromJSON([]byte(`{"v":"\ud83d\ude00 \"\\\/"}`))
	require.NoError(t, err, "a surrogate pair and other escapes are fine")
	require.Equal(t, map[string]any{"string": "😀 \"\\/"}, v.(map[string]any)["v"])
}

func TestFromJSONDefaults(t *testing.T) {
	t.Parallel()
	s, err := Parse(`{"type":"record","name":"D","namespace":"test","fields":[
	  {"name":"i","type":"int","default":7},
	  {"name":"l","type":"long","default":-1},
	  {"name":"f","type":"float","default":1.5},
	  {"name":"d","type":"double","default":2},
	  {"name":"s","type":"string","default":"dflt"},
	  {"name":"b","type":"boolean","default":true},
	  {"name":"by","type":"bytes","default":"\u0000\u00ff"},
	  {"name":"fx","type":{"type":"fixed","name":"F2","size":2},"default":"ab"},
	  {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]},"default":"B"},
	  {"name":"arr","type":{"type":"array","items":"int"},"default":[1,2]},
	  {"name":"m","type":{"type":"map","values":"string"},"default":{"k":"v"}},
	  {"name":"r","type":{"type":"record","name":"P","fields":[{"name":"x","type":"int","default":1},{"name":"y","type":"int"}]},"default":{"y":2}},
	  {"name":"un","type":["null","string"],"default":null},
	  {"name":"us","type":["string","null"],"default":"first"},
	  {"name":"ur","type":["P","null"],"default":{"x":5,"y":6}},
	  {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"},"default":1000},
	  {"name":"dt","type":{"type":"int","logicalType":"date"},"default":1},
	  {"name":"tm","type":{"type":"int","logicalType":"time-millis"},"default":1000},
	  {"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":4,"scale":2},"default":"\u0004\u00d2"}
	]}`)
	require.NoError(t, err)
	v, err := s.FromJSON([]byte(`{}`))
	require.NoError(t, err)
	b, err := s.Encode(v)
	require.NoError(t, err)
	back, err := s.Decode(b)
	require.NoError(t, err)
	requireNativeEqual(t, v, back)
	j, err := s.RenderJSON(v)
	require.NoError(t, err)
	require.JSONEq(t, `{"i":7,"l":-1,"f":1.5,"d":2,"s":"dflt","b":true,"by":"AP8=","fx":"YWI=","e":"B",
	  "arr":[1,2],"m":{"k":"v"},"r":{"x":1,"y":2},"un":null,"us":"first","ur":{"x":5,"y":6},
	  "ts":"1970-01-01T00:00:01Z","dt":"1970-01-02","tm":"00:00:01.000","dec":"12.34"}`, string(j))

	// Defaults are copies: changing one result does not change the next.
	v.(map[string]any)["arr"].([]any)[0] = 99
	v.(map[string]any)["by"].([]byte)[0] = 9
	v2, err := s.FromJSON([]byte(`{}`))
	require.NoError(t, err)
	require.Equal(t, 1, v2.(map[string]any)["arr"].([]any)[0])
	require.Equal(t, byte(0), v2.(map[string]any)["by"].([]byte)[0])
}

// FromJSON produces the values hamba's generic decoder produces, so values
// from either source can be compared, encoded and rendered alike.
func TestFromJSONMatchesDecode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s  *Schema
		in string
	}{{orderSchema(t), validOrder}, {allSchema(t), validAll}} {
		v, err := tc.s.FromJSON([]byte(tc.in))
		require.NoError(t, err)
		b, err := tc.s.Encode(v)
		require.NoError(t, err)
		back, err := tc.s.Decode(b)
		require.NoError(t, err)
		requireNativeEqual(t, v, back)
		b2, err := tc.s.Encode(back)
		require.NoError(t, err)
		require.Equal(t, b, b2)
	}
}

// Union values that fit several branches by shape but not by content go to
// the one that fits.
func TestFromJSONUnionTrial(t *testing.T) {
	t.Parallel()
	s := fieldSchema(t, `[{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]},
	  {"type":"record","name":"B","fields":[{"name":"x","type":"string"}]}]`)
	v, err := s.FromJSON([]byte(`{"v":{"x":"s"}}`))
	require.NoError(t, err)
	require.Equal(t, map[string]any{"test.B": map[string]any{"x": "s"}}, v.(map[string]any)["v"])
	v, err = s.FromJSON([]byte(`{"v":{"x":1}}`))
	require.NoError(t, err)
	require.Equal(t, map[string]any{"test.A": map[string]any{"x": 1}}, v.(map[string]any)["v"])
	errs := fromJSONErrors(t, s, `{"v":{"x":true}}`)
	require.Len(t, errs, 1)
	require.Equal(t, RuleType, errs[0].Rule, "the first branch's failure is reported")
	require.Equal(t, "v.x", errs[0].Path)
	errs = fromJSONErrors(t, s, `{"v":[]}`)
	require.Len(t, errs, 1)
	require.Equal(t, RuleUnion, errs[0].Rule)
	require.Contains(t, errs[0].Message, "test.A, test.B")
}

// Nested unions of look-alike records cannot make FromJSON do exponential work.
func TestFromJSONUnionBudget(t *testing.T) {
	t.Parallel()
	s, err := Parse(`{"type":"record","name":"T","namespace":"test","fields":[{"name":"v","type":["null",
	  {"type":"record","name":"A","fields":[{"name":"c","type":["null","A",
	    {"type":"record","name":"B","fields":[{"name":"c","type":["null","A","B"]},{"name":"n","type":"long"}]}]},
	    {"name":"n","type":"int"}]},
	  "B"]}]}`)
	require.NoError(t, err)
	nest := func(n int) string {
		return `{"v":` + strings.Repeat(`{"c":`, n) + `null` + strings.Repeat(`,"n":1}`, n) + `}`
	}
	errs := fromJSONErrors(t, s, nest(3))
	require.Len(t, errs, 1)
	require.Equal(t, RuleUnion, errs[0].Rule)
	require.Equal(t, "v.c.c", errs[0].Path, "the innermost record fits both A and B")
	require.Contains(t, errs[0].Message, "several branches")

	errs = fromJSONErrors(t, s, nest(60))
	require.Len(t, errs, 1)
	require.Equal(t, RuleUnion, errs[0].Rule)
	require.Contains(t, errs[0].Message, "too expensive")
}
