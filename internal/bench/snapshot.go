package bench

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgjet/pgjet"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

// SnapshotResult compares loading one aggregate with and without a snapshot.
type SnapshotResult struct {
	// Events is the stream's length; Every the aggregate's snapshot interval.
	Events, Every int
	// Without and With are the median load times: folding every event, and reading the
	// snapshot plus the events after it (Every/2 of them, the average).
	Without, With time.Duration
}

// Ratio is how many times faster a load with a snapshot is.
func (r SnapshotResult) Ratio() float64 { return float64(r.Without) / float64(r.With) }

// String formats the result as a row of the bench report: the time with a snapshot, the
// time without, and their ratio without/with.
func (r SnapshotResult) String() string {
	return fmt.Sprintf("%-46s %14s %14s %6.1fx   %s",
		fmt.Sprintf("load aggregate of %d events, snapshot/%d", r.Events, r.Every),
		format(ms(r.With), "ms"), format(ms(r.Without), "ms"), r.Ratio(),
		"the same load without snapshot (ratio: without/with, target >= 20x)")
}

// SnapshotLoad appends events OrderCancelled events (300 bytes of Avro each) to one stream
// and times loading an aggregate that decodes and folds each of them, without snapshots
// and with a snapshot every 100 events.
func SnapshotLoad(ctx context.Context, pool *pgxpool.Pool, events int) (SnapshotResult, error) {
	const every, loads = 100, 9
	store, err := pgjet.New(pgjet.Config{Pool: pool})
	if err != nil {
		return SnapshotResult{}, err
	}
	if _, err := store.Registry().RegisterFS(ctx, demoschemas.Files); err != nil {
		return SnapshotResult{}, err
	}
	stream := "order-snapshot" + uuid.NewString()[:8]
	add := func(n int) error {
		for n > 0 {
			evs := make([]pgjet.EventData, min(n, 1000))
			for i := range evs {
				evs[i] = event()
			}
			if _, err := store.Append(ctx, stream, pgjet.Any, evs...); err != nil {
				return err
			}
			n -= len(evs)
		}
		return nil
	}
	// The state: cancellations and the bytes of their reasons.
	type tally struct{ Events, ReasonBytes int }
	agg := func(every int) *pgjet.Aggregate[tally] {
		return &pgjet.Aggregate[tally]{
			Type: "bench", SchemaVersion: 1, Every: every,
			Apply: func(t tally, _ pgjet.RecordedEvent, data map[string]any) (tally, error) {
				reason, _ := data["reason"].(string)
				return tally{Events: t.Events + 1, ReasonBytes: t.ReasonBytes + len(reason)}, nil
			},
		}
	}
	timeLoads := func(a *pgjet.Aggregate[tally]) (time.Duration, tally, error) {
		var (
			times []time.Duration
			state tally
		)
		for range loads {
			start := time.Now()
			s, _, err := a.Load(ctx, store, stream)
			if err != nil {
				return 0, tally{}, err
			}
			times = append(times, time.Since(start))
			state = s
		}
		slices.Sort(times)
		return times[len(times)/2], state, nil
	}

	// A snapshot at events-every/2, then every/2 more events: loads read the snapshot and
	// every/2 events, and write no new snapshot.
	if err := add(events - every/2); err != nil {
		return SnapshotResult{}, err
	}
	if _, _, err := agg(every).Load(ctx, store, stream); err != nil {
		return SnapshotResult{}, err
	}
	if err := add(every / 2); err != nil {
		return SnapshotResult{}, err
	}
	without, plain, err := timeLoads(agg(0))
	if err != nil {
		return SnapshotResult{}, err
	}
	with, snapped, err := timeLoads(agg(every))
	if err != nil {
		return SnapshotResult{}, err
	}
	if plain != snapped || plain.Events != events {
		return SnapshotResult{}, fmt.Errorf("snapshot load: states differ: %+v without a snapshot, %+v with", plain, snapped)
	}
	return SnapshotResult{Events: events, Every: every, Without: without, With: with}, nil
}
