package opstest

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/pgtest"
	"github.com/pgjet/pgjet/internal/promtest"
	"github.com/pgjet/pgjet/internal/relay"
	"github.com/pgjet/pgjet/internal/service"
)

// The outbox statistics count pending rows exactly up to the cap and estimate beyond it,
// report the oldest row's age, feed the outbox readiness check and the collector.
func TestOutboxStatsAndAgeCheck(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	pg := &service.Postgres{Pool: pool}

	migrated := service.MigrationsCheck(pg)
	require.ErrorContains(t, migrated(ctx), "run `migrate`", "a fresh database is not migrated")
	require.NoError(t, pgjet.Migrate(ctx, pool))
	require.NoError(t, migrated(ctx))

	s, err := relay.ReadOutboxStats(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, relay.OutboxStats{Pending: 0, Exact: true, OldestAge: 0}, s)
	stale := service.OutboxAgeCheck(pg, time.Minute)
	require.NoError(t, stale(ctx))

	_, err = pool.Exec(ctx, `INSERT INTO pgjet.outbox (position, partition, created_at)
		SELECT g, g % 32, now() - interval '90 seconds' + g * interval '1 second' FROM generate_series(1, 5) g`)
	require.NoError(t, err)
	s, err = relay.ReadOutboxStats(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, int64(5), s.Pending)
	require.Zero(t, s.DeadRows)
	require.True(t, s.Exact)
	require.Greater(t, s.OldestAge, 85*time.Second)
	require.Less(t, s.OldestAge, 10*time.Minute)
	require.ErrorContains(t, stale(ctx), "5 unpublished outbox rows")
	require.NoError(t, service.OutboxAgeCheck(pg, time.Hour)(ctx))

	reg := prometheus.NewRegistry()
	reg.MustRegister(relay.NewOutboxCollector(pool, 0))
	require.Equal(t, 5.0, promtest.Must(t, reg, "pgjet_outbox_pending_rows"))
	require.Greater(t, promtest.Must(t, reg, "pgjet_outbox_oldest_age_seconds"), 85.0)
	promtest.Must(t, reg, "pgjet_outbox_stats_errors_total")
	require.Zero(t, promtest.Must(t, reg, "pgjet_outbox_dead_rows"))

	// Deleted rows count as dead until a vacuum removes them (the statistics lag a little).
	_, err = pool.Exec(ctx, `DELETE FROM pgjet.outbox WHERE position <= 2`)
	require.NoError(t, err)
	dead := func(want float64) func() bool {
		return func() bool { v, _, err := promtest.Sum(reg, "pgjet_outbox_dead_rows"); return err == nil && v == want }
	}
	require.Eventually(t, dead(2), 15*time.Second, 50*time.Millisecond)
	_, err = pool.Exec(ctx, `VACUUM pgjet.outbox`)
	require.NoError(t, err)
	require.Eventually(t, dead(0), 15*time.Second, 50*time.Millisecond)

	_, err = pool.Exec(ctx, `INSERT INTO pgjet.outbox (position, partition)
		SELECT g, g % 32 FROM generate_series(100, 100 + $1) g`, 2*relay.OutboxCountCap)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `ANALYZE pgjet.outbox`)
	require.NoError(t, err)
	s, err = relay.ReadOutboxStats(ctx, pool)
	require.NoError(t, err)
	require.False(t, s.Exact, "beyond the cap the count is an estimate")
	require.GreaterOrEqual(t, s.Pending, int64(relay.OutboxCountCap))
}

// A relay is not ready before it has joined the relay group, and ready once it holds its
// partitions.
func TestRelayReadiness(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	require.NoError(t, pgjet.Migrate(ctx, pool))
	nc, _ := natstest.Connect(t, natstest.Server(t))
	r, err := relay.New(relay.Config{Pool: pool, Conn: nc, PollInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	require.ErrorContains(t, r.Ready(), "not joined")
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	t.Cleanup(func() { stop(); require.NoError(t, <-done) })
	eventually(t, 10*time.Second, "the relay is ready", func() bool { return r.Ready() == nil && r.Owned() == 32 })
}
