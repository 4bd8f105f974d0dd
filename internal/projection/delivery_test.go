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
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgjet/pgjet/internal/netproxy"
	"github.com/pgjet/pgjet/internal/projection"
	"github.com/pgjet/pgjet/internal/promtest"
	"github.com/pgjet/pgjet/internal/relay"
)

// A message the projector never receives (lost in flight, here taken by someone else from
// its consumer) is not skipped: the next delivery does not follow the last one, so the
// projector reads on from its checkpoint and applies every event once, in order.
func TestLostDeliveryIsReadAgainFromTheCheckpoint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, registerDemo(t))
	e.appendCancelled(t, 40)
	e.waitRelayed(t)

	// The projector stops in the middle of the 10th event, with no pull request standing.
	pr := ledger("g1")
	apply := pr.Apply
	inside, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	pr.Apply = func(ctx context.Context, tx pgx.Tx, ev projection.Event) error {
		if ev.Sequence == 10 {
			once.Do(func() {
				close(inside)
				<-release
			})
		}
		return apply(ctx, tx, ev)
	}
	reg := prometheus.NewRegistry()
	cfg := projection.Config{Projection: pr, BatchSize: 1, IdleWait: 100 * time.Millisecond, Registerer: reg}
	e.run(t, cfg)
	var released sync.Once
	unblock := func() { released.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the projector is stopped, should the test fail first
	<-inside

	cons, err := e.js.Consumer(ctx, "PGJET_EVENTS", projection.ConsumerName("ledger"))
	require.NoError(t, err)
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	var stolen []uint64
	for m := range batch.Messages() {
		md, err := m.Metadata()
		require.NoError(t, err)
		stolen = append(stolen, md.Sequence.Stream)
	}
	require.NoError(t, batch.Error())
	require.Equal(t, []uint64{11}, stolen, "the event after the one being applied")
	unblock()

	e.waitApplied(t, "ledger")
	requireLedgerExact(t, e.pool, 40)
	require.Equal(t, 1.0, promtest.Must(t, reg, "pgjet_projection_resets_total"), "one reset, at the gap")
}

// The nats-server restarts three times while events are appended and projected: every
// event is applied exactly once, each stream in order.
func TestNATSRestartsWhileApplying(t *testing.T) {
	t.Parallel()
	e := newEnv(t, registerDemo(t))
	e.run(t, fastConfig(ledger("g1")))
	ctx, stop := context.WithCancel(context.Background())
	appended := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			if err := e.tryAppendCancelled(6); err != nil {
				appended <- err
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		appended <- nil
	}()
	for range 3 {
		time.Sleep(700 * time.Millisecond)
		require.NoError(t, e.srv.Restart())
	}
	time.Sleep(300 * time.Millisecond)
	stop()
	require.NoError(t, <-appended)
	e.waitApplied(t, "ledger")
	requireLedgerExact(t, e.pool, e.total())
}

// While the nats-server is down the projector counts its failed reads, keeps its lock, and
// once the server is back applies what was appended meanwhile, exactly once.
func TestProjectorCountsReadErrorsWhileNATSIsDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, registerDemo(t))
	reg := prometheus.NewRegistry()
	cfg := fastConfig(ledger("down"))
	cfg.Registerer = reg
	e.run(t, cfg)
	e.appendCancelled(t, 10)
	e.waitApplied(t, "ledger")
	require.Zero(t, promtest.Must(t, reg, "pgjet_projection_read_errors_total"))

	e.srv.Shutdown()
	require.Eventually(t, func() bool {
		return promtest.Must(t, reg, "pgjet_projection_read_errors_total") >= 2
	}, time.Minute, 50*time.Millisecond, "failed reads counted")
	require.Equal(t, 1.0, promtest.Must(t, reg, "pgjet_projection_active"), "the lock is kept")
	e.appendCancelled(t, 10)
	require.NoError(t, e.srv.Restart())
	e.waitApplied(t, "ledger")
	requireLedgerExact(t, e.pool, e.total())
}

