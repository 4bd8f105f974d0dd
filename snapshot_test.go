package pgjet_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/promtest"
)

// tally is the state of the counter aggregate: the counter's value and how many events set
// it. Apply checks each event continues the count, so a wrong snapshot cannot go unnoticed.
type tally struct {
	N      int64 `json:"n"`
	Events int   `json:"events"`
}

func counterAggregate(every int) *pgjet.Aggregate[tally] {
	return &pgjet.Aggregate[tally]{
		Type: "counter", SchemaVersion: 1, Every: every,
		Apply: func(c tally, e pgjet.RecordedEvent, data map[string]any) (tally, error) {
			n := data["amount_cents"].(int64)
			if n != c.N+1 {
				return c, fmt.Errorf("event %d sets %d after %d", e.Version, n, c.N)
			}
			return tally{N: n, Events: c.Events + 1}, nil
		},
	}
}

// appendCounter appends events setting the counter from+1 ... to.
func appendCounter(t *testing.T, s *pgjet.Store, stream string, from, to int64) {
	t.Helper()
	var evs []pgjet.EventData
	for n := from + 1; n <= to; n++ {
		evs = append(evs, setTo(n))
	}
	_, err := s.Append(context.Background(), stream, pgjet.Exact(from), evs...)
	require.NoError(t, err)
}

// storeWithRegistry is a store on pool whose metrics go to the returned registry.
func storeWithRegistry(t *testing.T, pool *pgxpool.Pool) (*pgjet.Store, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := pgjet.New(pgjet.Config{Pool: pool, Registerer: reg})
	require.NoError(t, err)
	return s, reg
}

type snapshotRow struct {
	Schema  int
	Version int64
}

func readSnapshot(t *testing.T, pool *pgxpool.Pool, stream string) snapshotRow {
	t.Helper()
	var r snapshotRow
	err := pool.QueryRow(context.Background(), `SELECT schema_version, version FROM pgjet.snapshots
		WHERE stream_id = $1 AND aggregate_type = 'counter'`, stream).Scan(&r.Schema, &r.Version)
	if err != nil {
		return snapshotRow{}
	}
	return r
}

func TestAggregateLoadsTheSameWithAndWithoutSnapshot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := newStore(t)
	s, reg := storeWithRegistry(t, pool)
	with, without := counterAggregate(5), counterAggregate(0)

	state, v, err := with.Load(ctx, s, "counter-1")
	require.NoError(t, err)
	require.Equal(t, tally{}, state, "a stream without events loads as the initial state")
	require.Zero(t, v)

	appendCounter(t, s, "counter-1", 0, 23)
	state, v, err = with.Load(ctx, s, "counter-1")
	require.NoError(t, err)
	require.Equal(t, tally{N: 23, Events: 23}, state)
	require.Equal(t, int64(23), v)
	require.Equal(t, snapshotRow{Schema: 1, Version: 23}, readSnapshot(t, pool, "counter-1"), "23 events replayed: a snapshot")
	require.Equal(t, 23.0, promtest.Value(t, reg, "pgjet_aggregate_load_events"))

	appendCounter(t, s, "counter-1", 23, 26)
	state, v, err = with.Load(ctx, s, "counter-1")
	require.NoError(t, err)
	require.Equal(t, 23.0+3, promtest.Value(t, reg, "pgjet_aggregate_load_events"), "only the 3 events after the snapshot were read")
	plain, pv, err := without.Load(ctx, s, "counter-1")
	require.NoError(t, err)
	require.Equal(t, plain, state)
	require.Equal(t, pv, v)
	require.Equal(t, tally{N: 26, Events: 26}, state)
	require.Equal(t, snapshotRow{Schema: 1, Version: 23}, readSnapshot(t, pool, "counter-1"), "3 events replayed: no new snapshot")
	require.Equal(t, 1.0, promtest.Value(t, reg, "pgjet_snapshot_writes_total", "result", "ok"))
	require.Zero(t, promtest.Value(t, reg, "pgjet_snapshot_ignored_total"))

	// Another aggregate type over the same stream keeps its own snapshot.
	other := counterAggregate(1)
	other.Type = "counter-audit"
	_, _, err = other.Load(ctx, s, "counter-1")
	require.NoError(t, err)
	require.Equal(t, snapshotRow{Schema: 1, Version: 23}, readSnapshot(t, pool, "counter-1"))
}

func TestAggregateWritesASnapshotEveryN(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := newStore(t)
	agg := counterAggregate(5)
	bump := func(_ context.Context, c tally, version int64) ([]pgjet.EventData, error) {
		require.Equal(t, int64(c.Events), version)
		return []pgjet.EventData{setTo(c.N + 1)}, nil
	}
	var seen []int64
	for range 12 {
		_, err := agg.Update(ctx, s, "counter-2", pgjet.UpdateOptions{}, bump)
		require.NoError(t, err)
		seen = append(seen, readSnapshot(t, pool, "counter-2").Version)
	}
	// Update k loads version k-1: the loads of versions 5 and 10 replayed 5 events.
	require.Equal(t, []int64{0, 0, 0, 0, 0, 5, 5, 5, 5, 5, 10, 10}, seen)
}

