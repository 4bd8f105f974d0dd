package pgjet_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/pgtest"
	"github.com/pgjet/pgjet/internal/promtest"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

// groupStore is a store with group commit (2 committers) on a fresh migrated database,
// the demo schemas registered, and the registry of its metrics.
func groupStore(t *testing.T) (*pgjet.Store, *pgxpool.Pool, *prometheus.Registry) {
	t.Helper()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	require.NoError(t, pgjet.Migrate(ctx, pool))
	reg := prometheus.NewRegistry()
	s, err := pgjet.New(pgjet.Config{Pool: pool, GroupCommit: true, GroupCommitConns: 2, Registerer: reg})
	require.NoError(t, err)
	_, err = s.Registry().RegisterFS(ctx, demoschemas.Files)
	require.NoError(t, err)
	return s, pool, reg
}

// Concurrent appends through group commit: each keeps its own expectation check and
// outcome — winners, conflicts, idempotent retries and a batch-breaking race on one event id
// all get the answer they would get alone, and streams stay gap-free.
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool, reg := groupStore(t)

	const writers, rounds = 32, 20
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		wins      = map[string]int{}
		conflicts int
		shared    = uuid.New() // appended by several writers at once: one wins, the rest are retries
	)
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				stream := fmt.Sprintf("order-g%d", (w+r)%5)
				v, err := s.StreamVersion(ctx, stream)
				if errors.Is(err, pgjet.ErrStreamNotFound) {
					v, err = 0, nil
				}
				if err != nil {
					t.Error(err)
					return
				}
				_, err = s.Append(ctx, stream, pgjet.Exact(v), cancelEvent(fmt.Sprintf("w%d r%d", w, r)))
				mu.Lock()
				switch {
				case err == nil:
					wins[stream]++
				case errors.Is(err, pgjet.ErrWrongExpectedVersion):
					conflicts++
				default:
					t.Error(err)
				}
				mu.Unlock()
				if r == rounds/2 {
					res, err := s.Append(ctx, "order-shared", pgjet.Any, withID(cancelEvent("shared"), shared))
					if err != nil {
						t.Error(err)
					} else if res.FirstVersion != 1 {
						t.Errorf("shared event at version %d", res.FirstVersion)
					}
				}
			}
		})
	}
	wg.Wait()
	total := 0
	for stream, n := range wins {
		v, err := s.StreamVersion(ctx, stream)
		require.NoError(t, err)
		require.Equal(t, int64(n), v, "stream %s: one version per successful append", stream)
		total += n
	}
	require.Equal(t, writers*rounds, total+conflicts)
	require.Equal(t, total+1, count(t, pool, "pgjet.events"))
	require.Equal(t, total+1, count(t, pool, "pgjet.outbox"))
	var bad int
	require.NoError(t, pool.QueryRow(ctx, `
		SELECT count(*) FROM (SELECT stream_id, max(version) AS m, count(*) AS n FROM pgjet.events GROUP BY stream_id) x
		WHERE x.m <> x.n`).Scan(&bad))
	require.Zero(t, bad, "gap-free versions")
	require.Positive(t, promtest.Value(t, reg, "pgjet_append_group_size"), "no append was ever grouped")
}

