package subscription_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/pgtest"
	"github.com/pgjet/pgjet/internal/relay"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
	"github.com/pgjet/pgjet/subscription"
)

// A subscription starting from a Postgres position replays what JetStream no longer holds
// and goes live with no gap and no duplicate, although events are appended during the
// replay and a transaction that began before the seam commits in the middle of it.
func TestStartFromPostgresPosition(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.Pool(t)
	require.NoError(t, pgjet.Migrate(ctx, pool))
	store, err := pgjet.New(pgjet.Config{Pool: pool})
	require.NoError(t, err)
	_, err = store.Registry().RegisterFS(ctx, demoschemas.Files)
	require.NoError(t, err)
	srv := natstest.Server(t)
	nc, js := natstest.Connect(t, srv)

	event := func(i int) pgjet.EventData {
		return pgjet.EventData{ID: uuid.New(), Type: cancelled, Data: json.RawMessage(fmt.Sprintf(
			`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","reason":"#%d","cancelled_at":"2026-11-26T10:00:00Z"}`, i))}
	}
	for i := range 40 {
		_, err := store.Append(ctx, fmt.Sprintf("order-%d", i%4), pgjet.Any, event(i))
		require.NoError(t, err)
	}
	r, err := relay.New(relay.Config{Pool: pool, Conn: nc, PollInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	rctx, stopRelay := context.WithCancel(context.Background())
	relayDone := make(chan error, 1)
	go func() { relayDone <- r.Run(rctx) }()
	t.Cleanup(func() { stopRelay(); <-relayDone })
	var stream jetstream.Stream
	eventually(t, "40 events in JetStream", func() bool {
		stream, err = js.Stream(ctx, subscription.DefaultStream)
		return err == nil && stream.CachedInfo().State.Msgs == 40
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
