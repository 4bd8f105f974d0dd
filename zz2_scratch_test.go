package pgjet

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/pgjet/pgjet/internal/pgtest"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

func TestZZAppend(t *testing.T) {
	if os.Getenv("ZZ") == "" {
		t.Skip()
	}
	ctx := context.Background()
	pool := pgtest.Pool(t)
	if err := Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Registry().RegisterFS(ctx, demoschemas.Files); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE raw_events (LIKE pgjet.events INCLUDING ALL); CREATE TABLE raw_outbox (LIKE pgjet.outbox INCLUDING ALL)`); err != nil {
		t.Fatal(err)
	}
	mk := func() []EventData {
		evs := make([]EventData, 100)
		for i := range evs {
			evs[i] = EventData{ID: uuid.New(), Type: "pgjet.demo.order.OrderCancelled", Data: map[string]any{"order_id": uuid.NewString(), "reason": "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr", "cancelled_at": time.Now()}}
		}
		return evs
	}
	sample, err := s.prepare(ctx, pool, "x", Any, mk())
	if err != nil {
		t.Fatal(err)
	}
	raw := func() {
		ids := make([][16]byte, 100)
		types := make([]string, 100)
		rows := make([][]byte, 100)
		for i := range ids {
			ids[i] = uuid.New()
			types[i] = "pgjet.demo.order.OrderCancelled"
			rows[i] = sample.data[0]
		}
		if _, err := pool.Exec(ctx, `
		WITH ev AS (
			INSERT INTO raw_events (event_id, stream_id, version, type, schema_id, data)
			SELECT id, $2, ord, type, 1, data
			FROM unnest($1::uuid[], $3::text[], $4::bytea[]) WITH ORDINALITY AS t (id, type, data, ord)
			RETURNING position)
		INSERT INTO raw_outbox (position, partition) SELECT position, 0 FROM ev`, ids, "raw-"+uuid.NewString(), types, rows); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 4 {
		var tr, tp time.Duration
		var nr, np int
		for time.Since(time.Now()) >= 0 {
			start := time.Now()
			for time.Since(start) < 2*time.Second {
				raw()
				nr++
			}
			tr += time.Since(start)
			start = time.Now()
			for time.Since(start) < 2*time.Second {
				if _, err := s.Append(ctx, "order-"+uuid.NewString()[:8], Any, mk()...); err != nil {
					t.Fatal(err)
				}
				np++
			}
			tp += time.Since(start)
			break
		}
		t.Logf("round %d: raw %.0f ev/s  pgjet %.0f ev/s  ratio %.2f", round, float64(nr*100)/tr.Seconds(), float64(np*100)/tp.Seconds(), (float64(np)/tp.Seconds())/(float64(nr)/tr.Seconds()))
	}
}