// A JetStream stream that is re-created (or loses its newest messages in a crash) numbers
// its messages again from below the projection's checkpoint. A cursor placed after the
// checkpoint then waits for a sequence the stream will reach only after the events that
// fill the numbers in between, which the projection silently never sees; its pulls find
// nothing, so it looked caught up (ready, no lag). The projector must instead say that the
// stream ends before its checkpoint: it is not ready (Stalled) and logs why, and applies
// nothing until an operator repairs it (verify -repair, projector rebuild).
func TestCheckpointBeyondTheStreamIsReported(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, registerDemo(t))
	e.appendCancelled(t, 20)
	core, logs := observer.New(zap.WarnLevel)
	cfg := fastConfig(ledger("g1"))
	cfg.Pool, cfg.Conn, cfg.Registry, cfg.Logger = e.pool, e.nc, e.store.Registry(), zap.New(core)
	p, err := projection.New(cfg)
	require.NoError(t, err)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	at := e.waitApplied(t, "ledger")
	require.Equal(t, uint64(20), at)

	require.NoError(t, e.js.DeleteStream(ctx, "PGJET_EVENTS"))
	_, err = relay.EnsureStream(ctx, e.js, relay.StreamConfig{})
	require.NoError(t, err)
	e.mu.Lock()
	e.appended = 0 // the new stream holds only what comes now
	e.mu.Unlock()
	e.appendCancelled(t, 5)
	e.waitRelayed(t)

	require.Eventually(t, func() bool { return p.Stalled(300*time.Millisecond) > 0 }, 10*time.Second, 20*time.Millisecond,
		"the projector must not look caught up while the stream ends before its checkpoint")
	require.Eventually(t, func() bool {
		for _, l := range logs.All() {
			if strings.Contains(fmt.Sprint(l.ContextMap()["error"]), "beyond the stream") {
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond, "and must log why")
	seq, err := projection.Checkpoint(ctx, e.pool, "ledger")
	require.NoError(t, err)
	require.Equal(t, at, seq)
	requireLedgerExact(t, e.pool, 20)
}

// The active projector's network to Postgres freezes (a partition: no RST, no FIN, its
// session stays open on the server). Its advisory lock must not stay held until TCP
// keepalives give up, hours later: Postgres ends its idle session, the standby takes over
// and applies what comes, each event once.
func TestStandbyTakesOverFromAProjectorCutOffFromPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, registerDemo(t))
	cfg := fastConfig(ledger("g1"))
	cfg.Conn, cfg.Registry = e.nc, e.store.Registry()

	u, err := url.Parse(e.pool.Config().ConnString())
	require.NoError(t, err)
	proxy := netproxy.New(t, u.Host, netproxy.Config{})
	viaProxy := *u
	viaProxy.Host = proxy.Addr()
	poolA, err := pgxpool.New(ctx, viaProxy.String())
	require.NoError(t, err)
	t.Cleanup(poolA.Close)
	a := cfg
	a.Pool = poolA
	pa, err := projection.New(a)
	require.NoError(t, err)
	actx, stopA := context.WithCancel(ctx)
	doneA := make(chan error, 1)
	go func() { doneA <- pa.Run(actx) }()
	t.Cleanup(func() { stopA(); <-doneA })
	t.Cleanup(proxy.Cut) // first: a stopping on a frozen session would wait for it

	e.appendCancelled(t, 20)
	e.waitApplied(t, "ledger") // a is the active one
	e.run(t, cfg)              // b stands by

	proxy.Freeze()
	e.appendCancelled(t, 20)
	start := time.Now()
	var last uint64
	require.Eventually(t, func() bool {
		s, err := e.js.Stream(ctx, "PGJET_EVENTS")
		require.NoError(t, err)
		seq, err := projection.Checkpoint(ctx, e.pool, "ledger")
		require.NoError(t, err)
		last = s.CachedInfo().State.LastSeq
		return last == 40 && seq == last
	}, time.Minute, 50*time.Millisecond, "the standby takes over (the session ends after its ~20 s idle timeout)")
	t.Logf("taken over %s after the freeze", time.Since(start).Round(time.Millisecond))
	requireLedgerExact(t, e.pool, 40)
}
