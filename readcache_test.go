package pgjet_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/pgtest"
	"github.com/pgjet/pgjet/internal/promtest"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

// cachedStore returns a store on pool with a read cache of size bytes, and the registry
// its metrics go to.
func cachedStore(t testing.TB, pool *pgxpool.Pool, size int64) (*pgjet.Store, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := pgjet.New(pgjet.Config{Pool: pool, ReadCacheBytes: size, Registerer: reg})
	require.NoError(t, err)
	return s, reg
}

// readCacheCount returns pgjet_read_cache_reads_total{result}.
func readCacheCount(t testing.TB, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	return promtest.Value(t, reg, "pgjet_read_cache_reads_total", "result", result)
}

// The cache never answers other than Postgres: a store with a cache reads, in random
// directions, from random versions, with random limits, streams that another store (as
// another process would) keeps appending to, and every answer equals the answer of a
// store without a cache. The cache is small, so windows are also evicted and rebuilt.
func TestReadCacheAnswersAsPostgres(t *testing.T) {
	t.Parallel()
	for _, size := range []int64{48 << 10, 4 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			t.Parallel()
			testReadCacheAnswersAsPostgres(t, size)
		})
	}
}

func testReadCacheAnswersAsPostgres(t *testing.T, size int64) {
	ctx := context.Background()
	writer, pool := newStore(t)
	cached, reg := cachedStore(t, pool, size)
	plain, _ := cachedStore(t, pool, 0)

	rng := rand.New(rand.NewPCG(7, uint64(size)))
	streams := []string{"order-a", "order-b", "order-c", "order-d"}
	version := map[string]int64{}
	for i := range 600 {
		stream := streams[rng.IntN(len(streams))]
		if rng.IntN(4) == 0 || version[stream] == 0 {
			n := 1 + rng.IntN(3)
			events := make([]pgjet.EventData, n)
			for j := range events {
				events[j] = cancelEvent(fmt.Sprintf("%s %d.%d", stream, i, j))
			}
			res, err := writer.Append(ctx, stream, pgjet.Any, events...)
			require.NoError(t, err)
			version[stream] = res.LastVersion
			continue
		}
		dir := pgjet.Direction(rng.IntN(2))
		from := rng.Int64N(version[stream]+3) - 1 // -1 (End backward) .. beyond the end
		if dir == pgjet.Backward && rng.IntN(3) == 0 {
			from = pgjet.End
		}
		limit := 1 + rng.IntN(12)
		want, wantErr := plain.ReadStream(ctx, stream, dir, from, limit)
		got, err := cached.ReadStream(ctx, stream, dir, from, limit)
		require.Equal(t, wantErr, err, "read %d: %s %v from %d limit %d", i, stream, dir, from, limit)
		require.Equal(t, want, got, "read %d: %s %v from %d limit %d", i, stream, dir, from, limit)
	}
	hits, tails := readCacheCount(t, reg, "hit"), readCacheCount(t, reg, "tail")
	t.Logf("cached reads: %v hits, %v tails, %v misses", hits, tails, readCacheCount(t, reg, "miss"))
	require.Positive(t, hits, "some reads are answered from memory")
	require.Positive(t, tails, "some reads take the cached events plus the newer ones")
}

