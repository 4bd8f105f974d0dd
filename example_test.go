package pgjet_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgjet/pgjet"
)

func exampleCancel(reason string) pgjet.EventData {
	return pgjet.EventData{Type: "pgjet.demo.order.OrderCancelled", Data: json.RawMessage(`{
		"order_id": "5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10", "reason": "` + reason + `",
		"cancelled_at": "2026-11-26T10:00:00Z"}`)}
}

// Append checks the expected version: a second writer that read the same version gets a
// typed conflict error with the stream's actual version, and nothing of its append is
// stored.
func ExampleStore_Append() {
	store, done := exampleStore()
	defer done()
	ctx := context.Background()

	res, err := store.Append(ctx, "order-1", pgjet.NoStream, exampleCancel("changed my mind"))
	fmt.Println(res.FirstVersion, res.LastVersion, err)

	_, err = store.Append(ctx, "order-1", pgjet.NoStream, exampleCancel("me too"))
	var conflict *pgjet.WrongExpectedVersionError
	if errors.As(err, &conflict) {
		fmt.Println("conflict: expected", conflict.Expected, "actual", conflict.Actual)
	}

	// Invalid data is refused before anything is written, every failing field listed.
	_, err = store.Append(ctx, "order-2", pgjet.Any, pgjet.EventData{
		Type: "pgjet.demo.order.OrderCancelled", Data: json.RawMessage(`{"order_id": "nope"}`)})
	var invalid *pgjet.ValidationError
	if errors.As(err, &invalid) {
		for _, f := range invalid.Fields {
			fmt.Println(f.Path, f.Rule)
		}
	}
	// Output:
	// 1 1 <nil>
	// conflict: expected no_stream actual 1
	// events[0].data.order_id uuid
	// events[0].data.reason required
	// events[0].data.cancelled_at required
}

// AppendTx puts a service's own change, its events and their outbox rows in one
// transaction: if the transaction rolls back, no event is stored or ever published.
func ExampleStore_AppendTx() {
	store, pool, done := exampleStorePool()
	defer done()
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE orders (id text PRIMARY KEY, status text)`); err != nil {
		panic(err)
	}

	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO orders VALUES ('order-7', 'cancelled')`); err != nil {
			return err
		}
		_, err := store.AppendTx(ctx, tx, "order-7", pgjet.NoStream, exampleCancel("out of stock"))
		return err
	})
	fmt.Println("committed:", err)

	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := store.AppendTx(ctx, tx, "order-8", pgjet.NoStream, exampleCancel("never")); err != nil {
			return err
		}
		return errors.New("the service changes its mind")
	})
	fmt.Println("rolled back:", err)
	_, err = store.StreamVersion(ctx, "order-8")
	fmt.Println(errors.Is(err, pgjet.ErrStreamNotFound))
	// Output:
	// committed: <nil>
	// rolled back: the service changes its mind
	// true
}

// ReadStream reads a stream forward or backward from a version; Decode returns an
// event's data in the newest shape of its type.
func ExampleStore_ReadStream() {
	store, done := exampleStore()
	defer done()
	ctx := context.Background()
	for _, reason := range []string{"first", "second", "third"} {
		if _, err := store.Append(ctx, "order-3", pgjet.Any, exampleCancel(reason)); err != nil {
			panic(err)
		}
	}

	events, err := store.ReadStream(ctx, "order-3", pgjet.Backward, pgjet.End, 2)
	if err != nil {
		panic(err)
	}
	for _, e := range events {
		data, err := store.Decode(ctx, e)
		if err != nil {
			panic(err)
		}
		fmt.Println(e.Version, data["reason"])
	}
	// Output:
	// 3 third
	// 2 second
}

// ReadAll follows every event of every stream with a cursor, in an order that never skips a
// transaction that commits late and keeps each stream in version order.
func ExampleStore_ReadAll() {
	store, done := exampleStore()
	defer done()
	ctx := context.Background()
	for _, stream := range []string{"order-a", "order-b", "order-a"} {
		if _, err := store.Append(ctx, stream, pgjet.Any, exampleCancel("x")); err != nil {
			panic(err)
		}
	}

	var cursor pgjet.AllPosition
	seen := 0
	for deadline := time.Now().Add(30 * time.Second); seen < 3 && time.Now().Before(deadline); {
		// Events wait until every older transaction of the cluster has ended.
		page, err := store.ReadAll(ctx, cursor, 100)
		if err != nil {
			panic(err)
		}
		for _, e := range page {
			fmt.Println(e.StreamID, e.Version)
			cursor = e.Next()
			seen++
		}
		if len(page) == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Output:
	// order-a 1
	// order-b 1
	// order-a 2
}
