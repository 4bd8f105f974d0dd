package pgjet_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/registry"
)

// TestAppendChecksFieldRules appends demo events that break the field rules of
// schemas/avro, as JSON and as Go values.
func TestAppendChecksFieldRules(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := newStore(t)
	bad := `{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","customer_id":"c-1","customer_email":"not an email",
		"items":[{"sku":"SKU-1","quantity":1,"unit_price_cents":100},{"sku":"sku 2","quantity":0,"unit_price_cents":-1}],
		"currency":"euro","placed_at":"2026-11-26T10:00:00Z"}`
	want := map[string]string{
		"events[1].data.customer_email":            "format",
		"events[1].data.items[1].sku":              "pattern",
		"events[1].data.items[1].quantity":         "minimum",
		"events[1].data.items[1].unit_price_cents": "minimum",
		"events[1].data.currency":                  "pattern",
	}
	_, err := s.Append(ctx, "order-r1", pgjet.Any, cancelEvent("ok"), pgjet.EventData{Type: placed, Data: json.RawMessage(bad)})
	require.Equal(t, want, requireFields(t, err))

	var native map[string]any
	require.NoError(t, json.Unmarshal([]byte(bad), &native))
	native["placed_at"] = int64(1764151200000)
	for _, it := range native["items"].([]any) {
		m := it.(map[string]any)
		m["quantity"] = int(m["quantity"].(float64))
		m["unit_price_cents"] = int64(m["unit_price_cents"].(float64))
	}
	_, err = s.Append(ctx, "order-r1", pgjet.Any, cancelEvent("ok"), pgjet.EventData{Type: placed, Data: native})
	require.Equal(t, want, requireFields(t, err))

	_, err = s.Append(ctx, "order-r1", pgjet.Any, pgjet.EventData{Type: placed, Data: json.RawMessage(`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10",
		"customer_id":"c-1","customer_email":"c@example.com","items":[],"placed_at":"2026-11-26T10:00:00Z"}`)})
	require.Equal(t, map[string]string{"events[0].data.items": "minItems"}, requireFields(t, err))
	require.Equal(t, 0, count(t, pool, "pgjet.events"))

	// A schema whose rules cannot apply is refused by the registry (HTTP 42201).
	_, err = s.Registry().Register(ctx, "t.Bad", `{"type":"record","name":"Bad","namespace":"t","fields":[
		{"name":"code","type":"string","pattern":"[unclosed"}]}`)
	require.ErrorIs(t, err, registry.ErrInvalidSchema)
	require.ErrorContains(t, err, `field code of t.Bad: rule "pattern" is not an RE2 regular expression`)
}