// Reads to the end of a hot stream ask Postgres only for what follows the cached events,
// so an event appended by another process is seen at once, forward and backward.
func TestReadCacheSeesOtherWritersAppends(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	writer, pool := newStore(t)
	cached, reg := cachedStore(t, pool, 1<<20)

	appendN := func(n int) {
		for range n {
			_, err := writer.Append(ctx, "order-hot", pgjet.Any, cancelEvent("x"))
			require.NoError(t, err)
		}
	}
	versions := func(events []pgjet.RecordedEvent) []int64 {
		var out []int64
		for _, e := range events {
			out = append(out, e.Version)
		}
		return out
	}
	appendN(5)
	got, err := cached.ReadStream(ctx, "order-hot", pgjet.Forward, 1, 100)
	require.NoError(t, err)
	require.Equal(t, []int64{1, 2, 3, 4, 5}, versions(got))
	require.Equal(t, 1.0, readCacheCount(t, reg, "miss"))

	appendN(2)
	got, err = cached.ReadStream(ctx, "order-hot", pgjet.Forward, 1, 100)
	require.NoError(t, err)
	require.Equal(t, []int64{1, 2, 3, 4, 5, 6, 7}, versions(got))
	got, err = cached.ReadStream(ctx, "order-hot", pgjet.Forward, 2, 3)
	require.NoError(t, err)
	require.Equal(t, []int64{2, 3, 4}, versions(got))
	appendN(1)
	got, err = cached.ReadStream(ctx, "order-hot", pgjet.Backward, pgjet.End, 3)
	require.NoError(t, err)
	require.Equal(t, []int64{8, 7, 6}, versions(got))
	got, err = cached.ReadStream(ctx, "order-hot", pgjet.Backward, 4, 10)
	require.NoError(t, err)
	require.Equal(t, []int64{4, 3, 2, 1}, versions(got))
	require.Equal(t, 1.0, readCacheCount(t, reg, "miss"))
	require.Equal(t, 2.0, readCacheCount(t, reg, "hit"))
	require.Equal(t, 2.0, readCacheCount(t, reg, "tail"))

	// Changing what a read returned changes nothing for the next reader.
	got[0].Data[0] = 0xff
	got[0].Metadata = map[string]string{"x": "y"}
	again, err := cached.ReadStream(ctx, "order-hot", pgjet.Backward, 4, 1)
	require.NoError(t, err)
	require.Equal(t, byte(0), again[0].Data[0])
	require.Nil(t, again[0].Metadata)
}

// A stream whose events are not what the cache holds any more (here deleted behind the
// triggers' back and recreated, as a restore from a backup would) is read again: a read
// to the end checks the cached last event's id.
func TestReadCacheDropsAStreamThatChanged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	writer, pool := newStore(t)
	cached, _ := cachedStore(t, pool, 1<<20)
	for _, n := range []int{5, 3} {
		if n == 3 {
			_, err := pool.Exec(ctx, `
				ALTER TABLE pgjet.events DISABLE TRIGGER events_are_immutable;
				DELETE FROM pgjet.outbox;
				DELETE FROM pgjet.events WHERE stream_id = 'order-x';
				DELETE FROM pgjet.streams WHERE stream_id = 'order-x';
				ALTER TABLE pgjet.events ENABLE TRIGGER events_are_immutable`)
			require.NoError(t, err)
		}
		var ids []string
		for range n {
			res, err := writer.Append(ctx, "order-x", pgjet.Any, cancelEvent("x"))
			require.NoError(t, err)
			ids = append(ids, res.EventIDs[0].String())
		}
		for _, dir := range []pgjet.Direction{pgjet.Forward, pgjet.Backward} {
			from := int64(1)
			if dir == pgjet.Backward {
				from = pgjet.End
			}
			got, err := cached.ReadStream(ctx, "order-x", dir, from, 100)
			require.NoError(t, err)
			require.Len(t, got, n)
			for _, e := range got {
				require.Equal(t, ids[e.Version-1], e.ID.String())
			}
		}
	}
}

func TestReadCacheBytesMustNotBeNegative(t *testing.T) {
	t.Parallel()
	_, err := pgjet.New(pgjet.Config{Pool: &pgxpool.Pool{}, ReadCacheBytes: -1})
	require.ErrorContains(t, err, "ReadCacheBytes")
}

