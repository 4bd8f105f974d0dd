package avro

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// ruleSchema parses a record test.R with the given field declarations.
func ruleSchema(t testing.TB, fields string) *Schema {
	t.Helper()
	s, err := Parse(`{"type":"record","name":"R","namespace":"test","fields":[` + fields + `]}`)
	require.NoError(t, err)
	return s
}

func TestFieldRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		field string // the declaration of field "v"
		ok    []string
		bad   []string
		rule  string
	}{
		{"minimum int", `"type":"int","minimum":1`, []string{"1", "500"}, []string{"0", "-3"}, RuleMinimum},
		{"maximum long", `"type":"long","maximum":10`, []string{"10", "-1"}, []string{"11"}, RuleMaximum},
		// Beyond 2^53 a float64 comparison would round 2^53+1 down to the bound.
		{"maximum long beyond 2^53", `"type":"long","maximum":9007199254740992`, []string{"9007199254740992", "-9223372036854775808"},
			[]string{"9007199254740993", "9223372036854775807"}, RuleMaximum},
		{"exclusiveMinimum long beyond 2^53", `"type":"long","exclusiveMinimum":-9007199254740992`, []string{"-9007199254740991"},
			[]string{"-9007199254740993", "-9007199254740992"}, RuleExclusiveMinimum},
		{"minimum double", `"type":"double","minimum":0.5`, []string{"0.5", "7"}, []string{"0.49"}, RuleMinimum},
		{"exclusiveMinimum", `"type":"float","exclusiveMinimum":0`, []string{"0.1"}, []string{"0", "-1"}, RuleExclusiveMinimum},
		{"exclusiveMaximum", `"type":"int","exclusiveMaximum":100`, []string{"99"}, []string{"100"}, RuleExclusiveMaximum},
		{"minLength", `"type":"string","minLength":2`, []string{`"ab"`, `"éé"`, `"😀😀"`}, []string{`""`, `"é"`, `"😀"`}, RuleMinLength},
		{"maxLength counts code points", `"type":"string","maxLength":3`, []string{`"abc"`, `"äöü"`, `"😀😀😀"`}, []string{`"abcd"`, `"ä😀üö"`}, RuleMaxLength},
		{"pattern", `"type":"string","pattern":"^[A-Z]+-[0-9]+$"`, []string{`"BOOK-1"`}, []string{`"book-1"`, `"BOOK-"`}, RulePattern},
		{"format email", `"type":"string","format":"email"`, []string{`"ada@example.com"`}, []string{`"ada"`, `"Ada <ada@example.com>"`, `"a@b@c"`}, RuleFormat},
		{"format uuid", `"type":"string","format":"uuid"`, []string{`"7c9e6679-7425-40de-944b-e07fc1f90ae7"`}, []string{`"7c9e6679"`}, RuleFormat},
		{"format uri", `"type":"string","format":"uri"`, []string{`"https://example.com/x?y=1"`, `"urn:isbn:123"`}, []string{`"/relative"`, `"example.com"`}, RuleFormat},
		{"pattern on enum", `"type":{"type":"enum","name":"E","symbols":["AB","C"]},"pattern":"^..$"`, []string{`"AB"`}, []string{`"C"`}, RulePattern},
		{"minItems", `"type":{"type":"array","items":"int"},"minItems":1`, []string{"[1]"}, []string{"[]"}, RuleMinItems},
		{"maxItems", `"type":{"type":"array","items":"int"},"maxItems":2`, []string{"[1,2]"}, []string{"[1,2,3]"}, RuleMaxItems},
		{"maxItems on map", `"type":{"type":"map","values":"int"},"maxItems":1`, []string{`{"a":1}`}, []string{`{"a":1,"b":2}`}, RuleMaxItems},
		{"item rule on array", `"type":{"type":"array","items":"string"},"maxLength":2`, []string{`["ab","c"]`}, []string{`["ab","abc"]`}, RuleMaxLength},
		{"value rule on map", `"type":{"type":"map","values":"long"},"minimum":0`, []string{`{"a":0}`}, []string{`{"a":-1}`}, RuleMinimum},
		{"nullable", `"type":["null","string"],"minLength":1`, []string{"null", `"x"`}, []string{`""`}, RuleMinLength},
		{"general union", `"type":["null","int","string"],"minimum":5,"maxLength":1`, []string{"5", `"x"`, `{"string":"y"}`, "null"}, []string{"4", `{"int":4}`, `"xy"`}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := ruleSchema(t, `{"name":"v",`+tt.field+`}`)
			for _, v := range tt.ok {
				in := []byte(`{"v":` + v + `}`)
				native, err := s.FromJSON(in)
				require.NoError(t, err, v)
				_, err = s.Encode(native)
				require.NoError(t, err, v)
			}
			for _, v := range tt.bad {
				in := []byte(`{"v":` + v + `}`)
				_, err := s.EncodeJSON(in)
				verr := requireValidation(t, err)
				require.Len(t, verr.Fields, 1, v)
				if tt.rule != "" {
					require.Equal(t, tt.rule, verr.Fields[0].Rule, v)
				}
				require.Contains(t, verr.Fields[0].Path, "v", v)
				require.NotEmpty(t, verr.Fields[0].Message)

				// The Encode path applies the same rules to native values.
				native, err := ruleSchema(t, `{"name":"v",`+stripRules(tt.field)+`}`).FromJSON(in)
				require.NoError(t, err, v)
				_, err = s.Encode(native)
				verr2 := requireValidation(t, err)
				require.Equal(t, verr.Fields, verr2.Fields, v)
			}
		})
	}
}

