package pgjet

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/outbox"
	"github.com/pgjet/pgjet/internal/pgtest"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

// An append wakes the relays of its partition in its own round trip, on its own
// connection (the pool has one): alone and through group commit, the wake-ups name every
// partition the appends wrote to.
func TestAppendsWakeTheirPartitions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := oneConnection(t)
	listener := listen(t, url)

	for _, grouped := range []bool{false, true} {
		s := demoStore(t, Config{Pool: pool, GroupCommit: grouped})
		want := map[int16]bool{}
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for i := range 4 {
			stream := fmt.Sprintf("order-wake-%v-%d", grouped, i)
			want[outbox.PartitionOf(stream)] = true
			wg.Go(func() {
				_, err := s.Append(ctx, stream, Any, demoEvent())
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		got := map[int16]bool{}
		for len(got) < len(want) {
			payload := nextNotification(t, listener)
			for _, p := range strings.Split(payload, ",") {
				n, err := strconv.Atoi(p)
				require.NoError(t, err)
				got[int16(n)] = true
			}
		}
		require.Equal(t, want, got, "group commit %v", grouped)
	}
}

// A prepared statement the server no longer has (DEALLOCATE, DISCARD ALL) is prepared
// again, and the append goes through.
func TestAppendPreparesDroppedStatementsAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := oneConnection(t)
	s := demoStore(t, Config{Pool: pool})
	_, err := s.Append(ctx, "order-dropped", Any, demoEvent())
	require.NoError(t, err)
	sql, _ := (&prepared{expected: Any}).statement(false)
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	// Behind pgx's back: pgx still believes the statement is prepared.
	_, err = conn.Conn().PgConn().Exec(ctx, "DEALLOCATE "+statementName(sql)).ReadAll()
	require.NoError(t, err)
	conn.Release()
	res, err := s.Append(ctx, "order-dropped", Any, demoEvent())
	require.NoError(t, err)
	require.Equal(t, int64(2), res.LastVersion)

	// The wake-up's statement alone: the append commits, its wake-up is lost, the next
	// append's goes out.
	listener := listen(t, url)
	conn, err = pool.Acquire(ctx)
	require.NoError(t, err)
	_, err = conn.Conn().PgConn().Exec(ctx, "DEALLOCATE "+statementName(wakeSQL)).ReadAll()
	require.NoError(t, err)
	conn.Release()
	res, err = s.Append(ctx, "order-dropped", Any, demoEvent())
	require.NoError(t, err)
	require.Equal(t, int64(3), res.LastVersion)
	_, err = s.Append(ctx, "order-dropped", Any, demoEvent())
	require.NoError(t, err)
	require.Equal(t, strconv.Itoa(int(outbox.PartitionOf("order-dropped"))), nextNotification(t, listener))
}

// demoStore is a store with the demo schemas registered.
func demoStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := New(cfg)
	require.NoError(t, err)
	_, err = s.Registry().RegisterFS(context.Background(), demoschemas.Files)
	require.NoError(t, err)
	return s
}

// demoEvent is a demo OrderCancelled event.
func demoEvent() EventData {
	return EventData{Type: "pgjet.demo.order.OrderCancelled", Data: map[string]any{
		"order_id": uuid.NewString(), "reason": "changed my mind", "cancelled_at": time.Now(),
	}}
}

func listen(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	listener, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { listener.Close(context.Background()) })
	_, err = listener.Exec(ctx, `LISTEN pgjet_outbox`)
	require.NoError(t, err)
	return listener
}

func nextNotification(t *testing.T, listener *pgx.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := listener.WaitForNotification(ctx)
	require.NoError(t, err, "no wake-up")
	return n.Payload
}

// oneConnection returns a fresh, migrated database and a pool of one connection on it.
func oneConnection(t *testing.T) (string, *pgxpool.Pool) {
	t.Helper()
	url := pgtest.DB(t)
	pool := pgtest.PoolOn(t, url, func(c *pgxpool.Config) { c.MaxConns = 1 })
	require.NoError(t, Migrate(context.Background(), pool))
	return url, pool
}

// Once the append's transaction has committed, nothing that happens to the wake-up makes
// the append look failed: not an error, not even the connection dying (a caller, or group
// commit, would otherwise run it again). An error in the append's own transaction is the
// append's, and nothing of it commits.
func TestWakeUpFailureAfterCommitIsNotTheAppends(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.DB(t)
	setup, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { setup.Close(context.Background()) })
	_, err = setup.Exec(ctx, `CREATE TABLE appended (id int PRIMARY KEY)`)
	require.NoError(t, err)
	run := func(id int, wake string) error {
		c, err := pgx.Connect(ctx, url)
		require.NoError(t, err)
		defer c.Close(context.Background())
		return pipelineWaking(ctx, c, []statement{{sql: `INSERT INTO appended VALUES ($1)`, args: []any{id}}},
			statement{sql: wake}, func(int, pgx.Rows) error { return nil })
	}
	count := func(id int) (n int) {
		require.NoError(t, setup.QueryRow(ctx, `SELECT count(*) FROM appended WHERE id = $1`, id).Scan(&n))
		return n
	}

	require.NoError(t, run(1, `SELECT 1/0`), "an error in the wake-up")
	require.Equal(t, 1, count(1))
	require.NoError(t, run(2, `SELECT pg_terminate_backend(pg_backend_pid())`), "the connection dying in the wake-up")
	require.Equal(t, 1, count(2))
	var pgErr *pgconn.PgError
	require.ErrorAs(t, run(1, `SELECT 1`), &pgErr, "the append's own error")
	require.Equal(t, "23505", pgErr.Code)
}
