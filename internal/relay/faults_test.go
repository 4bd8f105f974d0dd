package relay_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/netproxy"
	"github.com/pgjet/pgjet/internal/outbox"
	"github.com/pgjet/pgjet/internal/pgcluster"
	"github.com/pgjet/pgjet/internal/promtest"
	"github.com/pgjet/pgjet/internal/relay"
)

// progress waits until JetStream holds n more messages than now.
func progress(t *testing.T, e *env, n uint64, what string) {
	t.Helper()
	before := streamMsgs(t, e.js)
	waitUntil(t, 15*time.Second, what, func() bool { return streamMsgs(t, e.js) >= before+n })
}

// The nats-server is restarted three times while writers append and the relay publishes.
func TestNATSServerRestartDuringPublishes(t *testing.T) {
	t.Parallel()
	for _, m := range publishModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			testNATSServerRestartDuringPublishes(t, m)
		})
	}
}

func testNATSServerRestartDuringPublishes(t *testing.T, m publishMode) {
	srv := natstest.Server(t)
	nc, js := natstest.Connect(t, srv)
	e := newEnvOn(t, "", nc, js, srv.ClientURL())
	w := startPacedWriters(t, e.store, 3, 100000, 16, 2*time.Millisecond)
	e.startRelay(t, relay.Config{BatchSize: 50, Window: 16, PublishTimeout: time.Second, BatchPublish: m.batch, AtomicPublish: m.atomic})
	for range 3 {
		progress(t, e, 50, "publishing before the restart")
		require.NoError(t, srv.Restart())
		progress(t, e, 50, "publishing after the restart")
	}
	committed := w.finish()
	waitDrained(t, e.pool, 15*time.Second)
	t.Logf("%d events committed", len(committed))
	checkExactlyOnceInOrder(t, readAll(t, e.js), committed)
}