func TestAggregateIgnoresUnusableSnapshots(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		reason string
		tamper string // SQL run on the stream's snapshot ($1)
	}{
		{"schema", `UPDATE pgjet.snapshots SET schema_version = 99, data = '{"n": 999, "events": 999}' WHERE stream_id = $1`},
		{"corrupt", `UPDATE pgjet.snapshots SET data = 'not json' WHERE stream_id = $1`},
		{"stale", `UPDATE pgjet.snapshots SET version = 1000, data = '{"n": 999, "events": 999}' WHERE stream_id = $1`},
		// The stream was deleted and written again: its event at the snapshot's version
		// is another one.
		{"stale", `UPDATE pgjet.snapshots SET event_id = gen_random_uuid(), data = '{"n": 999, "events": 999}' WHERE stream_id = $1`},
	} {
		t.Run(c.tamper[:40], func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			_, pool := newStore(t)
			s, reg := storeWithRegistry(t, pool)
			agg := counterAggregate(5)
			appendCounter(t, s, "counter-3", 0, 12)
			_, _, err := agg.Load(ctx, s, "counter-3")
			require.NoError(t, err)
			require.Equal(t, snapshotRow{Schema: 1, Version: 12}, readSnapshot(t, pool, "counter-3"))

			_, err = pool.Exec(ctx, c.tamper, "counter-3")
			require.NoError(t, err)
			state, v, err := agg.Load(ctx, s, "counter-3")
			require.NoError(t, err)
			require.Equal(t, tally{N: 12, Events: 12}, state, "the snapshot was not trusted")
			require.Equal(t, int64(12), v)
			require.Equal(t, 1.0, promtest.Value(t, reg, "pgjet_snapshot_ignored_total", "reason", c.reason))
			require.Equal(t, 1.0, promtest.Value(t, reg, "pgjet_snapshot_ignored_total"))
			require.Equal(t, 12.0+12, promtest.Value(t, reg, "pgjet_aggregate_load_events"), "the stream was replayed from its start")

			// The unusable snapshot was replaced by a good one.
			require.Equal(t, snapshotRow{Schema: 1, Version: 12}, readSnapshot(t, pool, "counter-3"))
			appendCounter(t, s, "counter-3", 12, 13)
			state, _, err = agg.Load(ctx, s, "counter-3")
			require.NoError(t, err)
			require.Equal(t, tally{N: 13, Events: 13}, state)
			require.Equal(t, 12.0+12+1, promtest.Value(t, reg, "pgjet_aggregate_load_events"))
			require.Equal(t, 1.0, promtest.Value(t, reg, "pgjet_snapshot_ignored_total"))
		})
	}
}

func TestAggregateUpdateConcurrentWriters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	agg := counterAggregate(3)
	const writers, each = 8, 5
	opts := pgjet.UpdateOptions{MaxAttempts: 1000, MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for range each {
				_, err := agg.Update(ctx, s, "counter-4", opts, func(_ context.Context, c tally, _ int64) ([]pgjet.EventData, error) {
					return []pgjet.EventData{setTo(c.N + 1)}, nil
				})
				if err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	state, v, err := agg.Load(ctx, s, "counter-4")
	require.NoError(t, err)
	require.Equal(t, tally{N: writers * each, Events: writers * each}, state)
	require.Equal(t, int64(writers*each), v)
	plain, _, err := counterAggregate(0).Load(ctx, s, "counter-4")
	require.NoError(t, err)
	require.Equal(t, state, plain)
}

func TestAggregateErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	appendCounter(t, s, "counter-5", 0, 3)

	boom := errors.New("boom")
	agg := counterAggregate(1)
	agg.Apply = func(c tally, e pgjet.RecordedEvent, _ map[string]any) (tally, error) {
		if e.Version == 2 {
			return c, boom
		}
		return c, nil
	}
	_, _, err := agg.Load(ctx, s, "counter-5")
	require.ErrorIs(t, err, boom)
	_, err = agg.Update(ctx, s, "counter-5", pgjet.UpdateOptions{}, func(context.Context, tally, int64) ([]pgjet.EventData, error) {
		t.Fatal("decide must not run after a failed load")
		return nil, nil
	})
	require.ErrorIs(t, err, boom)

	_, _, err = (&pgjet.Aggregate[tally]{Type: "counter"}).Load(ctx, s, "counter-5")
	require.ErrorContains(t, err, "Apply is required")
	_, _, err = (&pgjet.Aggregate[tally]{Apply: agg.Apply}).Load(ctx, s, "counter-5")
	require.ErrorContains(t, err, "Type is required")
	_, _, err = counterAggregate(1).Load(ctx, s, "")
	require.ErrorIs(t, err, pgjet.ErrInvalidStreamID)

	// A snapshot that cannot be encoded is not written, and the load still succeeds.
	failing := counterAggregate(1)
	failing.Marshal = func(tally) ([]byte, error) { return nil, boom }
	state, _, err := failing.Load(ctx, s, "counter-5")
	require.NoError(t, err)
	require.Equal(t, tally{N: 3, Events: 3}, state)
}

