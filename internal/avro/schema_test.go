package avro

import (
	"crypto/sha256"
	"strings"
	"testing"

	havro "github.com/hamba/avro/v2"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	t.Parallel()
	s := orderSchema(t)
	require.Equal(t, "shop.order.OrderPlaced", s.FullName())
	require.Equal(t, s.Avro().String(), s.Canonical())
	require.Equal(t, s.Canonical(), s.String())
	require.Equal(t, sha256.Sum256([]byte(s.Canonical())), s.Fingerprint())
	require.NotContains(t, s.Canonical(), "doc", "canonical form drops docs")

	// The same schema written differently has the same canonical form.
	compact := `{"namespace":"shop.order","name":"OrderPlaced","type":"record","fields":[
	 {"name":"order_id","type":{"logicalType":"uuid","type":"string"}},
	 {"name":"customer","type":{"type":"record","name":"Customer","fields":[{"name":"id","type":"string"},{"name":"email","type":"string"}]}},
	 {"name":"items","type":{"type":"array","items":{"type":"record","name":"LineItem","fields":[
	   {"name":"sku","type":"string"},{"name":"quantity","type":"int"},
	   {"name":"unit_price","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}}]}}},
	 {"name":"placed_at","type":{"type":"long","logicalType":"timestamp-millis"}},
	 {"name":"note","type":["null","string"],"default":null},
	 {"name":"channel","type":{"type":"enum","name":"shop.order.Channel","symbols":["WEB","STORE","PHONE"]}}]}`
	s2, err := Parse(compact)
	require.NoError(t, err)
	require.Equal(t, s.Fingerprint(), s2.Fingerprint())
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, text, wantErr string
	}{
		{"primitive top level", `"string"`, "must be a record"},
		{"enum top level", `{"type":"enum","name":"E","symbols":["A"]}`, "must be a record"},
		{"array top level", `{"type":"array","items":"int"}`, "must be a record"},
		{"not JSON", `{"type":`, "parsing schema"},
		{"unknown type", `{"type":"record","name":"R","fields":[{"name":"a","type":"shop.Nope"}]}`, "parsing schema"},
		{"bad default", `{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":"x"}]}`, "parsing schema"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse(tt.text)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

// nestedArrays is a record with one field of arrays nested n deep.
func nestedArrays(n int) string {
	return `{"type":"record","name":"Deep","fields":[{"name":"a","type":` +
		strings.Repeat(`{"type":"array","items":`, n) + `"int"` + strings.Repeat(`}`, n) + `}]}`
}

// A schema nesting deeper than MaxDepth is refused by CheckNesting (the registry's door:
// checking its compatibility would take minutes); brackets inside strings do not count.
// Parse still takes it, so that a schema stored before the check loads.
func TestCheckNesting(t *testing.T) {
	t.Parallel()
	require.NoError(t, CheckNesting(nestedArrays(MaxDepth-3))) // the record, its fields and the field take three levels
	require.ErrorContains(t, CheckNesting(nestedArrays(MaxDepth-2)), "nesting deeper than 128")
	require.ErrorContains(t, CheckNesting(nestedArrays(100_000)), "nesting deeper than 128")
	doc := `{"type":"record","name":"R","doc":"` + strings.Repeat(`[{\"`, 300) + `","fields":[{"name":"a","type":"int"}]}`
	require.NoError(t, CheckNesting(doc))
	_, err := Parse(doc)
	require.NoError(t, err)
	_, err = Parse(nestedArrays(MaxDepth + 10))
	require.NoError(t, err)
}

// Each Parse has its own cache: versions of one record name do not collide,
// and a named type defined by one schema is not visible to the next.
func TestParseUsesFreshCache(t *testing.T) {
	t.Parallel()
	const v1 = `{"type":"record","name":"shop.Versioned","fields":[
		{"name":"a","type":"int"},
		{"name":"money","type":{"type":"record","name":"shop.MoneyV1","fields":[{"name":"cents","type":"long"}]}}]}`
	const v2 = `{"type":"record","name":"shop.Versioned","fields":[
		{"name":"a","type":"int"},{"name":"b","type":"string","default":""}]}`
	s1, err := Parse(v1)
	require.NoError(t, err)
	s2, err := Parse(v2)
	require.NoError(t, err)
	s1again, err := Parse(v1)
	require.NoError(t, err)

	require.Len(t, s1.Avro().(*havro.RecordSchema).Fields(), 2)
	require.Len(t, s2.Avro().(*havro.RecordSchema).Fields(), 2)
	require.Equal(t, "b", s2.Avro().(*havro.RecordSchema).Fields()[1].Name())
	require.Equal(t, s1.Fingerprint(), s1again.Fingerprint())
	require.NotEqual(t, s1.Fingerprint(), s2.Fingerprint())

	_, err = Parse(`{"type":"record","name":"shop.Uses","fields":[{"name":"m","type":"shop.MoneyV1"}]}`)
	require.Error(t, err, "a type from another Parse call must not leak")
	_, err = havro.Parse(`{"type":"record","name":"shop.Uses","fields":[{"name":"m","type":"shop.MoneyV1"}]}`)
	require.Error(t, err, "hamba's global cache must not have been used")
}

func TestEncodeGoValues(t *testing.T) {
	t.Parallel()
	s := fieldSchema(t, `"string"`, `{"name":"n","type":"int"}`, `{"name":"o","type":["null","long"],"default":null}`)

	type rec struct {
		V string `avro:"v"`
		N int    `avro:"n"`
		O *int64 `avro:"o"`
	}
	seven := int64(7)
	fromStruct, err := s.Encode(rec{V: "x", N: 3, O: &seven})
	require.NoError(t, err)
	fromPtr, err := s.Encode(&rec{V: "x", N: 3, O: &seven})
	require.NoError(t, err)
	fromMap, err := s.Encode(map[string]any{"v": "x", "n": 3, "o": int64(7)})
	require.NoError(t, err)
	fromJSON, err := s.EncodeJSON([]byte(`{"v":"x","n":3,"o":7}`))
	require.NoError(t, err)
	require.Equal(t, fromJSON, fromStruct)
	require.Equal(t, fromJSON, fromPtr)
	require.Equal(t, fromJSON, fromMap)

	_, err = s.Encode(map[string]any{"v": 1, "n": 3})
	require.ErrorContains(t, err, "encoding test.R")
	_, err = s.Encode(map[string]any{"v": "x"})
	require.ErrorContains(t, err, "missing required field n")
}
