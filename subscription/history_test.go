package subscription_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/pgtest"
	"github.com/pgjet/pgjet/internal/relay"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
	"github.com/pgjet/pgjet/subscription"
)

// historyEnv returns a store with the demo schemas on a fresh migrated database, its pool,
// and a connection to a NATS server of the test's own (no events stream yet).
func historyEnv(t *testing.T) (*pgjet.Store, *pgxpool.Pool, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	ctx := t.Context()
	pool := pgtest.Pool(t)
	require.NoError(t, pgjet.Migrate(ctx, pool))
	store, err := pgjet.New(pgjet.Config{Pool: pool})
	require.NoError(t, err)
	_, err = store.Registry().RegisterFS(ctx, demoschemas.Files)
	require.NoError(t, err)
	nc, js := natstest.Connect(t, natstest.Server(t))
	return store, pool, nc, js
}

// runRelay runs a relay on pool and nc until the test ends.
func runRelay(t *testing.T, pool *pgxpool.Pool, nc *nats.Conn) {
	t.Helper()
	r, err := relay.New(relay.Config{Pool: pool, Conn: nc, PollInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { stop(); require.NoError(t, <-done) })
}

// A subscription starting from a Postgres position replays what JetStream no longer holds
// and goes live with no gap and no duplicate, although events are appended during the
// replay and a transaction that began before the seam commits in the middle of it.
func TestStartFromPostgresPosition(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store, pool, nc, js := historyEnv(t)

	event := func(i int) pgjet.EventData {
		return pgjet.EventData{ID: uuid.New(), Type: cancelled, Data: json.RawMessage(fmt.Sprintf(
			`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","reason":"#%d","cancelled_at":"2026-11-26T10:00:00Z"}`, i))}
	}
	for i := range 40 {
		_, err := store.Append(ctx, fmt.Sprintf("order-%d", i%4), pgjet.Any, event(i))
		require.NoError(t, err)
	}
	runRelay(t, pool, nc)
	var stream jetstream.Stream
	eventually(t, "40 events in JetStream", func() bool {
		s, err := js.Stream(ctx, subscription.DefaultStream)
		stream = s
		return err == nil && s.CachedInfo().State.Msgs == 40
	})
	// Retention has dropped the first half.
	require.NoError(t, stream.Purge(ctx, jetstream.WithPurgeSequence(21)))

	// A transaction that began before the subscription and commits during its replay.
	slow, err := pool.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = slow.Rollback(context.Background()) })
	_, err = store.AppendTx(ctx, slow, "order-slow", pgjet.NoStream, event(100))
	require.NoError(t, err)

	var (
		mu       sync.Mutex
		seen     = map[string]int{}
		versions = map[string][]int64{}
		once     sync.Once
		wg       sync.WaitGroup
	)
	handler := func(ctx context.Context, evs []subscription.Event) error {
		mu.Lock()
		for _, ev := range evs {
			seen[fmt.Sprintf("%s/%d", ev.StreamID, ev.Version)]++
			versions[ev.StreamID] = append(versions[ev.StreamID], ev.Version)
		}
		mu.Unlock()
		once.Do(func() {
			require.NoError(t, slow.Commit(ctx))
			wg.Go(func() { // appends racing the seam
				for i := range 30 {
					_, err := store.Append(context.Background(), fmt.Sprintf("order-%d", i%5), pgjet.Any, event(200+i))
					require.NoError(t, err)
				}
			})
		})
		return nil
	}
	run(t, newSub(t, js, subscription.Config{
		Group: "history", Start: subscription.FromPosition(pgjet.AllPosition{}), History: store, Postgres: pool,
		BatchHandler: handler, BatchSize: 7, BatchWait: 10 * time.Millisecond, Logger: zaptest.NewLogger(t),
	}))
	const total = 40 + 1 + 30
	eventually(t, "every event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == total
	})
	wg.Wait()
	// Let anything extra (a duplicate) arrive: wait until JetStream has all and the group acked all.
	eventually(t, "the group to catch up", func() bool {
		cons, err := js.Consumer(ctx, subscription.DefaultStream, "history")
		si, serr := js.Stream(ctx, subscription.DefaultStream)
		return err == nil && serr == nil && si.CachedInfo().State.LastSeq == 40+1+30 &&
			cons.CachedInfo().AckFloor.Stream == si.CachedInfo().State.LastSeq
	})
	mu.Lock()
	defer mu.Unlock()
	for k, n := range seen {
		require.Equal(t, 1, n, "%s seen %d times", k, n)
	}
	for s, vs := range versions {
		for i, v := range vs {
			require.Equal(t, int64(i+1), v, "stream %s out of order: %v", s, vs)
		}
	}
}

// seamHistory is the store, with a hook run after each empty read of the replay.
type seamHistory struct {
	*pgjet.Store
	afterEmpty func()
}

