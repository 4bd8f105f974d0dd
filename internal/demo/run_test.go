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
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "SQUATTER", Subjects: []string{demo.SubjectPrefix + ".>"}})
	require.NoError(t, err)
	_, err = demo.Run(ctx, demo.Config{Pool: pool, Conn: nc, Orders: 10})
	require.ErrorContains(t, err, "relay: ")
	require.ErrorContains(t, err, "overlap", "the relay's own error, not a timeout waiting for it")
}

// A second run on the same NATS server, as `make demo` twice with NATS_URL set, starts on
// an empty stream of its own: the first run's events, whose ids the second run repeats, are
// neither taken for duplicates nor projected again, and a PGJET_EVENTS stream beside it
// is left alone.
func TestRunTwiceOnOneServer(t *testing.T) {
	ctx := context.Background()
	nc, js := natstest.Connect(t, natstest.Server(t))
	other, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PGJET_EVENTS", Subjects: []string{"pgjet.events.>"}})
	require.NoError(t, err)
	_, err = js.Publish(ctx, "pgjet.events.order.x.order-1", []byte("not the demo's"))
	require.NoError(t, err)
	for run := range 2 {
		pool := pgtest.Pool(t)
		require.NoError(t, pgjet.Migrate(ctx, pool))
		start := time.Now()
		s, err := demo.Run(ctx, demo.Config{Pool: pool, Conn: nc, Orders: 300, Rate: 2000, WarmUp: 300 * time.Millisecond})
		require.NoError(t, err, "run %d", run+1)
		require.Equal(t, s.Appended, s.Relayed, "run %d", run+1)
		require.Equal(t, s.Appended, s.Projected, "run %d", run+1)
		require.Positive(t, s.P99, "run %d", run+1)
		require.Positive(t, s.WarmUpMax, "run %d: the projector applied this run's first events, not copies of an earlier run's", run+1)
		stream, err := js.Stream(ctx, demo.Stream)
		require.NoError(t, err)
		info, err := stream.Info(ctx)
		require.NoError(t, err)
		require.True(t, info.Created.After(start), "run %d: the stream was created by this run", run+1)
		require.Equal(t, uint64(s.Appended), info.State.Msgs, "run %d: the stream holds this run's events once", run+1)
	}
	info, err := other.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(1), info.State.Msgs, "PGJET_EVENTS is not the demo's")
}
