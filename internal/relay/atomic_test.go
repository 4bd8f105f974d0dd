package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/outbox"
	"github.com/pgjet/pgjet/internal/promtest"
	"github.com/pgjet/pgjet/internal/relay"
)

const notTaken = "atomic batch publish not taken; publishing its events per stream"

// appendEach appends n single-event appends to each stream and records them in committed.
func appendEach(t *testing.T, e *env, committed map[string]string, n int, streams ...string) {
	t.Helper()
	for i := range n {
		for _, s := range streams {
			ev := cancelled(s, i)
			_, err := e.store.Append(context.Background(), s, pgjet.Any, ev)
			require.NoError(t, err)
			committed[ev.ID.String()] = s
		}
	}
}

// With AtomicPublish, batches go out as atomic batch publishes, every event once and each
// stream in order, batches of more than a thousand events in parts.
func TestAtomicPublishStoresEveryEventOnceInOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	committed := map[string]string{}
	appendEach(t, e, committed, 600, "order-a", "order-b", "order-c", "order-d") // 2,400 waiting
	core, logs := observer.New(zap.InfoLevel)
	e.startRelay(t, relay.Config{BatchSize: 2000, AtomicPublish: true, Logger: zap.New(core)})
	waitDrained(t, e.pool, 30*time.Second)
	checkExactlyOnceInOrder(t, readAll(t, e.js), committed)
	require.Empty(t, logs.FilterMessage(notTaken).All(), "every batch was taken whole")
	require.Empty(t, logs.FilterMessage("the JetStream stream does not take atomic batch publishes (nats-server before 2.12, or its persist mode is async); publishing one event per stream at a time").All())
}

// Rows of events JetStream stored already (a relay stopped after publishing them and before
// deleting their rows) make the server refuse the atomic batch that holds them: the relay
// publishes it again per stream, the stored events count as duplicates, and the others are
// stored once, after them.
func TestAtomicPublishOfStoredEventsFallsBackPerStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	committed := map[string]string{}
	appendEach(t, e, committed, 10, "order-a", "order-b")
	stop := e.startRelay(t, relay.Config{AtomicPublish: true})
	waitDrained(t, e.pool, 15*time.Second)
	stop()

	// Their rows again, as if never deleted, and new events behind them.
	for _, s := range []string{"order-a", "order-b"} {
		_, err := e.pool.Exec(ctx, `INSERT INTO pgjet.outbox (position, partition)
			SELECT position, $2 FROM pgjet.events WHERE stream_id = $1`, s, outbox.PartitionOf(s))
		require.NoError(t, err)
	}
	appendEach(t, e, committed, 10, "order-a", "order-b", "order-c")
	core, logs := observer.New(zap.InfoLevel)
	e.startRelay(t, relay.Config{AtomicPublish: true, Logger: zap.New(core)})
	waitDrained(t, e.pool, 15*time.Second)
	checkExactlyOnceInOrder(t, readAll(t, e.js), committed)
	require.NotEmpty(t, logs.FilterMessage(notTaken).All())
}

// A server configured for smaller atomic batches (max_batch_size 100) refuses the relay's
// first, naming its limit: that batch goes per stream, and the relay keeps to the limit.
func TestAtomicPublishKeepsToTheServersBatchLimit(t *testing.T) {
	t.Parallel()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		JetStreamLimits: server.JSLimitOpts{MaxBatchSize: 100}})
	require.NoError(t, err)
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	require.True(t, ns.ReadyForConnections(10*time.Second))
	nc, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	e := newEnvOn(t, "", nc, js, ns.ClientURL())

	committed := map[string]string{}
	appendEach(t, e, committed, 100, "order-a", "order-b", "order-c") // 300 waiting
	core, logs := observer.New(zap.InfoLevel)
	e.startRelay(t, relay.Config{AtomicPublish: true, Logger: zap.New(core)})
	waitDrained(t, e.pool, 15*time.Second)
	require.NotEmpty(t, logs.FilterMessage("the server takes smaller atomic batches; keeping to its limit").All())
	refused := len(logs.FilterMessage(notTaken).All())
	require.Positive(t, refused)

	// 300 events in one commit, read as one batch: three atomic batches now.
	var evs []pgjet.EventData
	for i := range 300 {
		evs = append(evs, cancelled("order-d", i))
		committed[evs[i].ID.String()] = "order-d"
	}
	_, err = e.store.Append(context.Background(), "order-d", pgjet.Any, evs...)
	require.NoError(t, err)
	waitDrained(t, e.pool, 15*time.Second)
	require.Len(t, logs.FilterMessage(notTaken).All(), refused, "batches within the limit are taken")
	checkExactlyOnceInOrder(t, readAll(t, e.js), committed)
}