// Appends expecting Any go through one statement for many appends. Streams shared by
// several writers (so one batch holds a stream more than once), appends of one to three
// events and retries of stored ids all get the answer they would get alone; versions stay
// gap-free, and within a stream positions and transaction stamps follow the versions.
func TestGroupCommitMergesAnyAppends(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool, reg := groupStore(t)

	const writers, rounds = 32, 30
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		results []pgjet.AppendResult
		events  int
	)
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				stream := fmt.Sprintf("order-m%d", (w+r)%7)
				evs := make([]pgjet.EventData, 1+r%3)
				for i := range evs {
					evs[i] = withID(cancelEvent(fmt.Sprintf("w%d r%d e%d", w, r, i)), uuid.New())
				}
				res, err := s.Append(ctx, stream, pgjet.Any, evs...)
				if err != nil {
					t.Error(err)
					return
				}
				if r%5 == 0 { // a retry of the same append: the same answer, marked Duplicate
					again, err := s.Append(ctx, stream, pgjet.Any, evs...)
					if err != nil {
						t.Error(err)
						return
					}
					if !again.Duplicate || again.FirstVersion != res.FirstVersion || !slices.Equal(again.Positions, res.Positions) {
						t.Errorf("retry of %s v%d: got %+v", stream, res.FirstVersion, again)
					}
				}
				mu.Lock()
				results = append(results, res)
				events += len(evs)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Equal(t, events, count(t, pool, "pgjet.events"))
	require.Equal(t, events, count(t, pool, "pgjet.outbox"))
	for _, res := range results {
		require.Equal(t, len(res.Positions), int(res.LastVersion-res.FirstVersion+1), "%+v", res)
		for i, pos := range res.Positions {
			var stream string
			var version int64
			require.NoError(t, pool.QueryRow(ctx, `SELECT stream_id, version FROM pgjet.events WHERE position = $1`, pos).Scan(&stream, &version))
			require.Equal(t, res.StreamID, stream)
			require.Equal(t, res.FirstVersion+int64(i), version)
		}
	}
	var bad int
	require.NoError(t, pool.QueryRow(ctx, `
		SELECT count(*) FROM (
			SELECT version, count(*) OVER w AS n, max(version) OVER w AS m,
				lag(position) OVER (PARTITION BY stream_id ORDER BY version) AS prev_pos, position,
				lag(tx_id) OVER (PARTITION BY stream_id ORDER BY version) AS prev_tx, tx_id
			FROM pgjet.events WINDOW w AS (PARTITION BY stream_id)) x
		WHERE x.n <> x.m OR x.prev_pos >= x.position OR x.prev_tx > x.tx_id`).Scan(&bad))
	require.Zero(t, bad, "gap-free versions; positions and stamps in version order")
	require.Positive(t, promtest.Value(t, reg, "pgjet_append_group_merged_total"), "no append went through the merged statement")
	require.Zero(t, promtest.Value(t, reg, "pgjet_append_group_fallbacks_total"), "a merged batch failed and was retried one append at a time")
}

// An append waiting in the group-commit queue leaves it when its context ends, and is not
// written: a stalled batch does not hold its callers past their deadlines.
func TestQueuedAppendLeavesOnItsDeadline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool, _ := groupStore(t)
	_, err := s.Append(ctx, "order-held", pgjet.Any, cancelEvent("first"))
	require.NoError(t, err)

	// Both committers (GroupCommitConns: 2) wait on the stream row this transaction holds.
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, `SELECT 1 FROM pgjet.streams WHERE stream_id = 'order-held' FOR UPDATE`)
	require.NoError(t, err)
	var held sync.WaitGroup
	for i := range 2 {
		held.Go(func() {
			if _, err := s.Append(ctx, "order-held", pgjet.Any, cancelEvent(fmt.Sprint("held ", i))); err != nil {
				t.Error(err)
			}
		})
		require.Eventually(t, func() bool { return lockWaiters(t, pool) == i+1 }, 10*time.Second, 10*time.Millisecond, "committer %d waits for the stream row", i+1)
	}

	// This one can only queue; its deadline passes while the committers wait.
	done := make(chan error, 1)
	go func() {
		actx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		_, err := s.Append(actx, "order-free", pgjet.Any, cancelEvent("queued"))
		done <- err
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.DeadlineExceeded)
	case <-time.After(10 * time.Second):
		t.Fatal("the queued append waited for the batches ahead of it past its deadline")
	}
	require.NoError(t, tx.Rollback(ctx))
	held.Wait()
	_, err = s.StreamVersion(ctx, "order-free")
	require.ErrorIs(t, err, pgjet.ErrStreamNotFound, "the append that left the queue was written")
	v, err := s.StreamVersion(ctx, "order-held")
	require.NoError(t, err)
	require.Equal(t, int64(3), v)
}
