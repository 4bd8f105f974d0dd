package pgjet

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/pgtest"
)

// Group commit avoids deadlocks between its committers by locking streams in one order:
// commit sorts each batch by stream (bytewise), and the merged statement must lock in
// exactly that order. These tests hold one stream's row in another transaction, run a
// merged batch until it waits for that row, and check which of the batch's other streams
// it holds by then.

// lockingStore is a group-commit store on a fresh database created with dbOptions.
func lockingStore(t *testing.T, dbOptions string) (*Store, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.PoolOn(t, pgtest.DBWith(t, dbOptions))
	require.NoError(t, Migrate(context.Background(), pool))
	s, err := New(Config{Pool: pool, GroupCommit: true})
	require.NoError(t, err)
	return s, pool
}

// anyAppend is a one-event append expecting Any, with the event id given (so a retry can
// be told apart) or a new one.
func anyAppend(stream string, id uuid.UUID) *groupRequest {
	return &groupRequest{ctx: context.Background(), p: &prepared{stream: stream, expected: Any, partition: 1,
		clientIDs: true, clientID: id, ids: []uuid.UUID{id}, types: []string{"t.Ev"}, schemaIDs: []int32{1},
		data: [][]byte{{0, 0, 0, 0, 1}}, metadata: [][]byte{[]byte(`{}`)}}}
}

// runMergedWhileHeld runs batch through the merged statement while another transaction
// holds held's row, and returns, for each of probe, whether the batch had locked that
// stream by the time it waited for held. It then lets the batch finish and returns its
// outcomes.
func runMergedWhileHeld(t *testing.T, s *Store, pool *pgxpool.Pool, batch []*groupRequest, held string, probe ...string) ([]bool, []outcome) {
	t.Helper()
	ctx := context.Background()
	holder, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer holder.Rollback(ctx) // on failure too: the batch would wait for ever
	_, err = holder.Exec(ctx, `SELECT 1 FROM pgjet.streams WHERE stream_id = $1 FOR UPDATE`, held)
	require.NoError(t, err)

	outcomes := make([]outcome, len(batch))
	done := make(chan error, 1)
	go func() { done <- s.group.runMerged(ctx, batch, outcomes) }()
	require.Eventually(t, func() bool {
		var waiting bool
		err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock')`).Scan(&waiting)
		return err == nil && waiting
	}, 10*time.Second, 5*time.Millisecond, "the batch never waited for %s", held)

	locked := make([]bool, len(probe))
	for i, stream := range probe {
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, `SELECT 1 FROM pgjet.streams WHERE stream_id = $1 FOR UPDATE NOWAIT`, stream)
		var pgErr *pgconn.PgError
		locked[i] = errors.As(err, &pgErr) && pgErr.Code == "55P03" // lock_not_available
		require.True(t, err == nil || locked[i], "probing %s: %v", stream, err)
		require.NoError(t, tx.Rollback(ctx))
	}

	require.NoError(t, holder.Rollback(ctx))
	require.NoError(t, <-done)
	return locked, outcomes
}

// Under en-US, "order-a" sorts before "order-B"; bytewise, after. Sorting in SQL would
// follow the database's collation.
func TestMergedAppendsLockInTheBatchOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := lockingStore(t, "LOCALE_PROVIDER icu ICU_LOCALE 'en-US'")
	rows, err := pool.Query(ctx, `SELECT s FROM unnest(ARRAY['order-B', 'order-a']) s ORDER BY s`)
	require.NoError(t, err)
	collated, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"order-a", "order-B"}, collated, "the database's collation must disagree with Go's order")
	for _, stream := range []string{"order-a", "order-B"} {
		_, err := s.runAlone(ctx, anyAppend(stream, uuid.New()).p)
		require.NoError(t, err)
	}

	batch := []*groupRequest{anyAppend("order-B", uuid.New()), anyAppend("order-a", uuid.New())} // as commit sorts them
	locked, outcomes := runMergedWhileHeld(t, s, pool, batch, "order-a", "order-B")
	require.True(t, locked[0], "order-B was free while the batch waited for order-a: the batch locked in the collation's order")
	for i, o := range outcomes {
		require.NotNil(t, o.last, "append %d", i)
		require.Equal(t, int64(2), *o.last, "append %d", i)
	}
	require.Less(t, outcomes[0].positions[0], outcomes[1].positions[0], "positions follow the batch order")
}

// A retry of stored ids claims nothing, yet its stream must still be locked in its place:
// if the batch also holds a new append to that stream, the second round locks the stream
// anyway, by then after streams that sort later. Two such batches deadlocked in
// TestGroupCommitMergesAnyAppends about once in eight runs.
func TestMergedAppendsLockARetrysStreamInItsPlace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := lockingStore(t, "")
	stored := uuid.New()
	for _, a := range []*groupRequest{anyAppend("order-x", stored), anyAppend("order-y", uuid.New())} {
		_, err := s.runAlone(ctx, a.p)
		require.NoError(t, err)
	}

	// Rounds: [retry to x, new to y], then [new to x].
	batch := []*groupRequest{anyAppend("order-x", stored), anyAppend("order-x", uuid.New()), anyAppend("order-y", uuid.New())}
	require.Equal(t, [][]int{{0, 2}, {1}}, rounds(batch))
	locked, outcomes := runMergedWhileHeld(t, s, pool, batch, "order-x", "order-y")
	require.False(t, locked[0], "order-y was locked while the batch waited for order-x, which sorts first")
	require.Equal(t, int64(1), outcomes[0].dup, "the retry")
	require.NotNil(t, outcomes[1].last)
	require.Equal(t, int64(2), *outcomes[1].last, "the new append to order-x")
	require.NotNil(t, outcomes[2].last)
	require.Equal(t, int64(2), *outcomes[2].last, "the new append to order-y")
}
