package avro

import (
	"math"
	"math/big"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// validOrder is an OrderPlaced event as a client would send it.
const validOrder = `{
  "order_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
  "customer": {"id": "c-42", "email": "ada@example.com"},
  "items": [
    {"sku": "BOOK-1", "quantity": 1, "unit_price": "12.50"},
    {"sku": "PEN-7", "quantity": 3, "unit_price": 0.99}
  ],
  "placed_at": "2024-05-01T12:30:00.250Z",
  "note": "leave at the door",
  "channel": "WEB"
}`

// validAll fills every field of testdata/all.avsc except those with defaults.
const validAll = `{"b":true,"i":-5,"l":1e3,"f":1.5,"d":"NaN","s":"hé \u2028 <>&","by":"AAE=","fx":"AQIDBA==","e":"RED",
"arr":[1,2],"m":{"a":1},"u":"x","u3":{"test.Point":{"x":1}},
"uuid":"123e4567-e89b-12d3-a456-426614174000","ts":"2024-01-02T03:04:05.123456Z","tsu":1700000000000001,
"date":"1969-12-31","tm":"13:14:15.5","tu":5,"dec":"-12.5","fdec":-99999.9,"dur":{"months":1,"days":2,"milliseconds":3},
"next":{"b":false,"i":0,"l":0,"f":0,"d":0,"s":"","by":"","fx":"AAAAAA==","e":"GREEN","arr":[],"m":{},"u":null,"u3":7,
"uuid":"123E4567-E89B-12D3-A456-426614174000","ts":0,"tsu":0,"date":0,"tm":0,"tu":0,"dec":0,"fdec":"0","dur":{}}}`

func loadSchema(t testing.TB, path string) *Schema {
	t.Helper()
	text, err := os.ReadFile(path)
	require.NoError(t, err)
	s, err := Parse(string(text))
	require.NoError(t, err)
	return s
}

func orderSchema(t testing.TB) *Schema { return loadSchema(t, "testdata/order.avsc") }
func allSchema(t testing.TB) *Schema   { return loadSchema(t, "testdata/all.avsc") }

// fieldSchema parses a record test.R with one field "v" of the given type
// JSON, plus any extra field JSON.
func fieldSchema(t testing.TB, typ string, extra ...string) *Schema {
	t.Helper()
	fields := `{"name":"v","type":` + typ + `}`
	for _, e := range extra {
		fields += "," + e
	}
	s, err := Parse(`{"type":"record","name":"R","namespace":"test","fields":[` + fields + `]}`)
	require.NoError(t, err)
	return s
}

// requireNativeEqual compares native values, treating *big.Rat by value,
// NaN as equal to NaN and times by instant.
func requireNativeEqual(t testing.TB, want, got any) {
	t.Helper()
	require.True(t, nativeEqual(want, got), "native values differ:\nwant %#v\n got %#v", want, got)
}

func nativeEqual(a, b any) bool {
	switch x := a.(type) {
	case *big.Rat:
		y, ok := b.(*big.Rat)
		return ok && x.Cmp(y) == 0
	case float64:
		y, ok := b.(float64)
		return ok && (x == y && math.Signbit(x) == math.Signbit(y) || math.IsNaN(x) && math.IsNaN(y))
	case float32:
		y, ok := b.(float32)
		return ok && nativeEqual(float64(x), float64(y))
	case time.Time:
		y, ok := b.(time.Time)
		return ok && x.Equal(y)
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !nativeEqual(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !nativeEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}
