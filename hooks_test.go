package pgjet_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
)

// shippedAfterPlaced is a domain hook: an order ships after it was placed, and only once
// placed.
func shippedAfterPlaced(ctx context.Context, ev pgjet.HookEvent) ([]pgjet.FieldError, error) {
	placedAt, found := time.Time{}, false
	for _, e := range ev.Earlier {
		if e.Type == placed {
			placedAt, found = e.Data["placed_at"].(time.Time), true
		}
	}
	if !found && ev.StreamVersion > 0 {
		stored, err := ev.ReadStream(ctx, ev.StreamID, pgjet.Forward, 1, 1)
		if err != nil {
			return nil, err
		}
		if stored[0].Type == placed {
			d, err := ev.Decode(ctx, stored[0])
			if err != nil {
				return nil, err
			}
			placedAt, found = d["placed_at"].(time.Time), true
		}
	}
	if !found {
		return []pgjet.FieldError{{Rule: "order_placed", Message: "the order was never placed"}}, nil
	}
	if at := ev.Data["shipped_at"].(time.Time); !at.After(placedAt) {
		return []pgjet.FieldError{{Path: "shipped_at", Rule: "after_placed_at",
			Message: "must be after the order's placed_at " + placedAt.Format(time.RFC3339), Value: at.Format(time.RFC3339)}}, nil
	}
	return nil, nil
}

func placedEvent(at string) pgjet.EventData {
	return pgjet.EventData{Type: placed, Data: json.RawMessage(`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10",
		"customer_id":"c-1","customer_email":"c1@example.com","items":[{"sku":"SKU-1","quantity":1,"unit_price_cents":100}],
		"placed_at":"` + at + `"}`)}
}

func shippedEvent(at string) pgjet.EventData {
	return pgjet.EventData{Type: shipped, Data: json.RawMessage(`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10",
		"carrier_name":"DHL","carrier_code":"DHL","tracking_number":"T1","shipped_at":"` + at + `"}`)}
}

func requireFields(t *testing.T, err error) map[string]string {
	t.Helper()
	var verr *pgjet.ValidationError
	require.True(t, errors.As(err, &verr), "want *ValidationError, got %v", err)
	out := map[string]string{}
	for _, f := range verr.Fields {
		out[f.Path] = f.Rule
	}
	return out
}

func TestHooks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := newStore(t)
	s, err := pgjet.New(pgjet.Config{Pool: pool, Hooks: map[string][]pgjet.Hook{shipped: {shippedAfterPlaced}}})
	require.NoError(t, err)

	// No stream yet: the hook sees version 0.
	_, err = s.Append(ctx, "order-h1", pgjet.NoStream, shippedEvent("2026-01-02T00:00:00Z"))
	require.Equal(t, map[string]string{"events[0].data": "order_placed"}, requireFields(t, err))
	require.ErrorIs(t, err, pgjet.ErrValidation)

	// In one append, the hook sees the earlier events.
	_, err = s.Append(ctx, "order-h1", pgjet.NoStream, placedEvent("2026-01-02T00:00:00Z"), shippedEvent("2026-01-01T00:00:00Z"))
	require.Equal(t, map[string]string{"events[1].data.shipped_at": "after_placed_at"}, requireFields(t, err))
	require.Equal(t, 0, count(t, pool, "pgjet.events"), "a failed hook writes nothing")

	_, err = s.Append(ctx, "order-h1", pgjet.NoStream, placedEvent("2026-01-02T00:00:00Z"))
	require.NoError(t, err)
	// Across appends, the hook reads the stream.
	_, err = s.Append(ctx, "order-h1", pgjet.Exact(1), shippedEvent("2026-01-01T00:00:00Z"))
	require.Equal(t, map[string]string{"events[0].data.shipped_at": "after_placed_at"}, requireFields(t, err))
	_, err = s.Append(ctx, "order-h1", pgjet.Exact(1), shippedEvent("2026-01-03T00:00:00Z"))
	require.NoError(t, err)

	// Hooks of several types and events collect into one error; a Rule defaults to "hook".
	require.NoError(t, s.Hook(cancelled, func(_ context.Context, ev pgjet.HookEvent) ([]pgjet.FieldError, error) {
		if ev.Data["reason"] == "bad" {
			return []pgjet.FieldError{{Path: "reason", Message: "not a reason"}}, nil
		}
		return nil, nil
	}))
	_, err = s.Append(ctx, "order-h2", pgjet.Any, cancelEvent("bad"), shippedEvent("2026-01-03T00:00:00Z"), cancelEvent("bad"))
	require.Equal(t, map[string]string{
		"events[0].data.reason": "hook", "events[1].data": "order_placed", "events[2].data.reason": "hook",
	}, requireFields(t, err))

	// A hook's own error fails the append as it is.
	boom := errors.New("boom")
	require.NoError(t, s.Hook(cancelled, func(context.Context, pgjet.HookEvent) ([]pgjet.FieldError, error) { return nil, boom }))
	_, err = s.Append(ctx, "order-h3", pgjet.Any, cancelEvent("x"))
	require.ErrorIs(t, err, boom)
	require.NotErrorIs(t, err, pgjet.ErrValidation)

	// Schema and rule failures are reported before hooks run.
	_, err = s.Append(ctx, "order-h3", pgjet.Any, cancelEvent(""))
	require.Equal(t, map[string]string{"events[0].data.reason": "minLength"}, requireFields(t, err))
}

func TestHooksInAppendTxSeeTheTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := newStore(t)
	var seen []int64
	s, err := pgjet.New(pgjet.Config{Pool: pool, Hooks: map[string][]pgjet.Hook{cancelled: {
		func(_ context.Context, ev pgjet.HookEvent) ([]pgjet.FieldError, error) {
			seen = append(seen, ev.StreamVersion)
			return nil, nil
		}}}})
	require.NoError(t, err)
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := s.AppendTx(ctx, tx, "order-tx", pgjet.NoStream, cancelEvent("a"), cancelEvent("b")); err != nil {
			return err
		}
		_, err := s.AppendTx(ctx, tx, "order-tx", pgjet.Exact(2), cancelEvent("c"))
		return err
	})
	require.NoError(t, err)
	require.Equal(t, []int64{0, 0, 2}, seen, "the second AppendTx sees the first one's uncommitted events")
}

// A hook that reads the stream under AppendTx reads inside the caller's transaction: it
// sees the events appended there before, as StreamVersion does, and needs no connection of
// the pool, which here has only the one the caller holds (through the store's pool, the
// read waited for the caller's connection until the deadline, and found no stream).
func TestHookReadsInAppendTxUseTheTransaction(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pool := oneConnPool(t)
	s, err := pgjet.New(pgjet.Config{Pool: pool, Hooks: map[string][]pgjet.Hook{shipped: {shippedAfterPlaced}}})
	require.NoError(t, err)

	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := s.AppendTx(ctx, tx, "order-txr", pgjet.NoStream, placedEvent("2026-01-02T00:00:00Z")); err != nil {
			return err
		}
		readCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := s.AppendTx(readCtx, tx, "order-txr", pgjet.Exact(1), shippedEvent("2026-01-01T00:00:00Z"))
		require.Equal(t, map[string]string{"events[0].data.shipped_at": "after_placed_at"}, requireFields(t, err),
			"the hook read the placed event of this transaction")
		_, err = s.AppendTx(readCtx, tx, "order-txr", pgjet.Exact(1), shippedEvent("2026-01-03T00:00:00Z"))
		return err
	})
	require.NoError(t, err)
	v, err := s.StreamVersion(ctx, "order-txr")
	require.NoError(t, err)
	require.Equal(t, int64(2), v)
}
