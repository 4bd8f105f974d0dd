package projection_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/projection"
	"github.com/pgjet/pgjet/internal/subject"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

func registerDemo(t testing.TB) func(*pgjet.Store) {
	return func(s *pgjet.Store) {
		_, err := s.Registry().RegisterFS(context.Background(), demoschemas.Files)
		require.NoError(t, err)
	}
}

func fastConfig(p projection.Projection) projection.Config {
	return projection.Config{Projection: p, BatchSize: 20, IdleWait: 100 * time.Millisecond}
}

func (e *env) rebuild(ctx context.Context, gen string, opts projection.RebuildOptions) (uint64, error) {
	cfg := fastConfig(ledger(gen))
	cfg.Pool, cfg.Conn, cfg.Registry = e.pool, e.nc, e.store.Registry()
	return projection.Rebuild(ctx, cfg, opts)
}

// A rebuild runs from the first event while the live projector keeps applying new ones
// and readers keep reading; after the swap the read model is exactly a projection of all
// events (each applied once, in order), the rebuilt rows serve, readers never saw an
// error, a doubled row or the model going back, and the live projector goes on. Just
// before the swap the live model is made to run ahead of the rebuilt one, so the swap
// must apply the difference.
func TestRebuildWhileLiveApplies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, registerDemo(t))
	e.appendCancelled(t, 150)
	e.run(t, fastConfig(ledger("live")))
	e.waitApplied(t, "ledger")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var appendErr, readErr atomic.Value
	wg.Go(func() { // the writers go on during the rebuild
		for e.total() < 1000 {
			select {
			case <-stop:
				return
			default:
			}
			if err := e.tryAppendCancelled(3); err != nil {
				appendErr.Store(err)
				return
			}
		}
	})
	var reads atomic.Int64
	wg.Go(func() { // so do the readers, which must see the old model or the new, never half
		last := 0
		for {
			select {
			case <-stop:
				return
			default:
			}
			var n, distinct int
			if err := e.pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT event_id) FROM rm_ledger.applied`).Scan(&n, &distinct); err != nil {
				readErr.CompareAndSwap(nil, err)
				return
			}
			if n != distinct || n < last {
				readErr.CompareAndSwap(nil, errors.New("a reader saw a doubled event or the model going back"))
				return
			}
			last = n
			reads.Add(1)
		}
	})
	var (
		phases []projection.RebuildPhase
		ahead  uint64
	)
	seq, err := e.rebuild(ctx, "rebuilt", projection.RebuildOptions{Progress: func(p projection.RebuildProgress) {
		if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
			phases = append(phases, p.Phase)
		}
		if p.Phase == projection.PhaseSwapping && ahead == 0 {
			e.appendCancelled(t, 30)
			ahead = e.waitApplied(t, "ledger")
			require.Greater(t, ahead, p.Checkpoint, "the live model is ahead")
		}
	}})
	require.NoError(t, err)
	close(stop)
	wg.Wait()
	require.Nil(t, appendErr.Load())
	require.Nil(t, readErr.Load())
	require.Equal(t, projection.PhaseSwapped, phases[len(phases)-1])
	require.GreaterOrEqual(t, seq, ahead)
	t.Logf("swapped at sequence %d of %d appended; %d reads; phases %v", seq, e.total(), reads.Load(), phases)

	e.appendCancelled(t, 30) // the live projector goes on, into the rebuilt model
	last := e.waitApplied(t, "ledger")
	requireLedgerExact(t, e.pool, e.total())
	var rebuilt, live, early int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE gen = 'rebuilt'), count(*) FILTER (WHERE gen = 'live'),
		count(*) FILTER (WHERE gen = 'rebuilt' AND sequence <= 150) FROM rm_ledger.applied`).Scan(&rebuilt, &live, &early))
	require.Equal(t, int(seq), rebuilt, "the rebuild applied every event up to the swap")
	require.Equal(t, int(last-seq), live, "the live projector applied every event after it")
	require.Equal(t, 150, early)

	// Nothing of the rebuild is left.
	var schemas, checkpoints int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = 'rm_ledger_rebuild'`).Scan(&schemas))
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM pgjet.checkpoints WHERE name = $1`, projection.RebuildCheckpoint("ledger")).Scan(&checkpoints))
	require.Zero(t, schemas+checkpoints)
	_, err = e.js.Consumer(ctx, "PGJET_EVENTS", projection.RebuildConsumerName("ledger"))
	require.Error(t, err)
}

