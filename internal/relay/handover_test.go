package relay

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/outbox"
	"github.com/pgjet/pgjet/internal/pgtest"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

// A running relay hands a partition over between workers without losing a wake-up. Worker
// 0, alone without a backlog, is held inside a batch of partition p while the level rises
// and p becomes worker 1's. Worker 1, woken by the stream's next event, finds p still held
// and leaves it; when worker 0 lets go, it wakes p's worker, which publishes the event at
// once, in order. With the poll a minute away, a lost wake-up fails the test.
func TestPartitionHandOverInRunningRelay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.DB(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, pgjet.Migrate(ctx, pool))
	store, err := pgjet.New(pgjet.Config{Pool: pool})
	require.NoError(t, err)
	_, err = store.Registry().RegisterFS(ctx, demoschemas.Files)
	require.NoError(t, err)
	nc, js := natstest.Connect(t, natstest.Server(t))

	const workers = 4
	stream := ""
	for i := 0; stream == ""; i++ { // a stream of a partition that is not worker 0's at the higher level
		if s := fmt.Sprintf("order-handover%d", i); outbox.PartitionOf(s)%workers == 1 {
			stream = s
		}
	}
	p := outbox.PartitionOf(stream)
	appendOne := func(n int) string {
		id := uuid.New()
		_, err := store.Append(ctx, stream, pgjet.Any, pgjet.EventData{ID: id, Type: "pgjet.demo.order.OrderCancelled", Data: json.RawMessage(fmt.Sprintf(
			`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","reason":"#%d","cancelled_at":"2026-11-26T10:00:00Z"}`, n))})
		require.NoError(t, err)
		return id.String()
	}

	r, err := New(Config{Pool: pool, Conn: nc, Workers: workers, PollInterval: time.Minute})
	require.NoError(t, err)
	held, release := make(chan struct{}), make(chan struct{})
	var holding atomic.Bool
	r.published = func(parts []int16) {
		if slices.Contains(parts, p) && holding.CompareAndSwap(false, true) {
			close(held)
			<-release
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	require.Eventually(t, func() bool { return r.Ready() == nil && r.Owned() == outbox.Partitions }, 10*time.Second, 5*time.Millisecond)

	first := appendOne(1)
	select {
	case <-held: // worker 0 published the first event and holds p
	case <-time.After(10 * time.Second):
		t.Fatal("the relay did not publish the first event")
	}
	r.backlog() // every worker drains now; p is worker 1's
	require.Equal(t, int32(workers), r.level.Load())
	second := appendOne(2)
	require.Eventually(t, func() bool {
		r.parts.mu.Lock()
		defer r.parts.mu.Unlock()
		return r.parts.missed[p]
	}, 10*time.Second, time.Millisecond, "worker 1 leaves the partition worker 0 holds")
	close(release)

	// The stream's events, in stream order, as ids checked to come in version order.
	published := func() []string {
		s, err := js.Stream(ctx, "PGJET_EVENTS")
		require.NoError(t, err)
		info, err := s.Info(ctx)
		require.NoError(t, err)
		var ids []string
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := s.GetMsg(ctx, seq)
			require.NoError(t, err)
			require.Equal(t, strconv.Itoa(len(ids)+1), m.Header.Get(HeaderStreamVersion), "the stream's events in version order")
			ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
		}
		return ids
	}
	for deadline := time.Now().Add(10 * time.Second); len(published()) < 2; time.Sleep(5 * time.Millisecond) {
		require.True(t, time.Now().Before(deadline), "the second event is published without waiting for the poll")
	}
	require.Equal(t, []string{first, second}, published())
}
