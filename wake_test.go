package pgjet

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/pgtest"
)

// Wake-ups go out on the waker's own connection: with every pooled connection taken (by
// appends waiting for their turn, say), the relays still hear of the appends that
// committed. The connection closes once appends stop.
func TestWakeUpsDoNotWaitForThePool(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.DB(t)
	const size = 2
	pool := pgtest.PoolOn(t, url, func(c *pgxpool.Config) { c.MaxConns = size })
	require.NoError(t, Migrate(ctx, pool))
	s, err := New(Config{Pool: pool})
	require.NoError(t, err)
	s.waker.idle = 200 * time.Millisecond

	listener, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { listener.Close(context.Background()) })
	_, err = listener.Exec(ctx, `LISTEN pgjet_outbox`)
	require.NoError(t, err)

	var held []*pgxpool.Conn
	release := func() {
		for _, c := range held {
			c.Release()
		}
		held = nil
	}
	t.Cleanup(release) // before the pool closes, which waits for them
	for range size {
		c, err := pool.Acquire(ctx)
		require.NoError(t, err)
		held = append(held, c)
	}
	s.waker.wake(7, 3)
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second) // the NOTIFY's own timeout is 5 s
	defer cancel()
	n, err := listener.WaitForNotification(wctx)
	require.NoError(t, err, "no wake-up while the pool was taken")
	require.Equal(t, "3,7", n.Payload)
	release()

	wakers := func() (n int) {
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = 'pgjet relay wake-ups'`).Scan(&n))
		return n
	}
	require.Eventually(t, func() bool { return wakers() == 0 }, 5*time.Second, 20*time.Millisecond,
		"the waker's connection outlived its idle time")
	s.waker.wake(1) // and a later wake-up connects again
	wctx, cancel = context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	n, err = listener.WaitForNotification(wctx)
	require.NoError(t, err)
	require.Equal(t, "1", n.Payload)
}
