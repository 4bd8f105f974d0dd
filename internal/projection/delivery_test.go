package projection_test

import (
	"bytes"
	"context"
	"errors"
	"io"
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
	"github.com/pgjet/pgjet/internal/subject"
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

// A projector that cannot place its consumer when it starts (here the stream does not
// exist yet) counts each failed try as a read error and retries with its lock held, as it
// does after later failures; once the stream is there it reads it, and the first
// placement is not counted as a reset. The first placement's failure used to end the lead:
// logged, but in no metric, and the lock given up and taken again once a second.
func TestFirstConsumerPlacementFailureIsAReadError(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, registerDemo(t))
	reg := prometheus.NewRegistry()
	cfg := fastConfig(ledger("late"))
	cfg.Registerer, cfg.Stream = reg, "PGJET_LATE"
	e.run(t, cfg)
	require.Eventually(t, func() bool {
		return promtest.Value(t, reg, "pgjet_projection_read_errors_total") >= 2
	}, time.Minute, 20*time.Millisecond, "failed placements counted")
	require.Equal(t, 1.0, promtest.Must(t, reg, "pgjet_projection_active"), "the lock is kept")

	_, err := relay.EnsureStream(ctx, e.js, relay.StreamConfig{Name: "PGJET_LATE", Subjects: subject.Scheme{Prefix: "pgjet.late"}})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := e.js.Consumer(ctx, "PGJET_LATE", projection.ConsumerName("ledger"))
		return err == nil
	}, time.Minute, 20*time.Millisecond, "the consumer is placed once the stream exists")
	require.Zero(t, promtest.Value(t, reg, "pgjet_projection_resets_total"), "the first placement is no reset")
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

	e.recreateStream(t, 5)

	require.Eventually(t, func() bool { return p.Stalled(300*time.Millisecond) > 0 }, 10*time.Second, 20*time.Millisecond,
		"the projector must not look caught up while the stream ends before its checkpoint")
	waitErrorLogged(t, logs, "beyond the stream", 1)
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
	a := cfg
	var proxy *netproxy.Proxy
	a.Pool, proxy = proxiedPool(t, e.pool, netproxy.Config{})
	e.run(t, a)
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

// The stream is re-created while the projector is stopped, and new events fill it past
// the checkpoint: the sequences after the checkpoint now name other events than the ones
// applied, the first twenty new ones lie at or below it, and a projector that trusted the
// sequence alone applied from the 21st on and silently skipped them (as it would after a
// verify -repair that re-published in another order). It must see that the event at the
// checkpoint's sequence is not the one it applied last, say so, and apply nothing.
func TestCheckpointNotInStreamIsReported(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, registerDemo(t))
	e.appendCancelled(t, 20)
	stop := e.run(t, fastConfig(ledger("g1")))
	at := e.waitApplied(t, "ledger")
	require.Equal(t, uint64(20), at)
	stop()

	e.recreateStream(t, 25)

	core, logs := observer.New(zap.WarnLevel)
	cfg := fastConfig(ledger("g1"))
	cfg.Logger = zap.New(core)
	e.run(t, cfg)
	// Twice: it was refused again after a back-off, and still applied nothing.
	waitErrorLogged(t, logs, "holds another event at the checkpoint's sequence", 2)
	seq, err := projection.Checkpoint(ctx, e.pool, "ledger")
	require.NoError(t, err)
	require.Equal(t, at, seq)
	requireLedgerExact(t, e.pool, 20)
}

// The message at the checkpoint's sequence is gone (retention, a purge, a deletion): there
// is nothing to compare, and the projector goes on after the checkpoint.
func TestCheckpointWithItsMessageGoneGoesOn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, registerDemo(t))
	e.appendCancelled(t, 10)
	stop := e.run(t, fastConfig(ledger("g1")))
	at := e.waitApplied(t, "ledger")
	stop()
	s, err := e.js.Stream(ctx, "PGJET_EVENTS")
	require.NoError(t, err)
	require.NoError(t, s.DeleteMsg(ctx, at))

	e.appendCancelled(t, 5)
	e.run(t, fastConfig(ledger("g1")))
	require.Eventually(t, func() bool {
		seq, err := projection.Checkpoint(ctx, e.pool, "ledger")
		require.NoError(t, err)
		return seq == at+5
	}, time.Minute, 20*time.Millisecond, "the events after the checkpoint applied")
	requireLedgerExact(t, e.pool, 15)
}

// commitHolder proxies a pool's connections to Postgres and, once armed, holds the first
// COMMIT a connection sends: the server has run the batch and waits, idle in its
// transaction, for a projector it no longer hears from, and the projector waits for an
// answer that never comes, as in a network partition mid-batch.
type commitHolder struct {
	pool    *pgxpool.Pool
	armed   chan struct{} // closed by arm
	held    chan struct{} // closed when a COMMIT is held
	release chan struct{} // closed by drop
	once    sync.Once
	dropped sync.Once
}

func newCommitHolder(t *testing.T, pool *pgxpool.Pool) *commitHolder {
	t.Helper()
	h := &commitHolder{armed: make(chan struct{}), held: make(chan struct{}), release: make(chan struct{})}
	h.pool, _ = proxiedPool(t, pool, netproxy.Config{Hooks: func() (netproxy.Hook, netproxy.Hook) {
		return h.toServer, nil
	}})
	t.Cleanup(h.drop) // before the proxy's cleanup, which waits for its hooks
	return h
}