// stripRules cuts a field declaration of TestFieldRules before its first
// rule (rules follow the type in every declaration there).
func stripRules(field string) string {
	for _, r := range []string{`,"minimum"`, `,"maximum"`, `,"exclusiveM`, `,"minLength"`, `,"maxLength"`,
		`,"pattern"`, `,"format"`, `,"minItems"`, `,"maxItems"`} {
		if i := strings.Index(field, r); i >= 0 {
			field = field[:i]
		}
	}
	return field
}

func requireValidation(t *testing.T, err error) *ValidationError {
	t.Helper()
	verr, ok := err.(*ValidationError)
	require.True(t, ok, "want *ValidationError, got %v", err)
	return verr
}

func TestFieldRulesNested(t *testing.T) {
	t.Parallel()
	s := ruleSchema(t, `
		{"name":"items","minItems":1,"type":{"type":"array","items":{"type":"record","name":"Line","fields":[
			{"name":"sku","type":"string","pattern":"^[A-Z]+$"},
			{"name":"quantity","type":"int","minimum":1}]}}},
		{"name":"by_key","type":{"type":"map","values":"Line"}},
		{"name":"maybe","type":["null","Line"],"default":null},
		{"name":"email","type":"string","format":"email"}`)

	_, err := s.EncodeJSON([]byte(`{"items":[{"sku":"A","quantity":1},{"sku":"b","quantity":0}],
		"by_key":{"k":{"sku":"C","quantity":-1}},"maybe":{"sku":"1","quantity":2},"email":"nope"}`))
	verr := requireValidation(t, err)
	var got [][2]string
	for _, f := range verr.Fields {
		got = append(got, [2]string{f.Path, f.Rule})
	}
	require.Equal(t, [][2]string{
		{"items[1].sku", "pattern"},
		{"items[1].quantity", "minimum"},
		{`by_key["k"].quantity`, "minimum"},
		{"maybe.sku", "pattern"},
		{"email", "format"},
	}, got)
	require.Equal(t, "0", verr.Fields[1].Value)
	require.Equal(t, `"b"`, verr.Fields[0].Value)

	// Structural errors and rule errors are reported together.
	_, err = s.EncodeJSON([]byte(`{"items":[],"by_key":{},"email":7}`))
	verr = requireValidation(t, err)
	require.Len(t, verr.Fields, 2)
	require.Equal(t, "items", verr.Fields[0].Path)
	require.Equal(t, RuleMinItems, verr.Fields[0].Rule)
	require.Equal(t, RuleType, verr.Fields[1].Rule)

	// Go structs go through the same rules on Encode.
	type line struct {
		SKU      string `avro:"sku"`
		Quantity int    `avro:"quantity"`
	}
	type rec struct {
		Items []line          `avro:"items"`
		ByKey map[string]line `avro:"by_key"`
		Maybe *line           `avro:"maybe"`
		Email string          `avro:"email"`
	}
	_, err = s.Encode(rec{Items: []line{{"A", 1}}, ByKey: map[string]line{}, Email: "a@b.example"})
	require.NoError(t, err)
	_, err = s.Encode(rec{Items: []line{{"A", 0}}, ByKey: map[string]line{}, Maybe: &line{"x", 1}, Email: "a@b.example"})
	verr = requireValidation(t, err)
	require.Len(t, verr.Fields, 2)
	require.Equal(t, "items[0].quantity", verr.Fields[0].Path)
	require.Equal(t, "maybe.sku", verr.Fields[1].Path)
}

func TestFieldRulesRecursiveRecord(t *testing.T) {
	t.Parallel()
	s := ruleSchema(t, `{"name":"n","type":"int","maximum":3},{"name":"next","type":["null","R"],"default":null}`)
	_, err := s.EncodeJSON([]byte(`{"n":1,"next":{"n":2,"next":{"n":4}}}`))
	verr := requireValidation(t, err)
	require.Equal(t, "next.next.n", verr.Fields[0].Path)
}