// BenchmarkReadStream reads the 100 events of a hot stream: with Postgres's own SELECT
// through pgx, with ReadStream without and with the read cache, as the whole stream
// (forward from 1 with a limit beyond its end: the cache asks Postgres for newer events),
// as a slice inside it (forward 1..100 with limit 100: from memory), and its last 10
// events (backward from End: the cache asks for newer events). Run with
//
//	go test -run '^$' -bench BenchmarkReadStream -benchtime 2000x .
func BenchmarkReadStream(b *testing.B) {
	ctx := context.Background()
	pool := pgtest.Pool(b)
	require.NoError(b, pgjet.Migrate(ctx, pool))
	writer, _ := cachedStore(b, pool, 0)
	_, err := writer.Registry().RegisterFS(ctx, demoschemas.Files)
	require.NoError(b, err)
	const stream = "order-bench"
	for range 10 {
		events := make([]pgjet.EventData, 10)
		for i := range events {
			events[i] = cancelEvent("benchmark")
		}
		_, err := writer.Append(ctx, stream, pgjet.Any, events...)
		require.NoError(b, err)
	}
	plain, _ := cachedStore(b, pool, 0)
	cached, _ := cachedStore(b, pool, 8<<20)

	b.Run("pgx-select", func(b *testing.B) {
		for b.Loop() {
			rows, err := pool.Query(ctx, `SELECT position, tx_id::text, event_id, stream_id, version, type, schema_id, data, metadata, created_at
				FROM pgjet.events WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3`, stream, 1, 100)
			require.NoError(b, err)
			n := 0
			for rows.Next() {
				var (
					e    pgjet.RecordedEvent
					txid string
					md   []byte
				)
				require.NoError(b, rows.Scan(&e.Position, &txid, &e.ID, &e.StreamID, &e.Version, &e.Type, &e.SchemaID, &e.Data, &md, &e.CreatedAt))
				n++
			}
			require.NoError(b, rows.Err())
			require.Equal(b, 100, n)
		}
	})
	reads := []struct {
		name  string
		dir   pgjet.Direction
		from  int64
		limit int
		want  int
	}{
		{"whole-stream", pgjet.Forward, 1, 1000, 100},
		{"slice-1-100", pgjet.Forward, 1, 100, 100},
		{"last-10", pgjet.Backward, pgjet.End, 10, 10},
	}
	for _, r := range reads {
		for _, c := range []struct {
			name  string
			store *pgjet.Store
		}{{"uncached", plain}, {"cached", cached}} {
			b.Run(r.name+"/"+c.name, func(b *testing.B) {
				for b.Loop() {
					got, err := c.store.ReadStream(ctx, stream, r.dir, r.from, r.limit)
					require.NoError(b, err)
					require.Len(b, got, r.want)
				}
			})
		}
	}
}

// "Read everything" (math.MaxInt) works with the cache as without it, both ways; the
// cache's arithmetic on the limit overflowed (a panic forward, a negative LIMIT backward).
func TestReadCacheTakesTheLargestLimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := newStore(t)
	s, _ := cachedStore(t, pool, 1<<20)
	for range 3 {
		_, err := s.Append(ctx, "order-c", pgjet.Any, cancelEvent("x"))
		require.NoError(t, err)
	}
	_, err := s.ReadStream(ctx, "order-c", pgjet.Forward, 1, 100) // fills the cache
	require.NoError(t, err)
	back, err := s.ReadStream(ctx, "order-c", pgjet.Backward, pgjet.End, math.MaxInt)
	require.NoError(t, err)
	require.Len(t, back, 3)
	fwd, err := s.ReadStream(ctx, "order-c", pgjet.Forward, 2, math.MaxInt)
	require.NoError(t, err)
	require.Len(t, fwd, 2)
}

// The cache holds about Config.ReadCacheBytes, whatever its events look like: here
// streams with the longest ids and events with a little metadata, the shape its estimate
// missed most (every event's own copy of the stream id, a map's fixed size), so that it
// held more than twice its budget. Not parallel: it measures the heap.
func TestReadCacheStaysWithinItsBudget(t *testing.T) {
	ctx := context.Background()
	writer, pool := newStore(t)
	const (
		budget  = 4 << 20
		streams = 600
		each    = 20
	)
	ids := make([]string, streams)
	for i := range ids {
		ids[i] = fmt.Sprintf("order-%0*d", pgjet.MaxStreamIDLength-len("order-"), i)
		events := make([]pgjet.EventData, each)
		for j := range events {
			events[j] = cancelEvent("x")
			events[j].Metadata = map[string]string{"tenant": "acme"}
		}
		_, err := writer.Append(ctx, ids[i], pgjet.NoStream, events...)
		require.NoError(t, err)
	}
	cached, _ := cachedStore(t, pool, budget)
	read := func() {
		for _, id := range ids {
			got, err := cached.ReadStream(ctx, id, pgjet.Forward, 1, each)
			require.NoError(t, err)
			require.Len(t, got, each)
		}
	}
	read() // prepares the statements on every connection, and fills the cache
	cached, _ = cachedStore(t, pool, budget)
	held := heapGrowth(read)
	t.Logf("cache budget %d bytes, heap grew by %d bytes", budget, held)
	require.Less(t, held, int64(budget)*5/4, "the cache holds more than its budget")
	runtime.KeepAlive(cached)
}

