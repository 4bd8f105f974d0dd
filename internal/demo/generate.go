package demo

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"

	"github.com/pgjet/pgjet"
)

// Order is one generated order: its stream and the events of its life, in order.
type Order struct {
	StreamID string
	Events   []pgjet.EventData
}

var (
	skus     = []string{"SKU-TEA-001", "SKU-MUG-002", "SKU-KETTLE-003", "SKU-BEANS-004", "SKU-FILTER-005", "SKU-GRINDER-006"}
	carriers = [][2]string{{"DHL", "DHL"}, {"UPS", "UPS"}, {"PostNL", "POSTNL"}, {"GLS", "GLS"}} // name, code
	levels   = []string{"STANDARD", "STANDARD", "EXPRESS", "SAME_DAY"}
	methods  = []string{"CARD", "INVOICE", "WALLET"}
	channels = []string{"WEB", "STORE", "PHONE"}
)

// Generator makes realistic orders. It is deterministic for a seed.
type Generator struct {
	rng *rand.Rand
	now func() time.Time
}

// NewGenerator returns a generator seeded with seed.
func NewGenerator(seed uint64) *Generator {
	return &Generator{rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), now: time.Now}
}

// Order generates one order: placed; then paid (90%); then shipped (90% of paid) or
// cancelled. Event ids are fixed so that appending an order again is idempotent.
func (g *Generator) Order() Order {
	id := uuid.Must(uuid.NewRandomFromReader(g))
	stream := "order-" + id.String()
	now := g.now().UTC().Truncate(time.Millisecond)
	var items []any
	var total int64
	for range 1 + g.rng.IntN(4) {
		q, price := 1+g.rng.IntN(3), int64(199+g.rng.IntN(5000))
		total += int64(q) * price
		items = append(items, map[string]any{"sku": skus[g.rng.IntN(len(skus))], "quantity": q, "unit_price_cents": price})
	}
	o := Order{StreamID: stream}
	add := func(typ string, data map[string]any) {
		o.Events = append(o.Events, pgjet.EventData{
			ID: uuid.Must(uuid.NewRandomFromReader(g)), Type: typ, Data: data,
			Metadata: map[string]string{"source": "pgjet-demo"},
		})
	}
	add(TypeOrderPlaced, map[string]any{
		"order_id": id.String(), "customer_id": fmt.Sprintf("cust-%04d", g.rng.IntN(5000)),
		"customer_email": fmt.Sprintf("customer%d@example.com", g.rng.IntN(5000)),
		"items":          items, "currency": "EUR", "channel": channels[g.rng.IntN(len(channels))],
		"placed_at": now, "note": nil,
	})
	switch r := g.rng.Float64(); {
	case r < 0.1:
		add(TypeOrderCancelled, map[string]any{"order_id": id.String(), "reason": "customer changed their mind", "cancelled_at": now})
		return o
	case r < 0.9:
		add(TypePaymentCaptured, map[string]any{"order_id": id.String(), "amount_cents": total, "method": methods[g.rng.IntN(len(methods))], "captured_at": now})
	default:
		return o
	}
	if g.rng.Float64() < 0.9 {
		c := carriers[g.rng.IntN(len(carriers))]
		add(TypeOrderShipped, map[string]any{"order_id": id.String(), "carrier_name": c[0], "carrier_code": c[1],
			"tracking_number": fmt.Sprintf("TRK%010d", g.rng.IntN(1e9)), "service_level": levels[g.rng.IntN(len(levels))],
			"shipped_at": now})
	} else {
		add(TypeOrderCancelled, map[string]any{"order_id": id.String(), "reason": "out of stock", "cancelled_at": now})
	}
	return o
}

// Read fills p with pseudo-random bytes, so the generator can mint UUIDs deterministically.
func (g *Generator) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(g.rng.Uint32())
	}
	return len(p), nil
}