func TestParseRejectsBadRules(t *testing.T) {
	t.Parallel()
	for field, want := range map[string]string{
		`"type":"string","pattern":"(["`:                                      "not an RE2",
		`"type":"string","pattern":5`:                                         "must be a string",
		`"type":"string","minLength":-1`:                                      "non-negative integer",
		`"type":"string","maxLength":1.5`:                                     "non-negative integer",
		`"type":"string","minLength":3,"maxLength":2`:                         "greater than",
		`"type":"string","format":"phone"`:                                    "must be one of",
		`"type":"int","minimum":"1"`:                                          "must be a number",
		`"type":"string","minimum":1`:                                         "applies to numbers",
		`"type":"int","pattern":"x"`:                                          "applies to strings",
		`"type":"string","minItems":1`:                                        "applies to arrays",
		`"type":{"type":"long","logicalType":"timestamp-millis"},"maximum":1`: "applies to numbers",
		`"type":{"type":"array","items":"int"},"minItems":2,"maxItems":1`:     "greater than",
		`"type":"string","default":"","minLength":1`:                          "the default breaks rule",
	} {
		_, err := Parse(`{"type":"record","name":"R","fields":[{"name":"v",` + field + `}]}`)
		require.ErrorContains(t, err, want, field)
		require.ErrorContains(t, err, "field v of R", field)
	}
	// Unknown properties are not rules and are kept.
	s, err := Parse(`{"type":"record","name":"R","fields":[{"name":"v","type":"int","x-owner":"team-a"}]}`)
	require.NoError(t, err)
	require.False(t, s.HasRules())
}

// FuzzFieldRules: FromJSON and Encode agree on field rules. Whatever the rule-free twin of
// a schema accepts, the schema with rules either accepts on both paths or reports the same
// failures on both.
func FuzzFieldRules(f *testing.F) {
	const fields = `{"name":"n","type":["null","int"],"default":null,"minimum":1,"exclusiveMaximum":10},
		{"name":"s","type":"string","default":"x","pattern":"^[a-z]+$","maxLength":5},
		{"name":"e","type":["null","string"],"default":null,"format":"email"},
		{"name":"tags","type":{"type":"array","items":"string"},"default":[],"maxItems":3,"minLength":1},
		{"name":"m","type":{"type":"map","values":"double"},"default":{},"minimum":0},
		{"name":"kids","type":{"type":"array","items":"R"},"default":[]}`
	ruled := ruleSchema(f, fields)
	plain := ruleSchema(f, stripAllRules(fields))
	for _, seed := range []string{`{}`, `{"n":0,"s":"ABC","e":"x","tags":["","a","b","c"],"m":{"a":-1}}`,
		`{"kids":[{"n":3,"kids":[{"s":"toolong"}]}]}`, `{"e":"a@b.example","m":{"z":1e9}}`,
		`{"n":9,"m":{"a":-1e-300}}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := plain.FromJSON(data)
		if err != nil {
			return
		}
		_, e1 := ruled.FromJSON(data)
		_, e2 := ruled.Encode(v)
		if e1 == nil {
			require.NoError(t, e2)
			return
		}
		v1, v2 := requireValidation(t, e1), requireValidation(t, e2)
		require.ElementsMatch(t, v1.Fields, v2.Fields)
	})
}

// stripAllRules removes every rule property from field declarations.
func stripAllRules(fields string) string {
	re := regexp.MustCompile(`,"(minimum|maximum|exclusiveMinimum|exclusiveMaximum|minLength|maxLength|pattern|format|minItems|maxItems)":("[^"]*"|[0-9.]+)`)
	return re.ReplaceAllString(fields, "")
}

// BenchmarkValidateEncode measures validate+encode of a demo OrderPlaced (field rules
// included) per event.
// BenchmarkEncodeValue: Encode of a Go map, an OrderCancelled of about 300 bytes, with its
// field rules (reason: minLength, maxLength) checked on the Avro binary.
func BenchmarkEncodeValue(b *testing.B) {
	s := loadSchema(b, "../../schemas/avro/order_cancelled.avsc")
	v := map[string]any{"order_id": "5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10", "reason": strings.Repeat("r", 240),
		"cancelled_at": time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Encode(v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidateEncode(b *testing.B) {
	s := loadSchema(b, "../../schemas/avro/order_placed.avsc")
	in := []byte(`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","customer_id":"cust-0042",
		"customer_email":"ada@example.com","items":[{"sku":"SKU-TEA-001","quantity":2,"unit_price_cents":450},
		{"sku":"SKU-MUG-002","quantity":1,"unit_price_cents":1299}],"placed_at":"2026-11-26T09:00:00Z"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.EncodeJSON(in); err != nil {
			b.Fatal(err)
		}
	}
}