// A rebuild while the live projector is down (and behind) moves the live checkpoint to the
// rebuilt one: the live projector, started again, goes on from there without applying
// anything twice.
func TestRebuildWhileLiveIsDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, registerDemo(t))
	e.appendCancelled(t, 60)
	stop := e.run(t, fastConfig(ledger("live")))
	e.waitApplied(t, "ledger")
	stop()
	e.appendCancelled(t, 60)
	e.waitRelayed(t) // the rebuild reads the stream as far as it is when it starts
	seq, err := e.rebuild(context.Background(), "rebuilt", projection.RebuildOptions{})
	require.NoError(t, err)
	require.EqualValues(t, 120, seq)

	e.run(t, fastConfig(ledger("live")))
	e.appendCancelled(t, 9)
	e.waitApplied(t, "ledger")
	requireLedgerExact(t, e.pool, 129)
	var live int
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FROM rm_ledger.applied WHERE gen = 'live'`).Scan(&live))
	require.Equal(t, 9, live)
}

// A rebuild interrupted midway leaves the live model untouched and serving; it can be
// resumed from its own checkpoint, or started over, and then swaps in a correct model.
func TestRebuildInterrupted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, registerDemo(t))
	e.appendCancelled(t, 300)
	e.run(t, fastConfig(ledger("live")))
	e.waitApplied(t, "ledger")

	interrupt := func(at uint64, opts projection.RebuildOptions) (first uint64) {
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		started := false
		opts.Progress = func(p projection.RebuildProgress) {
			if !started {
				first, started = p.Checkpoint, true
			}
			if p.Checkpoint >= at {
				cancel()
			}
		}
		_, err := e.rebuild(rctx, "rebuilt", opts)
		require.ErrorIs(t, err, context.Canceled)
		// The live model is untouched and the live projector goes on.
		e.appendCancelled(t, 10)
		e.waitApplied(t, "ledger")
		requireLedgerExact(t, e.pool, e.total())
		var notLive int
		require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM rm_ledger.applied WHERE gen <> 'live'`).Scan(&notLive))
		require.Zero(t, notLive)
		var shadow int
		require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM rm_ledger_rebuild.applied`).Scan(&shadow))
		require.GreaterOrEqual(t, shadow, int(at))
		return first
	}
	require.Zero(t, interrupt(60, projection.RebuildOptions{}))
	require.GreaterOrEqual(t, interrupt(120, projection.RebuildOptions{Resume: true}), uint64(60), "resumed at its checkpoint")

	// Started over (no Resume): from sequence 1, to a correct model.
	var first atomic.Uint64
	first.Store(^uint64(0))
	seq, err := e.rebuild(ctx, "rebuilt", projection.RebuildOptions{Progress: func(p projection.RebuildProgress) {
		first.CompareAndSwap(^uint64(0), p.Checkpoint)
	}})
	require.NoError(t, err)
	require.Zero(t, first.Load())
	last := e.waitApplied(t, "ledger")
	requireLedgerExact(t, e.pool, e.total())
	var rebuilt int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM rm_ledger.applied WHERE gen = 'rebuilt'`).Scan(&rebuilt))
	require.Equal(t, int(seq), rebuilt)
	require.Equal(t, last, seq, "nothing was appended during the last rebuild")
}

// Rebuild refuses a projection without a schema, a second concurrent rebuild and a stream
// that no longer holds the whole history.
func TestRebuildRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, registerDemo(t))
	e.appendCancelled(t, 6)
	e.run(t, fastConfig(ledger("live")))
	e.waitApplied(t, "ledger")

	cfg := fastConfig(counting(false))
	cfg.Pool, cfg.Conn, cfg.Registry = e.pool, e.nc, e.store.Registry()
	_, err := projection.Rebuild(ctx, cfg, projection.RebuildOptions{})
	require.ErrorIs(t, err, projection.ErrNoSchema)
	for _, schema := range []string{"public", "pgjet", "pg_catalog", "Demo", "1x"} {
		cfg.Projection.Schema = schema
		_, err := projection.Rebuild(ctx, cfg, projection.RebuildOptions{})
		require.ErrorContains(t, err, "Config.Projection.Schema", schema)
	}

	// A second rebuild while one runs.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	second := make(chan error, 1)
	_, err = e.rebuild(rctx, "rebuilt", projection.RebuildOptions{Progress: func(p projection.RebuildProgress) {
		if p.Phase == projection.PhaseCatchingUp && len(second) == 0 {
			_, err := e.rebuild(ctx, "other", projection.RebuildOptions{})
			second <- err
			cancel()
		}
	}})
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, <-second, projection.ErrRebuildRunning)

	s, err := e.js.Stream(ctx, "PGJET_EVENTS")
	require.NoError(t, err)
	require.NoError(t, s.DeleteMsg(ctx, 1))
	_, err = e.rebuild(ctx, "rebuilt", projection.RebuildOptions{})
	require.ErrorIs(t, err, projection.ErrHistoryTruncated)
	require.ErrorContains(t, err, "starts at sequence 2")
}