// gate is a state whose Initial value is not its zero value, in a field tagged omitempty:
// the default encoding/json snapshot omits open=false, and reading it back into Initial()
// gives open=true.
type gate struct {
	N    int64 `json:"n"`
	Open bool  `json:"open,omitempty"`
}

// A snapshot that does not read back as the state it was taken of must not be written:
// a load from it would return another state than a full replay.
func TestAggregateWritesNoSnapshotThatLoadsAsAnotherState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := newStore(t)
	s, reg := storeWithRegistry(t, pool)
	agg := func(every int) *pgjet.Aggregate[gate] {
		return &pgjet.Aggregate[gate]{
			Type: "gate", SchemaVersion: 1, Every: every,
			Initial: func() gate { return gate{Open: true} },
			Apply: func(g gate, _ pgjet.RecordedEvent, data map[string]any) (gate, error) {
				g.N = data["amount_cents"].(int64)
				g.Open = g.N < 3 // closes at 3
				return g, nil
			},
		}
	}
	appendCounter(t, s, "gate-1", 0, 6)
	want, wantV, err := agg(0).Load(ctx, s, "gate-1")
	require.NoError(t, err)
	require.Equal(t, gate{N: 6, Open: false}, want)
	for range 2 { // the first load would write the snapshot, the second read it
		got, v, err := agg(5).Load(ctx, s, "gate-1")
		require.NoError(t, err)
		require.Equal(t, want, got)
		require.Equal(t, wantV, v)
	}
	require.Equal(t, 2.0, promtest.Value(t, reg, "pgjet_snapshot_writes_total", "result", "lossy"))
	require.Zero(t, promtest.Value(t, reg, "pgjet_snapshot_writes_total", "result", "ok"))
	var rows int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pgjet.snapshots`).Scan(&rows))
	require.Zero(t, rows)

	// While the state does round-trip (open, before 3), snapshots are written as usual.
	appendCounter(t, s, "gate-2", 0, 2)
	got, _, err := agg(1).Load(ctx, s, "gate-2")
	require.NoError(t, err)
	require.Equal(t, gate{N: 2, Open: true}, got)
	require.Equal(t, 1.0, promtest.Value(t, reg, "pgjet_snapshot_writes_total", "result", "ok"))
}

// A state held in interfaces (a map[string]any) whose values encoding/json reads back as
// other types (an int64 as a float64) writes the same JSON again, but would load as
// another state than a replay: Apply would then see a float64 where it put an int64. No
// snapshot is written for it.
func TestAggregateWritesNoSnapshotThatChangesAValuesType(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := newStore(t)
	s, reg := storeWithRegistry(t, pool)
	agg := &pgjet.Aggregate[map[string]any]{
		Type: "loose", SchemaVersion: 1, Every: 1,
		Initial: func() map[string]any { return map[string]any{} },
		Apply: func(st map[string]any, _ pgjet.RecordedEvent, data map[string]any) (map[string]any, error) {
			st["n"] = data["amount_cents"].(int64)
			return st, nil
		},
	}
	appendCounter(t, s, "loose-1", 0, 3)
	for range 2 {
		got, v, err := agg.Load(ctx, s, "loose-1")
		require.NoError(t, err)
		require.Equal(t, map[string]any{"n": int64(3)}, got)
		require.Equal(t, int64(3), v)
	}
	require.Equal(t, 2.0, promtest.Value(t, reg, "pgjet_snapshot_writes_total", "result", "lossy"))
	var rows int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pgjet.snapshots`).Scan(&rows))
	require.Zero(t, rows)

	// A state whose interface values do come back as they were (strings, bools) is written.
	str := &pgjet.Aggregate[map[string]any]{
		Type: "loose-str", SchemaVersion: 1, Every: 1,
		Initial: func() map[string]any { return map[string]any{} },
		Apply: func(st map[string]any, _ pgjet.RecordedEvent, data map[string]any) (map[string]any, error) {
			st["n"], st["even"] = fmt.Sprint(data["amount_cents"]), data["amount_cents"].(int64)%2 == 0
			return st, nil
		},
	}
	_, _, err := str.Load(ctx, s, "loose-1")
	require.NoError(t, err)
	require.Equal(t, 1.0, promtest.Value(t, reg, "pgjet_snapshot_writes_total", "result", "ok"))
	got, _, err := str.Load(ctx, s, "loose-1")
	require.NoError(t, err)
	require.Equal(t, map[string]any{"n": "3", "even": false}, got)
}