// The two batch modes exclude each other.
func TestBatchAndAtomicPublishExcludeEachOther(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, err := relay.New(relay.Config{Pool: e.pool, Conn: e.nc, BatchPublish: true, AtomicPublish: true})
	require.ErrorContains(t, err, "exclude each other")
}

// A stream whose atomic publishes an operator turns off while the relay runs (nats stream
// edit) refuses the next atomic batch: the relay publishes it per stream and goes on per
// stream, instead of having every batch refused first.
func TestAtomicPublishTurnedOffOnTheStreamGoesPerStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	committed := map[string]string{}
	appendEach(t, e, committed, 10, "order-a", "order-b")
	core, logs := observer.New(zap.InfoLevel)
	reg := prometheus.NewRegistry()
	e.startRelay(t, relay.Config{AtomicPublish: true, Logger: zap.New(core), Registerer: reg})
	waitDrained(t, e.pool, 15*time.Second)
	require.Positive(t, promtest.Value(t, reg, "pgjet_relay_atomic_batches_total", "result", "stored"))

	editStream(t, e.js, func(cfg *jetstream.StreamConfig) { cfg.AllowAtomicPublish = false })
	for range 5 {
		appendEach(t, e, committed, 10, "order-a", "order-b", "order-c")
		waitDrained(t, e.pool, 15*time.Second)
	}
	checkExactlyOnceInOrder(t, readAll(t, e.js), committed)
	require.Len(t, logs.FilterMessageSnippet("no longer takes atomic batch publishes").All(), 1)
	// One refused batch, or one per worker that had a batch in flight when the stream changed;
	// without the fallback each of the five rounds would be refused first.
	perStream := promtest.Value(t, reg, "pgjet_relay_atomic_batches_total", "result", "per_stream")
	require.GreaterOrEqual(t, perStream, 1.0)
	require.LessOrEqual(t, perStream, 2.0, "after the first refusal, batches go per stream without trying")
}

// The same for batch (fast-ingest) publishes: a stream whose batch publishes are turned off
// under a running relay refuses the next batch, which waits PublishTimeout for its first
// message's acknowledgement (jetstreamext 0.3.2 does not pass the refusal on); the relay
// then publishes per stream, instead of every later batch waiting as long.
func TestBatchPublishTurnedOffOnTheStreamGoesPerStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	committed := map[string]string{}
	appendAtOnce := func(round int) {
		var evs []pgjet.EventData
		for i := range 50 {
			evs = append(evs, cancelled("order-d", round*50+i))
			committed[evs[i].ID.String()] = "order-d"
		}
		_, err := e.store.Append(ctx, "order-d", pgjet.Any, evs...)
		require.NoError(t, err)
	}
	appendAtOnce(0)
	core, logs := observer.New(zap.InfoLevel)
	e.startRelay(t, relay.Config{BatchPublish: true, PublishTimeout: 2 * time.Second, Logger: zap.New(core)})
	waitDrained(t, e.pool, 15*time.Second)
	require.Empty(t, logs.FilterMessageSnippet("batch publish stopped").All())

	editStream(t, e.js, func(cfg *jetstream.StreamConfig) { cfg.AllowBatchPublish = false })
	for round := 1; round <= 4; round++ {
		appendAtOnce(round)
		waitDrained(t, e.pool, 15*time.Second)
	}
	checkExactlyOnceInOrder(t, readAll(t, e.js), committed)
	require.Len(t, logs.FilterMessageSnippet("no longer takes batch publishes").All(), 1)
	// One refused batch, or one per worker that had a batch in flight; without the fallback
	// each of the four rounds would be refused first.
	require.LessOrEqual(t, len(logs.FilterMessageSnippet("batch publish stopped").All()), 2,
		"after the first refusal, batches go per stream without trying")
}

// editStream changes the events stream's settings as an operator would (nats stream edit).
func editStream(t *testing.T, js jetstream.JetStream, edit func(*jetstream.StreamConfig)) {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, "PGJET_EVENTS")
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	edit(&cfg)
	_, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
}
