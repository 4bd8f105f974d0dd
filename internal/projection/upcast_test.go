package projection_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/projection"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

// OrderShipped events written under versions 1, 2 and 3 of its schema reach Apply in the
// newest shape (version 3: carrier split into carrier_name and carrier_code), through
// Avro resolution and the demo's upcaster, as pgjet.Store.Decode reads them.
func TestApplySeesNewestShape(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const shipped = "pgjet.demo.order.OrderShipped"
	e := newEnv(t, func(s *pgjet.Store) {
		reg := s.Registry()
		for i, file := range []string{"history/order_shipped.v1.avsc", "history/order_shipped.v2.avsc", "order_shipped.avsc"} {
			text, err := fs.ReadFile(demoschemas.Files, file)
			require.NoError(t, err)
			v, err := reg.Register(ctx, shipped, string(text))
			require.NoError(t, err)
			require.Equal(t, i+1, v.Version)
			// Appends use the newest version registered so far: one event per version.
			_, err = s.Append(ctx, "order-5f0c7d4e", pgjet.Any, pgjet.EventData{ID: uuid.New(), Type: shipped, Data: json.RawMessage(
				[]string{
					`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","carrier":"PostNL","tracking_number":"T1","shipped_at":"2025-01-02T10:00:00Z"}`,
					`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","carrier":"DHL Express","tracking_number":"T2","service_level":"EXPRESS","shipped_at":"2025-06-02T10:00:00Z"}`,
					`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","carrier_name":"GLS","carrier_code":"GLS","tracking_number":"T3","service_level":"SAME_DAY","shipped_at":"2026-11-26T10:00:00Z"}`,
				}[i])})
			require.NoError(t, err)
		}
	})
	e.appended = 3

	var (
		mu   sync.Mutex
		seen []projection.Event
	)
	e.run(t, projection.Config{
		Upcasters: demoschemas.Upcasters(), IdleWait: fastConfig(projection.Projection{}).IdleWait,
		Projection: projection.Projection{Name: "shipments", Apply: func(_ context.Context, _ pgx.Tx, ev projection.Event) error {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, ev)
			return nil
		}},
	})
	e.waitApplied(t, "shipments")

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, seen, 3)
	want := []map[string]any{
		{"carrier_name": "PostNL", "carrier_code": "POSTNL", "tracking_number": "T1", "service_level": "STANDARD"},
		{"carrier_name": "DHL Express", "carrier_code": "DHLEXPRESS", "tracking_number": "T2", "service_level": "EXPRESS"},
		{"carrier_name": "GLS", "carrier_code": "GLS", "tracking_number": "T3", "service_level": "SAME_DAY"},
	}
	ids := map[int]bool{}
	for i, ev := range seen {
		ids[ev.SchemaID] = true
		require.NotContains(t, ev.Data, "carrier", "event %d", i)
		for k, v := range want[i] {
			require.Equal(t, v, ev.Data[k], "event %d: %s", i, k)
		}
	}
	require.Len(t, ids, 3, "each event keeps the id of the schema it was written with")
}

// An event the projector cannot bring to the newest shape (here: version 3 of OrderShipped
// needs the demo's upcaster, which this projector lacks) fails its batch, and the failure
// is logged with the event's fields, as a failing Apply is.
func TestUndecodableEventIsLoggedWithItsFields(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const shipped = "pgjet.demo.order.OrderShipped"
	var id uuid.UUID
	e := newEnv(t, func(s *pgjet.Store) {
		reg := s.Registry()
		for i, file := range []string{"history/order_shipped.v1.avsc", "history/order_shipped.v2.avsc", "order_shipped.avsc"} {
			text, err := fs.ReadFile(demoschemas.Files, file)
			require.NoError(t, err)
			_, err = reg.Register(ctx, shipped, string(text))
			require.NoError(t, err)
			if i == 0 {
				id = uuid.New()
				_, err = s.Append(ctx, "order-5f0c7d4e", pgjet.Any, pgjet.EventData{ID: id, Type: shipped, Data: json.RawMessage(
					`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","carrier":"PostNL","tracking_number":"T1","shipped_at":"2025-01-02T10:00:00Z"}`)})
				require.NoError(t, err)
			}
		}
	})
	core, logs := observer.New(zap.WarnLevel)
	cfg := fastConfig(projection.Projection{Name: "shipments", Apply: func(context.Context, pgx.Tx, projection.Event) error { return nil }})
	cfg.Logger = zap.New(core)
	stop := e.run(t, cfg)
	fields := firstFailedBatch(t, logs)
	stop()
	require.Equal(t, "order-5f0c7d4e", fields["stream"])
	require.Equal(t, shipped, fields["type"])
	require.Equal(t, id.String(), fields["event_id"])
	require.Equal(t, int64(1), fields["version"])
	require.Contains(t, fmt.Sprint(fields["error"]), "decoding")
}
