package pgjet_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/pgtest"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

// exampleT gives pgtest the testing.TB it wants inside an Example: failures panic and
// cleanups run when done is called. pgtest calls no other method.
type exampleT struct {
	testing.TB
	cleanups []func()
}

func (t *exampleT) Helper()                           {}
func (t *exampleT) Cleanup(f func())                  { t.cleanups = append(t.cleanups, f) }
func (t *exampleT) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (t *exampleT) Errorf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

func (t *exampleT) done() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

// exampleStore is newStore for Examples.
func exampleStore() (*pgjet.Store, func()) {
	s, _, done := exampleStorePool()
	return s, done
}

// exampleStorePool is exampleStore that also returns the store's pool.
func exampleStorePool() (*pgjet.Store, *pgxpool.Pool, func()) {
	t := &exampleT{}
	ctx := context.Background()
	pool := pgtest.Pool(t)
	must := func(err error) {
		if err != nil {
			t.done()
			panic(err)
		}
	}
	must(pgjet.Migrate(ctx, pool))
	s, err := pgjet.New(pgjet.Config{Pool: pool})
	must(err)
	_, err = s.Registry().RegisterFS(ctx, demoschemas.Files)
	must(err)
	return s, pool, t.done
}

func examplePayment(cents int64) pgjet.EventData {
	return pgjet.EventData{Type: "pgjet.demo.order.PaymentCaptured", Data: map[string]any{
		"order_id": "5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10", "amount_cents": cents, "method": "CARD",
		"captured_at": time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}}
}

// An aggregate folds a stream into state; Update runs commands on that state, retrying on
// conflicts with other writers, and a command id makes a retried command harmless.
func ExampleAggregate() {
	store, done := exampleStore()
	defer done()
	ctx := context.Background()

	// The state is the amount paymentCaptured so far. A snapshot is written every 100 events.
	payments := &pgjet.Aggregate[int64]{
		Type: "payments", SchemaVersion: 1, Every: 100,
		Apply: func(total int64, e pgjet.RecordedEvent, data map[string]any) (int64, error) {
			return total + data["amount_cents"].(int64), nil
		},
	}
	capture := func(cents int64) func(context.Context, int64, int64) ([]pgjet.EventData, error) {
		return func(_ context.Context, total, version int64) ([]pgjet.EventData, error) {
			if total+cents > 10_000 {
				return nil, errors.New("more than the order's total")
			}
			return []pgjet.EventData{examplePayment(cents)}, nil
		}
	}
	for _, cmd := range []struct {
		id    string
		cents int64
	}{{"capture-1", 6000}, {"capture-2", 3000}, {"capture-1", 6000}, {"capture-3", 2000}} {
		res, err := payments.Update(ctx, store, "order-42", pgjet.UpdateOptions{CommandID: cmd.id}, capture(cmd.cents))
		if err != nil {
			fmt.Println(cmd.id, "refused:", err)
			continue
		}
		fmt.Println(cmd.id, "at version", res.LastVersion, "duplicate:", res.Duplicate)
	}
	total, version, err := payments.Load(ctx, store, "order-42")
	if err != nil {
		panic(err)
	}
	fmt.Println("paymentCaptured", total, "cents in", version, "events")
	// Output:
	// capture-1 at version 1 duplicate: false
	// capture-2 at version 2 duplicate: false
	// capture-1 at version 1 duplicate: true
	// capture-3 refused: more than the order's total
	// paymentCaptured 9000 cents in 2 events
}

// Update decides on a stream's history and appends with the version it read; when
// another writer appended in between, it reads and decides again.
func ExampleStore_Update() {
	store, done := exampleStore()
	defer done()
	ctx := context.Background()

	attempts := 0
	res, err := store.Update(ctx, "order-7", pgjet.UpdateOptions{MaxAttempts: 3},
		func(ctx context.Context, history []pgjet.RecordedEvent) ([]pgjet.EventData, error) {
			attempts++
			if attempts == 1 {
				// Another writer appends while this decision is being made.
				if _, err := store.Append(ctx, "order-7", pgjet.Any, examplePayment(100)); err != nil {
					return nil, err
				}
			}
			if len(history) > 0 {
				return nil, nil // paid already: nothing to do
			}
			return []pgjet.EventData{examplePayment(100)}, nil
		})
	if err != nil {
		panic(err)
	}
	fmt.Println("attempts:", attempts, "version:", res.LastVersion, "appended:", len(res.EventIDs))
	// Output: attempts: 2 version: 1 appended: 0
}
