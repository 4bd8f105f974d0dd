package projection_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/embednats"
	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/netproxy"
	"github.com/pgjet/pgjet/internal/pgtest"
	"github.com/pgjet/pgjet/internal/projection"
	"github.com/pgjet/pgjet/internal/relay"
)

// env is a migrated database with a store, a NATS server and a running relay.
type env struct {
	pool  *pgxpool.Pool
	store *pgjet.Store
	srv   *embednats.Server
	nc    *nats.Conn
	js    jetstream.JetStream

	mu       sync.Mutex
	appended int
	next     int
}

// newEnv starts an env; register runs before the relay starts (to register schemas).
func newEnv(t testing.TB, register func(*pgjet.Store)) *env {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.DB(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, pgjet.Migrate(ctx, pool))
	store, err := pgjet.New(pgjet.Config{Pool: pool})
	require.NoError(t, err)
	register(store)
	srv := natstest.Server(t)
	nc, js := natstest.Connect(t, srv)
	r, err := relay.New(relay.Config{Pool: pool, Conn: nc, PollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	t.Cleanup(func() { stop(); require.NoError(t, <-done) })
	return &env{pool: pool, store: store, srv: srv, nc: nc, js: js}
}

// appendCancelled appends n OrderCancelled events, a few per append, over 7 streams.
func (e *env) appendCancelled(t testing.TB, n int) {
	t.Helper()
	require.NoError(t, e.tryAppendCancelled(n))
}

// tryAppendCancelled is appendCancelled for goroutines other than the test's.
func (e *env) tryAppendCancelled(n int) error {
	for n > 0 {
		e.mu.Lock()
		i := e.next
		e.next += 3
		e.mu.Unlock()
		k := min(n, 3)
		evs := make([]pgjet.EventData, k)
		for j := range evs {
			evs[j] = cancelled(i + j)
		}
		if _, err := e.store.Append(context.Background(), fmt.Sprintf("order-%d", i%7), pgjet.Any, evs...); err != nil {
			return err
		}
		e.mu.Lock()
		e.appended += k
		e.mu.Unlock()
		n -= k
	}
	return nil
}

// appendCancelledBatches appends n OrderCancelled events, 100 per append.
func (e *env) appendCancelledBatches(t testing.TB, n int) {
	t.Helper()
	for i := 0; i < n; i += 100 {
		evs := make([]pgjet.EventData, min(100, n-i))
		for j := range evs {
			evs[j] = cancelled(i + j)
		}
		_, err := e.store.Append(context.Background(), fmt.Sprintf("order-%d", i/100), pgjet.Any, evs...)
		require.NoError(t, err)
	}
	e.mu.Lock()
	e.appended += n
	e.mu.Unlock()
}

// waitRelayed waits until every appended event is in JetStream.
func (e *env) waitRelayed(t testing.TB) {
	t.Helper()
	e.waitPublished(t, e.total())
}

// waitPublished waits until JetStream holds n events.
func (e *env) waitPublished(t testing.TB, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		s, err := e.js.Stream(context.Background(), "PGJET_EVENTS")
		if err != nil {
			return false
		}
		info, err := s.Info(context.Background())
		return err == nil && info.State.Msgs == uint64(n)
	}, 2*time.Minute, 20*time.Millisecond)
}

func (e *env) total() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.appended
}

// run runs a projector until the test ends or stop is called.
func (e *env) run(t testing.TB, cfg projection.Config) (stop func()) {
	t.Helper()
	if cfg.Pool == nil {
		cfg.Pool = e.pool
	}
	cfg.Conn, cfg.Registry = e.nc, e.store.Registry()
	p, err := projection.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); require.NoError(t, <-done) }) }
	t.Cleanup(stop)
	return stop
}

// waitApplied waits until every appended event is in JetStream and the projection's
// checkpoint is at the stream's last sequence.
func (e *env) waitApplied(t testing.TB, name string) uint64 {
	t.Helper()
	ctx := context.Background()
	var last uint64
	require.Eventually(t, func() bool {
		s, err := e.js.Stream(ctx, "PGJET_EVENTS")
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		require.NoError(t, err)
		seq, err := projection.Checkpoint(ctx, e.pool, name)
		require.NoError(t, err)
		last = info.State.LastSeq
		return info.State.Msgs == uint64(e.total()) && seq == last
	}, 60*time.Second, 20*time.Millisecond)
	return last
}

// ledger is a rebuildable, deliberately non-idempotent projection: one row per
// application of an event, marked with gen, so a lost, doubled or reordered event shows.
func ledger(gen string) projection.Projection { return ledgerNamed("ledger", "rm_ledger", gen) }