// The network between relay and nats-server is cut (a loopback proxy closes its listener
// and every connection) and restored three times while writers append: while cut the
// outbox fills; once restored the relay catches up without losses, duplicates or reordering.
func TestNetworkToNATSCutAndRestored(t *testing.T) {
	t.Parallel()
	srv := natstest.Server(t)
	nc, js := natstest.Connect(t, srv) // the test's own view, not through the proxy
	e := newEnvOn(t, "", nc, js, srv.ClientURL())
	p := netproxy.New(t, strings.TrimPrefix(srv.ClientURL(), "nats://"), netproxy.Config{})
	relayConn, err := nats.Connect("nats://"+p.Addr(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(relayConn.Close)
	w := startPacedWriters(t, e.store, 3, 100000, 16, 2*time.Millisecond)
	startOwnRelay(t, e.url, relayConn, relay.Config{BatchSize: 50, Window: 16, PublishTimeout: 500 * time.Millisecond})
	var pendingWhileCut int
	for range 3 {
		progress(t, e, 50, "publishing before the cut")
		p.Cut()
		waitUntil(t, 5*time.Second, "the relay notices the cut", func() bool { return !relayConn.IsConnected() })
		w.waitAppends(t, 30)
		require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FROM pgjet.outbox`).Scan(&pendingWhileCut))
		p.Restore(t)
		progress(t, e, 50, "publishing after the network is back")
	}
	committed := w.finish()
	waitDrained(t, e.pool, 15*time.Second)
	t.Logf("%d events committed; %d outbox rows waited during the last cut", len(committed), pendingWhileCut)
	require.Positive(t, pendingWhileCut)
	checkExactlyOnceInOrder(t, readAll(t, e.js), committed)
}

// An event the server refuses (here: larger than the server's max_payload once the headers
// are added) holds back its own stream, and only that: the other streams' events, before
// and after it in the outbox, are published, and none of its stream's later events. More of
// its stream's events wait behind it than a batch holds, so a relay that read them first
// would read nothing else; the other streams, of its partition and of others, keep flowing
// while the refused event is retried on its own schedule.
func TestRefusedEventHoldsBackOnlyItsStream(t *testing.T) {
	t.Parallel()
	for _, m := range publishModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			testRefusedEventHoldsBackOnlyItsStream(t, m)
		})
	}
}

func testRefusedEventHoldsBackOnlyItsStream(t *testing.T, m publishMode) {
	const batchSize = 20
	ctx := context.Background()
	e := newEnv(t)
	committed := map[string]string{}
	add := func(stream string, evs ...pgjet.EventData) {
		_, err := e.store.Append(ctx, stream, pgjet.Any, evs...)
		require.NoError(t, err)
		for _, ev := range evs {
			committed[ev.ID.String()] = stream
		}
	}
	// Three streams of the stuck stream's partition and three of others.
	var same, others []string
	for i := 0; len(same) < 3 || len(others) < 3; i++ {
		s := fmt.Sprintf("order-ok%d", i)
		switch {
		case outbox.PartitionOf(s) == outbox.PartitionOf("order-big"):
			same = append(same, s)
		case len(others) < 3:
			others = append(others, s)
		}
	}
	flowing := slices.Concat(same, others)
	addToEach := func(what string) {
		for i, s := range flowing {
			add(s, cancelled(what, i))
		}
	}

	addToEach("before")
	add("order-big", cancelled("order-big", 1))
	// A row written by something else than pgjet's writer (which would refuse data this
	// large for the demo schema): the payload alone fills max_payload.
	huge := cancelled("order-big", 2)
	var schemaID int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT schema_id FROM pgjet.events WHERE stream_id = 'order-big'`).Scan(&schemaID))
	_, err := e.pool.Exec(ctx, `
		WITH ev AS (
			INSERT INTO pgjet.events (event_id, stream_id, version, type, schema_id, data)
			VALUES ($1, 'order-big', 2, 'pgjet.demo.order.OrderCancelled', $2, $3) RETURNING position),
		s AS (UPDATE pgjet.streams SET version = 2 WHERE stream_id = 'order-big')
		INSERT INTO pgjet.outbox (position, partition) SELECT position, $4 FROM ev`,
		huge.ID, schemaID, make([]byte, e.nc.MaxPayload()), outbox.PartitionOf("order-big"))
	require.NoError(t, err)
	stuck := []string{huge.ID.String()}
	var behind []pgjet.EventData
	for v := 3; v < 3+2*batchSize; v++ {
		behind = append(behind, cancelled("order-big", v))
		stuck = append(stuck, behind[len(behind)-1].ID.String())
	}
	_, err = e.store.Append(ctx, "order-big", pgjet.Any, behind...)
	require.NoError(t, err)
	addToEach("after")

	reg := prometheus.NewRegistry()
	e.startRelay(t, relay.Config{BatchSize: batchSize, Window: 8, BatchPublish: m.batch, AtomicPublish: m.atomic, Registerer: reg})
	allPublished := func() bool { return streamMsgs(t, e.js) == uint64(len(committed)) }
	waitUntil(t, 15*time.Second, "every other event published", allPublished)
	require.Equal(t, 1.0, promtest.Value(t, reg, "pgjet_relay_streams_held_back"))
	failed := func() float64 { return promtest.Value(t, reg, "pgjet_relay_published_total", "result", "error") }
	before := failed()
	for round := range 3 {
		addToEach(fmt.Sprintf("while held back %d", round))
		waitUntil(t, 15*time.Second, fmt.Sprintf("round %d of the other streams' events published", round), allPublished)
	}
	waitUntil(t, 15*time.Second, "two more rounds, failing on the refused event", func() bool { return failed() >= before+2 })
	checkExactlyOnceInOrder(t, readAll(t, e.js), committed)
	rows, err := e.pool.Query(ctx, `SELECT e.event_id::text FROM pgjet.outbox o JOIN pgjet.events e USING (position) ORDER BY position`)
	require.NoError(t, err)
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, stuck, left, "the refused event and its stream's next ones wait in the outbox")
	require.Equal(t, 1.0, promtest.Value(t, reg, "pgjet_relay_streams_held_back"))
}