// The cache's budget covers all it holds: a stream id the caller carved out of a larger
// string (a request body, a NATS subject) is not kept alive by the cache, which counts only
// the id's own bytes. Not parallel: it measures the heap.
func TestReadCacheKeepsNoCallersString(t *testing.T) {
	ctx := context.Background()
	writer, pool := newStore(t)
	const (
		budget  = 1 << 20
		streams = 64
		body    = 256 << 10 // each id is a slice of a string this long
	)
	for i := range streams {
		_, err := writer.Append(ctx, fmt.Sprintf("order-%d", i), pgjet.NoStream, cancelEvent("x"))
		require.NoError(t, err)
	}
	cached, _ := cachedStore(t, pool, budget)
	read := func(id string) {
		got, err := cached.ReadStream(ctx, id, pgjet.Forward, 1, 10)
		require.NoError(t, err)
		require.Len(t, got, 1)
	}
	read("order-0") // prepares the statement
	held := heapGrowth(func() {
		for i := range streams {
			id := fmt.Sprintf("order-%d", i)
			request := id + strings.Repeat(" ", body-len(id))
			read(request[:len(id)])
		}
	})
	t.Logf("cache budget %d bytes, heap grew by %d bytes", budget, held)
	require.Less(t, held, int64(budget), "the cache keeps the callers' strings alive")
	runtime.KeepAlive(cached)
}

// Readers of a cached store race writers in another process (a store on a pool of its
// own) that append two events per transaction with AppendTx and roll a quarter of them
// back. Every answer is a run of consecutive committed events, as Postgres holds them,
// never one of a rolled-back transaction, and reaches every event committed before the
// read started.
func TestReadCacheUnderConcurrentWritersAndRollbacks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := newStore(t)
	other := pgtest.PoolOn(t, pool.Config().ConnString())
	writer, err := pgjet.New(pgjet.Config{Pool: other})
	require.NoError(t, err)
	cached, _ := cachedStore(t, pool, 64<<10)

	type read struct {
		stream string
		dir    pgjet.Direction
		from   int64
		limit  int
		floor  int64 // the stream's version committed before the read started
		got    []pgjet.RecordedEvent
	}
	var (
		mu        sync.Mutex
		committed = map[string]int64{}
		rolled    = map[uuid.UUID]bool{}
		reads     []read
		wg        sync.WaitGroup
	)
	streams := []string{"order-a", "order-b", "order-c"}
	for w := range 3 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range 60 {
				stream := streams[rng.IntN(len(streams))]
				first, second := uuid.New(), uuid.New()
				last, err := func() (int64, error) {
					tx, err := other.Begin(ctx)
					if err != nil {
						return 0, err
					}
					defer tx.Rollback(ctx)
					res, err := writer.AppendTx(ctx, tx, stream, pgjet.Any,
						withID(cancelEvent(fmt.Sprint(w, i)), first), withID(cancelEvent("x"), second))
					if err != nil || rng.IntN(4) == 0 {
						return 0, err // rolled back
					}
					return res.LastVersion, tx.Commit(ctx)
				}()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if last == 0 {
					rolled[first], rolled[second] = true, true
				}
				committed[stream] = max(committed[stream], last)
				mu.Unlock()
			}
		})
	}
	for r := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 2))
			for range 400 {
				stream := streams[rng.IntN(len(streams))]
				mu.Lock()
				floor := committed[stream]
				mu.Unlock()
				dir := pgjet.Direction(rng.IntN(2))
				from := 1 + rng.Int64N(floor+2)
				if dir == pgjet.Backward && rng.IntN(2) == 0 {
					from = pgjet.End
				}
				limit := 1 + rng.IntN(20)
				if rng.IntN(4) == 0 {
					limit = 1000
				}
				got, err := cached.ReadStream(ctx, stream, dir, from, limit)
				if err != nil && !errors.Is(err, pgjet.ErrStreamNotFound) {
					t.Error(err)
					return
				}
				mu.Lock()
				reads = append(reads, read{stream, dir, from, limit, floor, got})
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	stored := map[string][]pgjet.RecordedEvent{}
	for _, s := range streams {
		stored[s], err = writer.ReadStream(ctx, s, pgjet.Forward, 1, 100_000)
		require.NoError(t, err)
	}
	for i, r := range reads {
		msg := fmt.Sprintf("read %d: %s %v from %d limit %d, %d committed before", i, r.stream, r.dir, r.from, r.limit, r.floor)
		step := int64(1)
		if r.dir == pgjet.Backward {
			step = -1
		}
		for j, e := range r.got {
			require.False(t, rolled[e.ID], "%s: an event of a rolled-back transaction", msg)
			require.Equal(t, stored[r.stream][e.Version-1], e, msg)
			if j > 0 {
				require.Equal(t, r.got[j-1].Version+step, e.Version, "%s: not consecutive", msg)
			}
		}
		// What Postgres held when the read started bounds the answer from below.
		switch first := max(r.from, 1); {
		case r.dir == pgjet.Forward && first <= r.floor:
			require.NotEmpty(t, r.got, msg)
			require.Equal(t, first, r.got[0].Version, msg)
			require.Len(t, r.got, int(min(int64(r.limit), max(r.floor, r.got[len(r.got)-1].Version)-first+1)), msg)
		case r.dir == pgjet.Backward && r.floor > 0 && (r.from == pgjet.End || r.from >= 1):
			top := r.from
			if top == pgjet.End {
				top = r.floor
			}
			require.NotEmpty(t, r.got, msg)
			require.GreaterOrEqual(t, r.got[0].Version, min(top, r.floor), msg)
			require.Len(t, r.got, int(min(int64(r.limit), r.got[0].Version)), msg)
		}
	}
}

