package subscription_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/avro"
	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/pgtest"
	"github.com/pgjet/pgjet/internal/relay"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
	"github.com/pgjet/pgjet/subscription"
)

const cancelledV2 = `{
  "type": "record", "name": "OrderCancelled", "namespace": "pgjet.demo.order",
  "fields": [
    {"name": "order_id", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "reason", "type": "string"},
    {"name": "cancelled_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "note", "type": "string", "default": "none"}
  ]
}`

// Events appended to Postgres, relayed to JetStream and decoded through the registry reach
// the handler in the newest shape of their type, whichever version wrote them.
func TestRegistryDecoderEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.Pool(t)
	require.NoError(t, pgjet.Migrate(ctx, pool))
	store, err := pgjet.New(pgjet.Config{Pool: pool})
	require.NoError(t, err)
	_, err = store.Registry().RegisterFS(ctx, demoschemas.Files)
	require.NoError(t, err)
	srv := natstest.Server(t)
	nc, js := natstest.Connect(t, srv)

	event := func(i int, extra string) pgjet.EventData {
		return pgjet.EventData{ID: uuid.New(), Type: cancelled, Data: json.RawMessage(fmt.Sprintf(
			`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","reason":"#%d","cancelled_at":"2026-11-26T10:00:00Z"%s}`, i, extra))}
	}
	_, err = store.Append(ctx, "order-1", pgjet.NoStream, event(1, ""), event(2, ""))
	require.NoError(t, err)
	_, err = store.Registry().Register(ctx, cancelled, cancelledV2)
	require.NoError(t, err)
	_, err = store.Append(ctx, "order-1", pgjet.Any, event(3, `,"note":"late"`))
	require.NoError(t, err)

	r, err := relay.New(relay.Config{Pool: pool, Conn: nc, PollInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	rctx, stopRelay := context.WithCancel(context.Background())
	relayDone := make(chan error, 1)
	go func() { relayDone <- r.Run(rctx) }()
	t.Cleanup(func() { stopRelay(); <-relayDone })

	dec, err := subscription.NewRegistryDecoder(store.Registry())
	require.NoError(t, err)
	var rec recorder
	run(t, newSub(t, js, subscription.Config{
		Group:   "decoded",
		Filters: []subscription.Filter{{Category: "order", Type: cancelled}},
		Decoder: dec,
		Handler: rec.handle,
	}))
	eventually(t, "3 decoded events", func() bool { return rec.len() == 3 })
	evs := rec.all()
	for i, ev := range evs {
		require.Equal(t, fmt.Sprintf("#%d", i+1), ev.Data["reason"])
		require.Equal(t, int64(i+1), ev.Version)
		require.Positive(t, ev.Position)
	}
	require.Equal(t, "none", evs[0].Data["note"], "old events decode into the newest shape")
	require.Equal(t, "late", evs[2].Data["note"])
	require.NotEqual(t, evs[0].SchemaID, evs[2].SchemaID)
}

// OrderShipped data of every version (the demo fixtures) reaches subscribers in the newest
// shape, through the upcaster from version 2 to 3, exactly as pgjet.Store.Decode gives it;
// without the upcaster, decoding fails with pgjet.ErrMissingUpcaster.
func TestRegistryDecoderAppliesUpcasters(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.Pool(t)
	require.NoError(t, pgjet.Migrate(ctx, pool))
	store, err := pgjet.New(pgjet.Config{Pool: pool, Upcasters: demoschemas.Upcasters()})
	require.NoError(t, err)
	_, err = store.Registry().RegisterFS(ctx, demoschemas.Files)
	require.NoError(t, err)
	versions, err := store.Registry().All(ctx, shipped)
	require.NoError(t, err)
	require.Len(t, versions, 3)

	e := newEnv(t)
	wires := map[int64][]byte{}
	for v := 1; v <= 3; v++ {
		raw, err := os.ReadFile(fmt.Sprintf("../schemas/avro/testdata/order_shipped.v%d.json", v))
		require.NoError(t, err)
		var fx struct {
			Avro   []byte          `json:"avro"`
			Newest json.RawMessage `json:"newest"`
		}
		require.NoError(t, json.Unmarshal(raw, &fx))
		msg := contractMsg(t, "order-1", shipped, int64(v), int64(v))
		msg.Data = avro.AppendWire(nil, uint32(versions[v-1].ID), fx.Avro)
		wires[int64(v)] = msg.Data
		_, err = e.js.PublishMsg(ctx, msg)
		require.NoError(t, err)
	}

	dec, err := subscription.NewRegistryDecoder(store.Registry(), demoschemas.Upcasters()...)
	require.NoError(t, err)
	var rec recorder
	run(t, newSub(t, e.js, subscription.Config{Group: "upcast", Decoder: dec, Handler: rec.handle}))
	eventually(t, "3 events", func() bool { return rec.len() == 3 })
	for _, ev := range rec.all() {
		want, err := store.Decode(ctx, pgjet.RecordedEvent{Type: ev.Type, Data: ev.Raw})
		require.NoError(t, err)
		require.Equal(t, want, ev.Data, "version %d", ev.Version)
		require.NotContains(t, ev.Data, "carrier")
		require.Contains(t, ev.Data, "carrier_code")
	}
	require.Equal(t, "POSTNL", rec.all()[0].Data["carrier_code"])
	require.Equal(t, "DHLEXPRESS", rec.all()[1].Data["carrier_code"])
	require.Equal(t, "STANDARD", rec.all()[0].Data["service_level"], "version 1 reaches version 2 by resolution")

	bare, err := subscription.NewRegistryDecoder(store.Registry())
	require.NoError(t, err)
	_, err = bare.Decode(ctx, wires[2], shipped)
	require.ErrorIs(t, err, pgjet.ErrMissingUpcaster)
	_, err = bare.Decode(ctx, wires[3], shipped)
	require.NoError(t, err, "the newest version needs no upcaster")

	_, err = subscription.NewRegistryDecoder(store.Registry(), append(demoschemas.Upcasters(), demoschemas.Upcasters()...)...)
	require.ErrorContains(t, err, "two upcasters")
}

// A payload whose schema is of another type than the event claims (a foreign publisher's
// mislabelled message) fails to decode, also for a type the registry has no subject of: it
// is never handed over as data of the claimed type. A type registered under a subject other
// than its name still decodes with its own schema.
func TestRegistryDecoderRefusesAnotherTypesSchema(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.Pool(t)
	require.NoError(t, pgjet.Migrate(ctx, pool))
	store, err := pgjet.New(pgjet.Config{Pool: pool})
	require.NoError(t, err)
	_, err = store.Registry().RegisterFS(ctx, demoschemas.Files)
	require.NoError(t, err)
	dec, err := subscription.NewRegistryDecoder(store.Registry())
	require.NoError(t, err)

	v, err := store.Registry().Latest(ctx, cancelled)
	require.NoError(t, err)
	wire, err := v.Schema.EncodeJSONWire(uint32(v.ID), []byte(
		`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","reason":"x","cancelled_at":"2026-11-26T10:00:00Z"}`))
	require.NoError(t, err)
	_, err = dec.Decode(ctx, wire, cancelled)
	require.NoError(t, err)
	_, err = dec.Decode(ctx, wire, "acme.billing.InvoiceSent")
	require.ErrorContains(t, err, "not acme.billing.InvoiceSent", "OrderCancelled data passed off as an unregistered type")
	_, err = dec.Decode(ctx, wire, placed)
	require.Error(t, err, "OrderCancelled data passed off as a registered type")

	invoice, err := store.Registry().Register(ctx, "billing-value",
		`{"type":"record","name":"InvoiceSent","namespace":"acme.billing","fields":[{"name":"n","type":"long"}]}`)
	require.NoError(t, err)
	wire, err = invoice.Schema.EncodeJSONWire(uint32(invoice.ID), []byte(`{"n":7}`))
	require.NoError(t, err)
	data, err := dec.Decode(ctx, wire, "acme.billing.InvoiceSent")
	require.NoError(t, err)
	require.Equal(t, map[string]any{"n": int64(7)}, data)
}
