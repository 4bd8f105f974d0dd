package demo

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgjet/pgjet/internal/projection"
)

// Event types of the demo domain.
const (
	TypeOrderPlaced     = "pgjet.demo.order.OrderPlaced"
	TypePaymentCaptured = "pgjet.demo.order.PaymentCaptured"
	TypeOrderShipped    = "pgjet.demo.order.OrderShipped"
	TypeOrderCancelled  = "pgjet.demo.order.OrderCancelled"
)

// ProjectionName is the name of the orders read model.
const ProjectionName = "orders"

// Schema is the Postgres schema of the orders read model; readers query demo.orders.
const Schema = "demo"

// OrdersProjection keeps demo.orders: one row per order with its status and totals. Each
// row records the stream version it reflects, so an event JetStream delivers again after
// its duplicate window is recognised and ignored. It can be rebuilt (projector rebuild
// orders): its tables are named unqualified, in the schema the projector hands it. It
// only writes, so it queues its statements: a batch of events is one round trip.
func OrdersProjection() projection.Projection {
	return projection.Projection{
		Name:   ProjectionName,
		Schema: Schema,
		Setup:  setup,
		Queue:  queue,
	}
}

// setup creates the tables in the current schema (search_path, set by the projector).
// carrier_code came with OrderShipped version 3: rows projected before it have none until
// the model is rebuilt.
func setup(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `
		CREATE TABLE IF NOT EXISTS orders (
			order_id     uuid        PRIMARY KEY,
			stream_id    text        NOT NULL,
			version      bigint      NOT NULL,
			customer_id  text        NOT NULL,
			status       text        NOT NULL,
			item_count   integer     NOT NULL,
			total_cents  bigint      NOT NULL,
			paid_cents   bigint      NOT NULL DEFAULT 0,
			carrier      text,
			placed_at    timestamptz NOT NULL,
			updated_at   timestamptz NOT NULL,
			projected_at timestamptz NOT NULL DEFAULT clock_timestamp()
		);
		ALTER TABLE orders ADD COLUMN IF NOT EXISTS carrier_code text`)
	return err
}

func queue(_ context.Context, b *pgx.Batch, ev projection.Event) error {
	d := ev.Data
	switch ev.Type {
	case TypeOrderPlaced:
		items, _ := d["items"].([]any)
		var total int64
		for _, it := range items {
			m, _ := it.(map[string]any)
			total += asInt64(m["quantity"]) * asInt64(m["unit_price_cents"])
		}
		b.Queue(`
			INSERT INTO orders (order_id, stream_id, version, customer_id, status, item_count, total_cents, placed_at, updated_at)
			VALUES ($1, $2, $3, $4, 'placed', $5, $6, $7, $7)
			ON CONFLICT (order_id) DO NOTHING`,
			d["order_id"], ev.StreamID, ev.Version, d["customer_id"], len(items), total, asTime(d["placed_at"]))
	case TypePaymentCaptured:
		update(b, ev, `paid_cents = paid_cents + $4, status = 'paid'`, asInt64(d["amount_cents"]))
	case TypeOrderShipped:
		// Data is in OrderShipped's newest shape (version 3): older events were upcast.
		update(b, ev, `carrier = $4, carrier_code = $5, status = 'shipped'`, d["carrier_name"], d["carrier_code"])
	case TypeOrderCancelled:
		update(b, ev, `status = 'cancelled'`)
	}
	return nil
}

// update queues a change to an order row, applied once: only when the event is newer than
// the row. set may use $4, $5 ... for args.
func update(b *pgx.Batch, ev projection.Event, set string, args ...any) {
	b.Queue(`UPDATE orders SET `+set+`, version = $3, updated_at = $2
		WHERE order_id = $1 AND version < $3`, append([]any{ev.Data["order_id"], ev.Time, ev.Version}, args...)...)
}

func asInt64(v any) int64 {
	switch n := v.(type) {
	case int:
		return int64(n)
	case int32:
		return int64(n)
	case int64:
		return n
	}
	return 0
}

func asTime(v any) time.Time {
	t, _ := v.(time.Time)
	return t
}