func (h *seamHistory) ReadAll(ctx context.Context, after pgjet.AllPosition, limit int) ([]pgjet.RecordedEvent, error) {
	evs, err := h.Store.ReadAll(ctx, after, limit)
	if err == nil && len(evs) == 0 && h.afterEmpty != nil {
		h.afterEmpty()
	}
	return evs, err
}

// The seam holds when an older transaction ends right after an empty read: a younger
// transaction's event, already in JetStream but behind the horizon at that read, must still
// be replayed. (The horizon taken after the read passed the seam there, and the replay
// ended without it: the event was in neither the replay nor the live part.)
func TestReplaySeamTakesTheHorizonBeforeTheRead(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store, pool, nc, js := historyEnv(t)

	older, err := pool.Begin(ctx) // holds the horizon back
	require.NoError(t, err)
	t.Cleanup(func() { _ = older.Rollback(context.Background()) })
	_, err = older.Exec(ctx, `SELECT pg_current_xact_id()`)
	require.NoError(t, err)
	_, err = store.Append(ctx, "order-1", pgjet.NoStream, pgjet.EventData{ID: uuid.New(), Type: cancelled, Data: json.RawMessage(
		`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","reason":"x","cancelled_at":"2026-11-26T10:00:00Z"}`)})
	require.NoError(t, err)
	runRelay(t, pool, nc)
	eventually(t, "the event in JetStream", func() bool {
		s, err := js.Stream(ctx, subscription.DefaultStream)
		return err == nil && s.CachedInfo().State.Msgs == 1
	})

	var once sync.Once
	h := &seamHistory{Store: store, afterEmpty: func() { once.Do(func() { require.NoError(t, older.Commit(ctx)) }) }}
	var rec recorder
	run(t, newSub(t, js, subscription.Config{
		Group: "seam", Start: subscription.FromPosition(pgjet.AllPosition{}), History: h, Postgres: pool,
		Handler: rec.handle, Logger: zaptest.NewLogger(t),
	}))
	// The replay delivers before it creates the consumer.
	eventually(t, "the replay to end", func() bool {
		_, err := js.Consumer(ctx, subscription.DefaultStream, "seam")
		return err == nil
	})
	require.Equal(t, []string{"order-1/1"}, keys(rec.all()))
}

// failingHistory fails its first read with err, then reads the store.
type failingHistory struct {
	*pgjet.Store
	err   error
	calls atomic.Int32
}

func (h *failingHistory) ReadAll(ctx context.Context, after pgjet.AllPosition, limit int) ([]pgjet.RecordedEvent, error) {
	if h.calls.Add(1) == 1 {
		return nil, fmt.Errorf("reading all events: %w", h.err)
	}
	return h.Store.ReadAll(ctx, after, limit)
}

// A subscription starting from a Postgres position waits for the events stream, as every
// subscription does, and rides out a Postgres error that passes (a terminated session);
// one that needs an operator (a missing table) ends Run with it.
func TestStartFromPositionWaitsOutPassingErrors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store, pool, nc, js := historyEnv(t) // no events stream until the relay starts
	event := pgjet.EventData{Type: cancelled, Data: json.RawMessage(
		`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","reason":"x","cancelled_at":"2026-11-26T10:00:00Z"}`)}
	_, err := store.Append(ctx, "order-1", pgjet.NoStream, event)
	require.NoError(t, err)

	logs, observed := observer.New(zap.WarnLevel)
	h := &failingHistory{Store: store, err: &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}}
	var rec recorder
	run(t, newSub(t, js, subscription.Config{
		Group: "waits", Start: subscription.FromPosition(pgjet.AllPosition{}), History: h, Postgres: pool,
		Handler: rec.handle, Logger: zap.New(zapcore.NewTee(logs, zaptest.NewLogger(t).Core())),
	}))
	eventually(t, "the subscription to wait for the stream", func() bool {
		return observed.FilterMessageSnippet("looking up the consumer failed").Len() > 0
	})
	runRelay(t, pool, nc)
	eventually(t, "the replayed event", func() bool { return rec.len() == 1 })
	require.Equal(t, 1, observed.FilterMessageSnippet("reading history failed").Len())
	_, err = store.Append(ctx, "order-1", 1, event)
	require.NoError(t, err)
	eventually(t, "the live event", func() bool { return rec.len() == 2 })
	require.Equal(t, []string{"order-1/1", "order-1/2"}, keys(rec.all()))

	broken := &failingHistory{Store: store, err: &pgconn.PgError{Code: "42P01", Message: `relation "pgjet.events" does not exist`}}
	s := newSub(t, js, subscription.Config{
		Group: "broken", Start: subscription.FromPosition(pgjet.AllPosition{}), History: broken, Postgres: pool,
		Handler: rec.handle, Logger: zaptest.NewLogger(t),
	})
	rctx2, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	require.ErrorContains(t, s.Run(rctx2), "does not exist")
}
