package projection_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/projection"
)

// Queued statements run as the batch's results arrive, their callbacks included; one that
// fails rolls the whole batch back and is reported for its own event, as a failing Apply is.
func TestQueuedStatementsFailForTheirEvent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, registerDemo(t))
	for i := range 5 {
		_, err := e.store.Append(ctx, "order-q", pgjet.Any, cancelled(i))
		require.NoError(t, err)
	}
	e.waitPublished(t, 5) // so the first batch holds all five
	var (
		mu     sync.Mutex
		echoed []int64
	)
	p := projection.Projection{
		Name: "queued",
		Setup: func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS queued (version bigint PRIMARY KEY CHECK (version <> 3))`)
			return err
		},
		Queue: func(_ context.Context, b *pgx.Batch, ev projection.Event) error {
			b.Queue(`SELECT $1::bigint`, ev.Version).QueryRow(func(row pgx.Row) error {
				var v int64
				err := row.Scan(&v)
				mu.Lock()
				echoed = append(echoed, v)
				mu.Unlock()
				return err
			})
			b.Queue(`INSERT INTO queued (version) VALUES ($1)`, ev.Version)
			return nil
		},
	}
	core, logs := observer.New(zap.WarnLevel)
	cfg := fastConfig(p)
	cfg.BatchSize = 5
	cfg.Logger = zap.New(core)
	stop := e.run(t, cfg)

	fields := firstFailedBatch(t, logs)
	stop()
	require.Equal(t, "order-q", fields["stream"])
	require.Equal(t, int64(3), fields["version"], "the failure is reported for the event whose statement failed: %v", fields)
	require.Contains(t, fmt.Sprint(fields["error"]), "queued_version_check")

	var rows int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM queued`).Scan(&rows))
	require.Zero(t, rows, "versions 1 and 2 rolled back with the batch")
	seq, err := projection.Checkpoint(ctx, e.pool, "queued")
	require.NoError(t, err)
	require.Zero(t, seq)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []int64{1, 2, 3}, echoed[:3], "callbacks ran in order, up to the failing statement")
}

// A Queue projector sends each batch as one pipeline that moves the checkpoint from where
// the projector last left it. When someone else has moved it since (a rebuild's swap,
// another instance), that pipeline changes nothing and the batch goes the long way: the
// events at or below the checkpoint are skipped, not applied again.
func TestMovedCheckpointIsNotOverwritten(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, registerDemo(t))
	pr := queuedLedger("moved", "rm_moved", "g1")
	core, logs := observer.New(zap.InfoLevel)
	cfg := fastConfig(pr)
	cfg.Logger = zap.New(core)
	t.Cleanup(func() {
		for _, l := range logs.All() {
			t.Log(l.Message, l.ContextMap())
		}
	})
	e.appendCancelled(t, 3)
	e.run(t, cfg)
	at := e.waitApplied(t, "moved")

	// Someone else applies the next two events.
	_, err := e.pool.Exec(ctx, `UPDATE pgjet.checkpoints SET sequence = $2 WHERE name = $1`, "moved", at+2)
	require.NoError(t, err)
	e.appendCancelled(t, 5)
	last := e.waitApplied(t, "moved")
	require.Equal(t, at+5, last)

	rows, err := e.pool.Query(ctx, `SELECT sequence FROM rm_moved.applied ORDER BY seq`)
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	want := []int64{}
	for s := uint64(1); s <= last; s++ {
		if s != at+1 && s != at+2 {
			want = append(want, int64(s))
		}
	}
	require.Equal(t, want, got, "applied once each, except the two applied elsewhere")
	require.NotEmpty(t, logs.FilterMessage("checkpoint moved by someone else; applying the batch the long way").All())
}