// A transaction that appended to one stream and then hangs holds that stream's row lock and
// an uncommitted outbox row. The relay keeps draining everything else (even streams in the
// same partition); an append to the locked stream waits; ReadAll holds back events of
// transactions younger than the hung one instead of skipping it. When it commits, all flows.
func TestHungTransactionHoldsOneStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	e.startRelay(t, relay.Config{BatchSize: 50, Window: 16})

	hung, err := e.pool.Begin(ctx)
	require.NoError(t, err)
	hungEv := cancelled("order-hung", 1)
	_, err = e.store.AppendTx(ctx, hung, "order-hung", pgjet.Any, hungEv)
	require.NoError(t, err)

	// A second append to the same stream blocks on the row lock.
	blocked := cancelled("order-hung", 2)
	blockedDone := make(chan error, 1)
	go func() {
		_, err := e.store.Append(ctx, "order-hung", pgjet.Any, blocked)
		blockedDone <- err
	}()
	waitUntil(t, 5*time.Second, "the second append waits on the stream's lock", func() bool {
		var n int
		require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n))
		return n > 0
	})

	w := startWriters(t, e.store, 3, 40, 32)
	<-w.done // all 40 appends each
	committed := w.finish()
	waitDrained(t, e.pool, 10*time.Second) // the hung row is invisible; everything else drains
	got := readAll(t, e.js)
	require.Len(t, got, len(committed), "every other committed event is published while one transaction hangs")
	select {
	case err := <-blockedDone:
		t.Fatalf("append to the locked stream finished while the lock was held: %v", err)
	default:
	}
	all, err := e.store.ReadAll(ctx, pgjet.AllPosition{}, 100000)
	require.NoError(t, err)
	require.Empty(t, all, "ReadAll must hold back events committed after the hung transaction began")

	require.NoError(t, hung.Commit(ctx))
	require.NoError(t, <-blockedDone)
	committed[hungEv.ID.String()] = "order-hung"
	committed[blocked.ID.String()] = "order-hung"
	waitDrained(t, e.pool, 10*time.Second)
	checkExactlyOnceInOrder(t, readAll(t, e.js), committed)
	// ReadAll's horizon is the oldest transaction running on the server (other tests' too).
	waitUntil(t, 10*time.Second, "ReadAll returns every event once the transaction ended", func() bool {
		all, err = e.store.ReadAll(ctx, pgjet.AllPosition{}, 100000)
		require.NoError(t, err)
		return len(all) == len(committed)
	})
}

// A throwaway Postgres is SIGKILLed and restarted twice while writers append (retrying the
// same event ids until an append succeeds) and the relay drains. Every append ends
// committed exactly once, and JetStream holds exactly those events, in order.
func TestPostgresRestartDuringAppendsAndDrains(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, err := pgcluster.Start(ctx, pgcluster.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	srv := natstest.Server(t)
	nc, js := natstest.Connect(t, srv)
	e := newEnvOn(t, c.URL("postgres"), nc, js, srv.ClientURL())
	w := startPacedWriters(t, e.store, 3, 100000, 16, 2*time.Millisecond)
	startOwnRelay(t, e.url, nc, relay.Config{BatchSize: 50, Window: 16})
	for round := range 2 {
		progress(t, e, 50, "publishing before the crash")
		c.Kill()
		require.NoError(t, c.Restart(ctx))
		w.waitAppends(t, 50)
		progress(t, e, 50, "publishing after the restart")
		t.Logf("round %d: Postgres killed and restarted", round)
	}
	committed := w.finish()
	waitDrained(t, e.pool, 15*time.Second)
	var inPG int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM pgjet.events`).Scan(&inPG))
	require.Equal(t, len(committed), inPG, "retried appends committed exactly once")
	t.Logf("%d events committed, %d append retries", len(committed), w.retries)
	checkExactlyOnceInOrder(t, readAll(t, e.js), committed)
}
