package demo_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/demo"
	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// The demo end to end, small: every appended event is relayed and projected, and the read
// model agrees with the events in Postgres.
func TestRun(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	require.NoError(t, pgjet.Migrate(ctx, pool))
	nc, _ := natstest.Connect(t, natstest.Server(t))
	// About 400 events at 2,000/s: a fifth of a second, half of it warming up.
	s, err := demo.Run(ctx, demo.Config{Pool: pool, Conn: nc, Orders: 150, Rate: 2000, WarmUp: 100 * time.Millisecond})
	require.NoError(t, err)
	require.Equal(t, s.Appended, s.Relayed)
	require.Equal(t, s.Appended, s.Projected)
	require.Positive(t, s.P99)
	require.Positive(t, s.WarmUpMax)

	var events int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pgjet.events`).Scan(&events))
	require.Equal(t, s.Appended, events)
	// Each order's row reflects its last event: its version and its status.
	var mismatched int
	require.NoError(t, pool.QueryRow(ctx, `
		SELECT count(*) FROM demo.orders o
		JOIN LATERAL (SELECT version, type FROM pgjet.events e WHERE e.stream_id = o.stream_id ORDER BY version DESC LIMIT 1) last ON true
		WHERE o.version <> last.version
		   OR o.status <> CASE last.type
		        WHEN 'pgjet.demo.order.OrderPlaced' THEN 'placed'
		        WHEN 'pgjet.demo.order.PaymentCaptured' THEN 'paid'
		        WHEN 'pgjet.demo.order.OrderShipped' THEN 'shipped'
		        ELSE 'cancelled' END`).Scan(&mismatched))
	require.Zero(t, mismatched)
	var orders int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM demo.orders`).Scan(&orders))
	require.Equal(t, 150, orders)
	// Shipped orders carry OrderShipped version 3's carrier_name and carrier_code.
	var shipped, withCarrier int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE carrier <> '' AND carrier_code <> '')
		FROM demo.orders WHERE status = 'shipped'`).Scan(&shipped, &withCarrier))
	require.Positive(t, shipped)
	require.Equal(t, shipped, withCarrier)
}

// A relay that cannot start ends the demo with its own error, not a timeout after waiting
// for it to be ready: here another JetStream stream holds the events' subjects.
func TestRunFailsWhenTheRelayCannotStart(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	require.NoError(t, pgjet.Migrate(ctx, pool))
	nc, js := natstest.Connect(t, natstest.Server(t))
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "SQUATTER", Subjects: []string{"pgjet.events.>"}})
	require.NoError(t, err)
	_, err = demo.Run(ctx, demo.Config{Pool: pool, Conn: nc, Orders: 10})
	require.ErrorContains(t, err, "relay: ")
	require.ErrorContains(t, err, "overlap", "the relay's own error, not a timeout waiting for it")
}