func (h *commitHolder) arm() { close(h.armed) }

// drop closes the connection of the held COMMIT, without passing it on.
func (h *commitHolder) drop() { h.dropped.Do(func() { close(h.release) }) }

func (h *commitHolder) toServer(dst io.Writer, chunk []byte) error {
	select {
	case <-h.armed:
	default:
		_, err := dst.Write(chunk)
		return err
	}
	hold := false
	if bytes.Contains(chunk, []byte("commit\x00")) { // pgx's Tx.Commit: a simple query
		h.once.Do(func() { hold = true })
	}
	if !hold {
		_, err := dst.Write(chunk)
		return err
	}
	close(h.held)
	<-h.release
	return errors.New("held COMMIT dropped")
}

// Postgres stops answering while the active projector commits a batch (the server has the
// batch's transaction open, the projector waits for the COMMIT's answer). The lock must
// not stay held with it: Postgres ends the session once it has waited BatchTimeout in the
// transaction, the batch rolls back, and the standby takes over and applies every event
// once. Without idle_in_transaction_session_timeout the session, its transaction and the
// lock stayed until TCP keepalives gave up.
func TestStandbyTakesOverFromAProjectorCutOffMidBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, registerDemo(t))
	h := newCommitHolder(t, e.pool)
	cfg := fastConfig(ledger("g1"))
	cfg.BatchTimeout = 2 * time.Second
	a := cfg
	a.Pool = h.pool
	e.run(t, a)
	t.Cleanup(h.drop) // first: stopping waits for the held batch

	e.appendCancelled(t, 20)
	e.waitApplied(t, "ledger") // a is the active one
	e.run(t, cfg)              // b stands by

	h.arm()
	e.appendCancelled(t, 20)
	select {
	case <-h.held:
	case <-time.After(30 * time.Second):
		t.Fatal("the active projector committed no batch")
	}
	start := time.Now()
	e.waitApplied(t, "ledger")
	t.Logf("taken over %s after the held COMMIT", time.Since(start).Round(time.Millisecond))
	requireLedgerExact(t, e.pool, 40)
}

// Postgres stops answering while the projector commits a batch, and the projector is told
// to stop: Run returns within BatchTimeout instead of waiting for the answer for good, and
// the batch is rolled back, so the next projector applies it, once.
func TestRunReturnsWhenPostgresFreezesMidBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, registerDemo(t))
	h := newCommitHolder(t, e.pool)
	cfg := fastConfig(ledger("g1"))
	cfg.Pool, cfg.Conn, cfg.Registry = h.pool, e.nc, e.store.Registry()
	cfg.BatchTimeout = 2 * time.Second
	p, err := projection.New(cfg)
	require.NoError(t, err)
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx) }()
	t.Cleanup(func() { stop(); h.drop(); <-done })

	e.appendCancelled(t, 10)
	e.waitApplied(t, "ledger")
	h.arm()
	e.appendCancelled(t, 10)
	select {
	case <-h.held:
	case <-time.After(30 * time.Second):
		t.Fatal("the projector committed no batch")
	}
	start := time.Now()
	stop()
	select {
	case err := <-done:
		require.NoError(t, err)
		done <- nil // for the cleanup
		t.Logf("Run returned %s after the stop", time.Since(start).Round(time.Millisecond))
	case <-time.After(cfg.BatchTimeout + 10*time.Second):
		t.Fatal("Run still waits for the frozen batch")
	}
	seq, err := projection.Checkpoint(ctx, e.pool, "ledger")
	require.NoError(t, err)
	require.EqualValues(t, 10, seq, "the held batch must not have committed")

	e.run(t, fastConfig(ledger("g1")))
	e.waitApplied(t, "ledger")
	requireLedgerExact(t, e.pool, 20)
}

// A projection too slow for its batch size: a batch of 40 events takes 2 s, BatchTimeout is
// 1.5 s. The projector used to give up and retry the same 40 events for good; it now
// halves the batch until one fits, and applies every event once.
func TestSlowProjectionShrinksItsBatches(t *testing.T) {
	t.Parallel()
	e := newEnv(t, registerDemo(t))
	e.appendCancelled(t, 40)
	e.waitRelayed(t) // so that the first batch is a full one

	pr := ledger("g1")
	apply := pr.Apply
	pr.Apply = func(ctx context.Context, tx pgx.Tx, ev projection.Event) error {
		time.Sleep(50 * time.Millisecond)
		return apply(ctx, tx, ev)
	}
	cfg := fastConfig(pr)
	cfg.BatchSize, cfg.BatchTimeout = 40, 1500*time.Millisecond
	core, logs := observer.New(zap.WarnLevel)
	cfg.Logger = zap.New(core)
	e.run(t, cfg)
	e.waitApplied(t, "ledger")
	requireLedgerExact(t, e.pool, 40)
	shrunk := logs.FilterMessage("a batch ran out of BatchTimeout; retrying with smaller batches").All()
	require.NotEmpty(t, shrunk)
	require.EqualValues(t, 20, shrunk[0].ContextMap()["next_batch_size"])
}