// A reader inside the old tables makes the swap give up after LockTimeout (rolling back
// the events it applied and acknowledged in the swap); the rebuild catches up again and
// swaps once the reader is done, still exact.
func TestRebuildSwapWaitsOutALongReader(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, registerDemo(t))
	e.appendCancelled(t, 90)
	e.run(t, fastConfig(ledger("live")))
	e.waitApplied(t, "ledger")

	reader, err := e.pool.Begin(ctx)
	require.NoError(t, err)
	defer reader.Rollback(ctx)
	var n int
	require.NoError(t, reader.QueryRow(ctx, `SELECT count(*) FROM rm_ledger.applied`).Scan(&n))
	require.Equal(t, 90, n)

	swaps := 0
	seq, err := e.rebuild(ctx, "rebuilt", projection.RebuildOptions{LockTimeout: 200 * time.Millisecond, Progress: func(p projection.RebuildProgress) {
		if p.Phase != projection.PhaseSwapping {
			return
		}
		swaps++
		switch swaps {
		case 1: // the live model runs ahead, so the failing swap applies events first
			e.appendCancelled(t, 30)
			e.waitApplied(t, "ledger")
		case 2: // the first swap gave up; let it through now
			require.NoError(t, reader.Rollback(ctx))
		}
	}})
	require.NoError(t, err)
	require.Equal(t, 2, swaps)
	require.EqualValues(t, 120, seq)
	e.appendCancelled(t, 6)
	e.waitApplied(t, "ledger")
	requireLedgerExact(t, e.pool, 126)
	var rebuilt int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM rm_ledger.applied WHERE gen = 'rebuilt'`).Scan(&rebuilt))
	require.Equal(t, 120, rebuilt)
}

// A projection with Filters is rebuilt to exactly its events, though the stream's last
// sequence is not one of them.
func TestRebuildFiltered(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, registerDemo(t))
	e.appendCancelled(t, 63)
	scheme, err := subject.New("pgjet.events")
	require.NoError(t, err)
	filter, err := scheme.ByStream("order-1")
	require.NoError(t, err)
	filtered := func(gen string) projection.Config {
		cfg := fastConfig(ledger(gen))
		cfg.Projection.Filters = []string{filter}
		return cfg
	}
	e.run(t, filtered("live"))
	want := func() int {
		var n int
		require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM pgjet.events WHERE stream_id = 'order-1'`).Scan(&n))
		return n
	}
	waitRows := func(gen string) {
		require.Eventually(t, func() bool {
			var n int
			err := e.pool.QueryRow(ctx, `SELECT count(*) FROM rm_ledger.applied WHERE gen = $1`, gen).Scan(&n)
			return err == nil && n > 0 && n == want()-e.rowsNotOf(t, gen)
		}, 30*time.Second, 20*time.Millisecond)
	}
	waitRows("live")
	e.appendCancelled(t, 2) // the stream's last events are not order-1's
	cfg := filtered("rebuilt")
	cfg.Pool, cfg.Conn, cfg.Registry = e.pool, e.nc, e.store.Registry()
	_, err = projection.Rebuild(ctx, cfg, projection.RebuildOptions{})
	require.NoError(t, err)

	e.appendCancelled(t, 21)
	waitRows("live")
	requireLedgerExact(t, e.pool, want())
	var others int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM rm_ledger.applied WHERE stream_id <> 'order-1'`).Scan(&others))
	require.Zero(t, others)
}

// rowsNotOf counts the ledger's rows of generations other than gen.
func (e *env) rowsNotOf(t testing.TB, gen string) int {
	var n int
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FROM rm_ledger.applied WHERE gen <> $1`, gen).Scan(&n))
	return n
}

