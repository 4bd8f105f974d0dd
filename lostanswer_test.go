package pgjet_test

import (
	"bytes"
	"context"
	"io"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/netproxy"
	"github.com/pgjet/pgjet/internal/pgtest"
	"github.com/pgjet/pgjet/internal/promtest"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

// A group-commit batch that commits but whose answer is lost (the connection drops after
// the statements were sent) is run again append by append. Each append must then find its
// own events and report them stored, not a conflict with itself: here an append expecting
// version 1, with ids pgjet generated, whose first run moved the stream to 2.
func TestGroupCommitBatchWhoseAnswerIsLost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.DB(t)
	direct := pgtest.PoolOn(t, dbURL)
	require.NoError(t, pgjet.Migrate(ctx, direct))
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	const marker = "lose-the-answer-3f9a"
	d := &answerDropper{marker: []byte(marker)}
	u.Host = netproxy.New(t, u.Host, netproxy.Config{Hooks: d.hooks}).Addr()
	reg := prometheus.NewRegistry()
	s, err := pgjet.New(pgjet.Config{Pool: pgtest.PoolOn(t, u.String()), GroupCommit: true, GroupCommitConns: 1, Registerer: reg})
	require.NoError(t, err)
	_, err = s.Registry().RegisterFS(ctx, demoschemas.Files)
	require.NoError(t, err)
	for _, stream := range []string{"order-held", "order-a", "order-b"} {
		_, err := s.Append(ctx, stream, pgjet.Any, cancelEvent("first"))
		require.NoError(t, err)
	}

	// The one committer waits on the held stream's row while the two appends queue, so
	// that they go in one batch.
	tx, err := direct.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, `SELECT 1 FROM pgjet.streams WHERE stream_id = 'order-held' FOR UPDATE`)
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := s.Append(ctx, "order-held", pgjet.Any, cancelEvent("held")); err != nil {
			t.Error(err)
		}
	})
	require.Eventually(t, func() bool { return s.GroupQueued() == 0 && lockWaiters(t, direct) == 1 },
		10*time.Second, 10*time.Millisecond)
	var (
		resA, resB pgjet.AppendResult
		errA, errB error
	)
	wg.Go(func() { resA, errA = s.Append(ctx, "order-a", pgjet.Exact(1), cancelEvent(marker)) })
	wg.Go(func() { resB, errB = s.Append(ctx, "order-b", pgjet.Any, cancelEvent("b")) })
	require.Eventually(t, func() bool { return s.GroupQueued() == 2 }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, tx.Rollback(ctx))
	wg.Wait()

	require.True(t, d.dropped.Load(), "the batch's answer was not dropped")
	require.Equal(t, 1.0, promtest.Must(t, reg, "pgjet_append_group_fallbacks_total"))
	require.NoError(t, errA, "the append's own first run counted as a conflict")
	require.Equal(t, int64(2), resA.FirstVersion)
	require.False(t, resA.Duplicate, "pgjet chose the ids: no caller retried")
	require.NoError(t, errB)
	require.Equal(t, int64(2), resB.FirstVersion)
	for _, stream := range []string{"order-a", "order-b"} {
		v, err := s.StreamVersion(ctx, stream)
		require.NoError(t, err)
		require.Equal(t, int64(2), v, "stream %s: stored once", stream)
	}
}

// lockWaiters returns how many sessions of pool's database wait for a lock.
func lockWaiters(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n))
	return n
}

// answerDropper makes netproxy hooks that, the first time a client sends bytes holding
// marker, pass them on to Postgres, let the server answer into the void and close the
// connection once it is idle: the statements run and commit, and the client never hears of
// it.
type answerDropper struct {
	marker  []byte
	dropped atomic.Bool
}

// readyIdle is Postgres's ReadyForQuery message outside a transaction: the server has
// finished what it was sent up to a Sync, a commit included.
var readyIdle = []byte{'Z', 0, 0, 0, 5, 'I'}

// hooks returns the hooks of one connection.
func (d *answerDropper) hooks() (toServer, toClient netproxy.Hook) {
	var mute atomic.Bool             // set once this connection's answers are to be dropped
	committed := make(chan struct{}) // closed when a dropped answer says the server is idle
	var dropped []byte
	toServer = func(server io.Writer, b []byte) error {
		drop := !d.dropped.Load() && bytes.Contains(b, d.marker) && d.dropped.CompareAndSwap(false, true)
		if drop {
			mute.Store(true)
		}
		if _, err := server.Write(b); err != nil {
			return err
		}
		if drop {
			select { // the server runs and commits what it got; its answer goes nowhere
			case <-committed:
			case <-time.After(30 * time.Second):
			}
			return io.EOF // the proxy closes the connection
		}
		return nil
	}
	toClient = func(client io.Writer, b []byte) error {
		if !mute.Load() {
			_, err := client.Write(b)
			return err
		}
		if dropped = append(dropped, b...); bytes.Contains(dropped, readyIdle) {
			close(committed)
			return io.EOF
		}
		return nil
	}
	return toServer, toClient
}