// ledgerInsert records one application of an event: $1-$4 the event's id, stream, version
// and sequence, $5 the generation.
const ledgerInsert = `INSERT INTO applied (event_id, stream_id, version, sequence, gen) VALUES ($1, $2, $3, $4, $5)`

// queuedLedger is ledgerNamed queuing its statement (Projection.Queue) instead of running it.
func queuedLedger(name, schema, gen string) projection.Projection {
	p := ledgerNamed(name, schema, gen)
	p.Apply = nil
	p.Queue = func(_ context.Context, b *pgx.Batch, ev projection.Event) error {
		b.Queue(ledgerInsert, ev.ID, ev.StreamID, ev.Version, ev.Sequence, gen)
		return nil
	}
	return p
}

func ledgerNamed(name, schema, gen string) projection.Projection {
	return projection.Projection{
		Name:   name,
		Schema: schema,
		Setup: func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS applied (
				seq bigserial PRIMARY KEY, event_id text NOT NULL, stream_id text NOT NULL, version bigint NOT NULL,
				sequence bigint NOT NULL, gen text NOT NULL)`)
			return err
		},
		Apply: func(ctx context.Context, tx pgx.Tx, ev projection.Event) error {
			_, err := tx.Exec(ctx, ledgerInsert, ev.ID, ev.StreamID, ev.Version, ev.Sequence, gen)
			return err
		},
	}
}

// requireLedgerExact checks that rm_ledger.applied holds every one of the total events
// exactly once, each stream in version order.
func requireLedgerExact(t testing.TB, pool *pgxpool.Pool, total int) {
	t.Helper()
	ctx := context.Background()
	var rows, distinct, distinctSeq int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT event_id), count(DISTINCT sequence) FROM rm_ledger.applied`).
		Scan(&rows, &distinct, &distinctSeq))
	require.Equal(t, total, distinct, "every event applied")
	require.Equal(t, total, rows, "no event applied twice")
	require.Equal(t, total, distinctSeq)
	var disorder int
	require.NoError(t, pool.QueryRow(ctx, `
		SELECT count(*) FROM (SELECT version, lag(version) OVER (PARTITION BY stream_id ORDER BY seq) AS prev FROM rm_ledger.applied) x
		WHERE version <> coalesce(prev, 0) + 1`).Scan(&disorder))
	require.Zero(t, disorder, "each stream applied in version order")
}

// firstFailedBatch waits for the projector's first "applying batch failed" warning in logs
// and returns its fields.
func firstFailedBatch(t testing.TB, logs *observer.ObservedLogs) map[string]any {
	t.Helper()
	var failure []observer.LoggedEntry
	require.Eventually(t, func() bool {
		failure = logs.FilterMessage("applying batch failed; retrying").All()
		return len(failure) > 0
	}, 10*time.Second, 10*time.Millisecond, "no failed batch logged")
	return failure[0].ContextMap()
}

// recreateStream deletes the events stream, creates it again and appends n events, which
// the relay publishes into it: the new stream holds only those.
func (e *env) recreateStream(t testing.TB, n int) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, e.js.DeleteStream(ctx, "PGJET_EVENTS"))
	_, err := relay.EnsureStream(ctx, e.js, relay.StreamConfig{})
	require.NoError(t, err)
	e.mu.Lock()
	e.appended = 0
	e.mu.Unlock()
	e.appendCancelled(t, n)
	e.waitRelayed(t)
}

// proxiedPool returns a pool of connections to pool's server through a netproxy with cfg.
func proxiedPool(t testing.TB, pool *pgxpool.Pool, cfg netproxy.Config) (*pgxpool.Pool, *netproxy.Proxy) {
	t.Helper()
	u, err := url.Parse(pool.Config().ConnString())
	require.NoError(t, err)
	proxy := netproxy.New(t, u.Host, cfg)
	viaProxy := *u
	viaProxy.Host = proxy.Addr()
	proxied, err := pgxpool.New(context.Background(), viaProxy.String())
	require.NoError(t, err)
	t.Cleanup(proxied.Close)
	return proxied, proxy
}

// waitErrorLogged waits until logs hold at least n entries whose error contains text: the
// projector saying why it applies nothing.
func waitErrorLogged(t testing.TB, logs *observer.ObservedLogs, text string, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		found := 0
		for _, l := range logs.All() {
			if strings.Contains(fmt.Sprint(l.ContextMap()["error"]), text) {
				found++
			}
		}
		return found >= n
	}, 10*time.Second, 20*time.Millisecond, "the projector must log %q", text)
}