// A rebuild swaps only while it holds its lock. Here its lock session is terminated just
// before the swap, and another rebuild of the projection starts in its place: takes the
// lock and resets the shadow schema (as Rebuild does first). The first rebuild must then
// fail and leave the live model alone; swapping the other rebuild's nearly empty shadow in
// would drop every event it has not applied yet from the read model.
func TestRebuildThatLostItsLockDoesNotSwap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, registerDemo(t))
	e.appendCancelled(t, 40)
	e.run(t, fastConfig(ledger("live")))
	e.waitApplied(t, "ledger")

	var took bool
	_, err := e.rebuild(ctx, "rebuilt", projection.RebuildOptions{Progress: func(p projection.RebuildProgress) {
		if p.Phase != projection.PhaseSwapping || took {
			return
		}
		took = true
		e.appendCancelled(t, 5) // the live model runs ahead, so the swap has events to apply
		e.waitApplied(t, "ledger")
		var killed bool
		// Advisory locks are per database, pg_locks lists every database's: tests running
		// beside this one rebuild a projection of the same name in theirs.
		require.NoError(t, e.pool.QueryRow(ctx, `SELECT bool_or(pg_terminate_backend(pid)) FROM pg_locks
			WHERE locktype = 'advisory' AND granted AND classid = $1 AND objid::bigint = hashtext($2)::bigint & 4294967295
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
			0x706a0003, projection.RebuildCheckpoint("ledger")).Scan(&killed))
		require.True(t, killed, "the rebuild's lock session was found")

		// Another rebuild starts: its lock, then its reset and setup of the shadow.
		other, err := e.pool.Acquire(ctx)
		require.NoError(t, err)
		conn := other.Hijack()
		t.Cleanup(func() { conn.Close(context.Background()) })
		_, err = conn.Exec(ctx, `SELECT pg_advisory_lock($1, hashtext($2))`, 0x706a0003, projection.RebuildCheckpoint("ledger"))
		require.NoError(t, err)
		_, err = conn.Exec(ctx, `DROP SCHEMA rm_ledger_rebuild CASCADE;
			DELETE FROM pgjet.checkpoints WHERE name = 'rebuild:ledger';
			CREATE SCHEMA rm_ledger_rebuild;
			CREATE TABLE rm_ledger_rebuild.applied (seq bigserial PRIMARY KEY, event_id text NOT NULL, stream_id text NOT NULL,
				version bigint NOT NULL, sequence bigint NOT NULL, gen text NOT NULL);
			INSERT INTO pgjet.checkpoints (name, sequence) VALUES ('rebuild:ledger', 0)`)
		require.NoError(t, err)
	}})
	require.True(t, took)
	requireLedgerExact(t, e.pool, e.total())
	require.Error(t, err, "a rebuild without its lock must not swap")
}

// The stream is re-created and holds fewer messages than the live checkpoint counts (the
// old stream had more: duplicates published after their window, or a repair still under
// way): the live projector stops with ErrCheckpointBeyondStream, whose remedy is a rebuild.
// The swap must not wait for the stream to reach the live checkpoint, a number of the old
// stream: it failed with "the stream delivered nothing after sequence 5". It swaps in at
// the rebuild's checkpoint, and the live projector goes on from there.
func TestRebuildAfterTheStreamWasRecreated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, registerDemo(t))
	e.appendCancelled(t, 20)
	e.run(t, fastConfig(ledger("live")))
	require.Equal(t, uint64(20), e.waitApplied(t, "ledger"))

	e.recreateStream(t, 5)

	seq, err := e.rebuild(ctx, "rebuilt", projection.RebuildOptions{})
	require.NoError(t, err)
	require.Equal(t, uint64(5), seq)
	e.appendCancelled(t, 3)
	require.Equal(t, uint64(8), e.waitApplied(t, "ledger"))
	// The model holds what the new stream holds, each event once (its streams' first
	// versions are in the old stream only).
	var rows, distinct int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT sequence) FROM rm_ledger.applied`).Scan(&rows, &distinct))
	require.Equal(t, 8, rows)
	require.Equal(t, 8, distinct)
}
