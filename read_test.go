package pgjet_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/pgtest"
)

// A transaction that took its id first but commits last must not be skipped by a reader
// that already moved past later commits.
func TestReadAllWaitsForLateCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := newStore(t)

	slow, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer slow.Rollback(ctx)
	_, err = s.AppendTx(ctx, slow, "order-slow", pgjet.Any, cancelEvent("slow"))
	require.NoError(t, err)

	_, err = s.Append(ctx, "order-fast", pgjet.Any, cancelEvent("fast"))
	require.NoError(t, err)

	got, err := s.ReadAll(ctx, pgjet.AllPosition{}, 100)
	require.NoError(t, err)
	require.Empty(t, got, "the fast commit must wait behind the open slow transaction")

	require.NoError(t, slow.Commit(ctx))
	// Other tests' transactions (any database of the cluster) may still hold the horizon.
	require.Eventually(t, func() bool {
		got, err = s.ReadAll(ctx, pgjet.AllPosition{}, 100)
		require.NoError(t, err)
		return len(got) == 2
	}, 30*time.Second, 10*time.Millisecond)
	require.Equal(t, "order-slow", got[0].StreamID)
	require.Equal(t, "order-fast", got[1].StreamID)
}

// A transaction gets its id at its first write. One that wrote to another stream first,
// then appended version 2 of a stream after a younger transaction had committed version 1,
// holds the older id; ReadAll must still return the stream in version order.
func TestReadAllKeepsStreamOrderAcrossTransactionIDs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := newStore(t)

	older, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer older.Rollback(ctx)
	_, err = s.AppendTx(ctx, older, "order-elsewhere", pgjet.Any, cancelEvent("takes the older id"))
	require.NoError(t, err)

	_, err = s.Append(ctx, "order-inverted", pgjet.NoStream, cancelEvent("version 1, younger id"))
	require.NoError(t, err)
	_, err = s.AppendTx(ctx, older, "order-inverted", pgjet.ExpectedVersion(1), cancelEvent("version 2, older id"))
	require.NoError(t, err)
	require.NoError(t, older.Commit(ctx))

	var got []pgjet.RecordedEvent
	require.Eventually(t, func() bool {
		got, err = s.ReadAll(ctx, pgjet.AllPosition{}, 100)
		require.NoError(t, err)
		return len(got) == 3
	}, 30*time.Second, 10*time.Millisecond)
	var versions []int64
	for _, e := range got {
		if e.StreamID == "order-inverted" {
			versions = append(versions, e.Version)
		}
	}
	require.Equal(t, []int64{1, 2}, versions, "a stream's events in version order")
}

// Many writers, some holding their transactions open for a while, one reader following
// ReadAll's cursor all along: the reader sees every committed event exactly once, each
// stream in version order, and nothing of rolled-back transactions.
func TestReadAllNeverSkipsUnderConcurrentSlowWriters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := newStore(t)

	var (
		committed sync.Map // event id -> stream
		rolled    sync.Map
		expected  atomic.Int64 // set once the writers are done
		wg        sync.WaitGroup
	)
	for w := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range 40 {
				stream := fmt.Sprintf("order-%d", rng.IntN(5))
				id := uuid.New()
				err := func() error {
					tx, err := pool.Begin(ctx)
					if err != nil {
						return err
					}
					defer tx.Rollback(ctx) // never leave a transaction holding the horizon
					if _, err := s.AppendTx(ctx, tx, stream, pgjet.Any, withID(cancelEvent(fmt.Sprint(w, i)), id)); err != nil {
						return err
					}
					if rng.IntN(5) == 0 {
						time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond) // a slow transaction, on purpose
					}
					if rng.IntN(8) == 0 {
						rolled.Store(id, stream)
						return tx.Rollback(ctx)
					}
					if err := tx.Commit(ctx); err != nil {
						return err
					}
					committed.Store(id, stream)
					return nil
				}()
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	seen := map[uuid.UUID]bool{}
	last := map[string]int64{}
	var cursor pgjet.AllPosition
	readerDone := make(chan struct{})
	deadline := time.Now().Add(time.Minute)
	go func() {
		defer close(readerDone)
		// The horizon is cluster-wide: transactions of other tests, in other databases, hold
		// it back too. That delays the reader; it must never make it skip.
		for time.Now().Before(deadline) {
			if n := expected.Load(); n > 0 && int64(len(seen)) >= n {
				return
			}
			batch, err := s.ReadAll(ctx, cursor, 7)
			require.NoError(t, err)
			for _, e := range batch {
				require.False(t, seen[e.ID], "event %s read twice", e.ID)
				seen[e.ID] = true
				require.Equal(t, last[e.StreamID]+1, e.Version, "stream %s out of order", e.StreamID)
				last[e.StreamID] = e.Version
				cursor = e.Next()
			}
		}
	}()
	wg.Wait()
	n := 0
	committed.Range(func(any, any) bool { n++; return true })
	expected.Store(int64(n))
	<-readerDone

	committed.Range(func(k, _ any) bool {
		require.True(t, seen[k.(uuid.UUID)], "committed event %s never read", k)
		return true
	})
	rolled.Range(func(k, _ any) bool {
		require.False(t, seen[k.(uuid.UUID)], "rolled-back event %s was read", k)
		return true
	})
	require.Equal(t, n, len(seen))
}

func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.DB(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range 4 {
		wg.Go(func() {
			pool := pgtest.PoolOn(t, url)
			errs[i] = pgjet.Migrate(ctx, pool)
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	pool := pgtest.PoolOn(t, url)
	var rows int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pgjet.migrations`).Scan(&rows))
	require.Equal(t, latestMigration(), rows, "each migration recorded once")
}

// A stream read with a start that is no version is refused with ErrInvalidRead, whatever
// the cache holds: a forward read from End read the whole stream, a backward read from
// another negative number returned nothing.
func TestReadStreamRefusesAStartThatIsNoVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := newStore(t)
	_, err := s.Append(ctx, "order-1", pgjet.NoStream, cancelEvent("a"), cancelEvent("b"))
	require.NoError(t, err)
	cached, _ := cachedStore(t, pool, 1<<20)
	for _, store := range []*pgjet.Store{s, cached} {
		for _, bad := range []struct {
			dir  pgjet.Direction
			from int64
		}{{pgjet.Forward, pgjet.End}, {pgjet.Forward, 0}, {pgjet.Backward, 0}, {pgjet.Backward, -2}} {
			_, err := store.ReadStream(ctx, "order-1", bad.dir, bad.from, 10)
			require.ErrorIs(t, err, pgjet.ErrInvalidRead, "direction %d from %d", bad.dir, bad.from)
			require.ErrorContains(t, err, "from must be a version")
		}
		got, err := store.ReadStream(ctx, "order-1", pgjet.Backward, pgjet.End, 10)
		require.NoError(t, err)
		require.Len(t, got, 2)
	}
}