// A QueuedQuery callback that returns an error fails its batch as a failing statement does:
// nothing of the batch is committed, not even when every statement succeeded in Postgres
// (the error is the callback's own, such as a row it did not expect). The batch is tried
// again, and once the callback accepts it, applied once.
func TestQueuedCallbackErrorRollsBackTheBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, registerDemo(t))
	for i := range 5 {
		_, err := e.store.Append(ctx, "order-cb", pgjet.Any, cancelled(i))
		require.NoError(t, err)
	}
	e.waitPublished(t, 5)  // so the first batch holds all five
	var reject atomic.Bool // version 3 is rejected while set
	reject.Store(true)
	p := projection.Projection{
		Name: "callback",
		Setup: func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS callback (seq bigserial PRIMARY KEY, version bigint NOT NULL)`)
			return err
		},
		Queue: func(_ context.Context, b *pgx.Batch, ev projection.Event) error {
			b.Queue(`INSERT INTO callback (version) VALUES ($1) RETURNING version`, ev.Version).QueryRow(func(row pgx.Row) error {
				var v int64
				if err := row.Scan(&v); err != nil {
					return err
				}
				if v == 3 && reject.Load() {
					return fmt.Errorf("version 3 rejected")
				}
				return nil
			})
			return nil
		},
	}
	core, logs := observer.New(zap.WarnLevel)
	cfg := fastConfig(p)
	cfg.BatchSize = 5
	cfg.Logger = zap.New(core)
	e.run(t, cfg)

	fields := firstFailedBatch(t, logs)
	require.Equal(t, int64(3), fields["version"], "reported for the event whose callback failed: %v", fields)
	var rows int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM callback`).Scan(&rows))
	seq, err := projection.Checkpoint(ctx, e.pool, "callback")
	require.NoError(t, err)
	require.Zero(t, rows, "nothing of the failed batch committed")
	require.Zero(t, seq, "the checkpoint stays before the failed batch")

	reject.Store(false)
	require.Eventually(t, func() bool {
		seq, err := projection.Checkpoint(ctx, e.pool, "callback")
		require.NoError(t, err)
		return seq == 5
	}, 10*time.Second, 10*time.Millisecond)
	rows2, err := e.pool.Query(ctx, `SELECT version FROM callback ORDER BY seq`)
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows2, pgx.RowTo[int64])
	require.NoError(t, err)
	require.Equal(t, []int64{1, 2, 3, 4, 5}, got, "each event applied once, after the retry")
}

// A QueuedQuery callback that panics fails its batch as an error does: nothing of it
// commits, Run goes on (retrying, stalled at the checkpoint) and ends cleanly when asked.
func TestQueuedCallbackPanicCommitsNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, registerDemo(t))
	for i := range 5 {
		_, err := e.store.Append(ctx, "order-panic", pgjet.Any, cancelled(i))
		require.NoError(t, err)
	}
	e.waitPublished(t, 5) // so the first batch holds all five
	pr := projection.Projection{
		Name: "panicking",
		Setup: func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS panicking (version bigint PRIMARY KEY)`)
			return err
		},
		Queue: func(_ context.Context, b *pgx.Batch, ev projection.Event) error {
			b.Queue(`INSERT INTO panicking (version) VALUES ($1) RETURNING version`, ev.Version).QueryRow(func(row pgx.Row) error {
				var v int64
				if err := row.Scan(&v); err != nil {
					return err
				}
				if v == 3 {
					panic("version 3")
				}
				return nil
			})
			return nil
		},
	}
	cfg := fastConfig(pr)
	cfg.BatchSize = 5
	cfg.Pool, cfg.Conn, cfg.Registry = e.pool, e.nc, e.store.Registry()
	p, err := projection.New(cfg)
	require.NoError(t, err)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	// The panic fails the batch, not the process: the projector retries it, each time
	// rolled back, and stays stalled at its checkpoint.
	require.Eventually(t, func() bool { return p.Stalled(300*time.Millisecond) > 0 }, 10*time.Second, 20*time.Millisecond)
	cancel()
	require.NoError(t, <-done, "Run ends cleanly, without a panic")

	var rows int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM panicking`).Scan(&rows))
	seq, err := projection.Checkpoint(ctx, e.pool, "panicking")
	require.NoError(t, err)
	require.Zero(t, rows, "nothing of the batch committed")
	require.Zero(t, seq, "the checkpoint stays before the batch")
}

// An Apply that panics fails its batch, not the process: nothing of the batch commits, the
// projector starts over on a new session, and once Apply stops panicking every event is
// applied once.
func TestApplyPanicIsRetried(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, registerDemo(t))
	for i := range 5 {
		_, err := e.store.Append(ctx, "order-apply-panic", pgjet.Any, cancelled(i))
		require.NoError(t, err)
	}
	e.waitPublished(t, 5)
	var panics atomic.Int32
	pr := projection.Projection{
		Name: "apply_panic",
		Setup: func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS apply_panic (version bigint PRIMARY KEY)`)
			return err
		},
		Apply: func(ctx context.Context, tx pgx.Tx, ev projection.Event) error {
			if _, err := tx.Exec(ctx, `INSERT INTO apply_panic (version) VALUES ($1)`, ev.Version); err != nil {
				return err
			}
			if ev.Version == 3 && panics.Add(1) <= 2 {
				panic("version 3")
			}
			return nil
		},
	}
	cfg := fastConfig(pr)
	cfg.Pool, cfg.Conn, cfg.Registry = e.pool, e.nc, e.store.Registry()
	p, err := projection.New(cfg)
	require.NoError(t, err)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	require.Eventually(t, func() bool {
		seq, err := projection.Checkpoint(ctx, e.pool, "apply_panic")
		return err == nil && seq == 5
	}, 20*time.Second, 20*time.Millisecond, "applied after the panics")
	cancel()
	require.NoError(t, <-done)
	require.Equal(t, int32(3), panics.Load(), "two panics, then the batch went through")
	var rows int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM apply_panic`).Scan(&rows))
	require.Equal(t, 5, rows, "each event once (a duplicate would have failed the primary key)")
}