// A read too large for the cache to keep costs what it costs without a cache: the cache
// does not copy events it is going to drop. Not parallel: it measures allocations.
func TestReadCacheCopiesNoReadItCannotKeep(t *testing.T) {
	ctx := context.Background()
	writer, pool := newStore(t)
	_, err := writer.Registry().Register(ctx, "test.Blob",
		`{"type":"record","name":"Blob","namespace":"test","fields":[{"name":"b","type":"string"}]}`)
	require.NoError(t, err)
	events := make([]pgjet.EventData, 100)
	for i := range events {
		events[i] = pgjet.EventData{Type: "test.Blob", Data: map[string]any{"b": strings.Repeat("x", 8<<10)}}
	}
	_, err = writer.Append(ctx, "order-big", pgjet.NoStream, events...)
	require.NoError(t, err)

	allocated := func(s *pgjet.Store) uint64 {
		_, err := s.ReadStream(ctx, "order-big", pgjet.Forward, 1, 1000) // prepares the statement
		require.NoError(t, err)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		got, err := s.ReadStream(ctx, "order-big", pgjet.Forward, 1, 1000)
		runtime.ReadMemStats(&after)
		require.NoError(t, err)
		require.Len(t, got, 100)
		return after.TotalAlloc - before.TotalAlloc
	}
	plain, _ := cachedStore(t, pool, 0)
	cached, _ := cachedStore(t, pool, 256<<10) // keeps a stream of 64 KiB at most
	without, with := allocated(plain), allocated(cached)
	t.Logf("a read of 800 KiB allocates %d bytes without the cache, %d with it", without, with)
	require.Less(t, with, without*5/4, "the cache copied a read it could not keep")
}

// heapGrowth returns how much the live heap grew across f, each side after a collection.
func heapGrowth(f func()) int64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.GC()
	runtime.ReadMemStats(&after)
	return int64(after.HeapAlloc) - int64(before.HeapAlloc)
}
