package pgjet_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/pgtest"
	"github.com/pgjet/pgjet/internal/promtest"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

const placed = "pgjet.demo.order.OrderPlaced"
const cancelled = "pgjet.demo.order.OrderCancelled"

func cancelEvent(reason string) pgjet.EventData {
	return pgjet.EventData{Type: cancelled, Data: json.RawMessage(fmt.Sprintf(
		`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","reason":%q,"cancelled_at":"2026-11-26T10:00:00Z"}`, reason))}
}

func withID(e pgjet.EventData, id uuid.UUID) pgjet.EventData { e.ID = id; return e }

func count(t *testing.T, pool *pgxpool.Pool, table string) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM `+table).Scan(&n))
	return n
}

func TestAppendAndReadStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := newStore(t)

	res, err := s.Append(ctx, "order-1", pgjet.NoStream, cancelEvent("a"), cancelEvent("b"), cancelEvent("c"))
	require.NoError(t, err)
	require.Equal(t, int64(1), res.FirstVersion)
	require.Equal(t, int64(3), res.LastVersion)
	require.Len(t, res.Positions, 3)
	require.Less(t, res.Positions[0], res.Positions[1])
	require.Equal(t, 3, count(t, pool, "pgjet.outbox"), "one outbox row per event")

	v, err := s.StreamVersion(ctx, "order-1")
	require.NoError(t, err)
	require.Equal(t, int64(3), v)

	fwd, err := s.ReadStream(ctx, "order-1", pgjet.Forward, 2, 10)
	require.NoError(t, err)
	require.Len(t, fwd, 2)
	require.Equal(t, []int64{2, 3}, []int64{fwd[0].Version, fwd[1].Version})
	js, err := s.DecodeJSON(ctx, fwd[0])
	require.NoError(t, err)
	require.Contains(t, string(js), `"reason":"b"`)

	back, err := s.ReadStream(ctx, "order-1", pgjet.Backward, pgjet.End, 2)
	require.NoError(t, err)
	require.Equal(t, []int64{3, 2}, []int64{back[0].Version, back[1].Version})

	_, err = s.ReadStream(ctx, "order-404", pgjet.Forward, 1, 10)
	require.ErrorIs(t, err, pgjet.ErrStreamNotFound)
	_, err = s.StreamVersion(ctx, "order-404")
	require.ErrorIs(t, err, pgjet.ErrStreamNotFound)
}

func TestExpectedVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	_, err := s.Append(ctx, "order-2", pgjet.Exact(2), cancelEvent("x"))
	requireConflict(t, err, "order-2", pgjet.Exact(2), 0)
	_, err = s.Append(ctx, "order-2", pgjet.StreamExists, cancelEvent("x"))
	requireConflict(t, err, "order-2", pgjet.StreamExists, 0)

	_, err = s.Append(ctx, "order-2", pgjet.Exact(0), cancelEvent("1"))
	require.NoError(t, err)
	_, err = s.Append(ctx, "order-2", pgjet.NoStream, cancelEvent("x"))
	requireConflict(t, err, "order-2", pgjet.NoStream, 1)
	_, err = s.Append(ctx, "order-2", pgjet.Exact(1), cancelEvent("2"))
	require.NoError(t, err)
	_, err = s.Append(ctx, "order-2", pgjet.Exact(1), cancelEvent("x"))
	requireConflict(t, err, "order-2", pgjet.Exact(1), 2)
	_, err = s.Append(ctx, "order-2", pgjet.StreamExists, cancelEvent("3"))
	require.NoError(t, err)
	res, err := s.Append(ctx, "order-2", pgjet.Any, cancelEvent("4"))
	require.NoError(t, err)
	require.Equal(t, int64(4), res.LastVersion)
	res, err = s.Append(ctx, "order-3", pgjet.Any, cancelEvent("1"))
	require.NoError(t, err)
	require.Equal(t, int64(1), res.LastVersion)
}

func requireConflict(t *testing.T, err error, stream string, expected pgjet.ExpectedVersion, actual int64) {
	t.Helper()
	require.ErrorIs(t, err, pgjet.ErrWrongExpectedVersion)
	var wev *pgjet.WrongExpectedVersionError
	require.True(t, errors.As(err, &wev))
	require.Equal(t, pgjet.WrongExpectedVersionError{Stream: stream, Expected: expected, Actual: actual}, *wev)
}

func TestIdempotentAppend(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := newStore(t)
	a, b := uuid.New(), uuid.New()
	first, err := s.Append(ctx, "order-9", pgjet.NoStream, withID(cancelEvent("a"), a), withID(cancelEvent("b"), b))
	require.NoError(t, err)
	require.False(t, first.Duplicate)

	again, err := s.Append(ctx, "order-9", pgjet.NoStream, withID(cancelEvent("a"), a), withID(cancelEvent("b"), b))
	require.NoError(t, err)
	require.True(t, again.Duplicate)
	require.Equal(t, first.Positions, again.Positions)
	require.Equal(t, first.LastVersion, again.LastVersion)
	require.Equal(t, 2, count(t, pool, "pgjet.events"))
	require.Equal(t, 2, count(t, pool, "pgjet.outbox"))

	_, err = s.Append(ctx, "order-9", pgjet.NoStream, withID(cancelEvent("changed"), a), withID(cancelEvent("b"), b))
	require.ErrorIs(t, err, pgjet.ErrEventIDReused, "same id, other content")
	prefix, err := s.Append(ctx, "order-9", pgjet.Any, withID(cancelEvent("a"), a))
	require.NoError(t, err, "a prefix of an earlier append is already stored, in order")
	require.True(t, prefix.Duplicate)
	_, err = s.Append(ctx, "order-9", pgjet.Any, withID(cancelEvent("b"), b), withID(cancelEvent("c"), uuid.New()))
	require.ErrorIs(t, err, pgjet.ErrEventIDReused, "stored ids mixed with new ones")
	// Only the first id is looked up before the insert; a stored id after a new one fails
	// the insert, and is explained the same way: alone, through group commit, and in a
	// caller's transaction, which it must not abort.
	grouped, err := pgjet.New(pgjet.Config{Pool: pool, GroupCommit: true})
	require.NoError(t, err)
	for _, store := range []*pgjet.Store{s, grouped} {
		_, err = store.Append(ctx, "order-9", pgjet.Any, withID(cancelEvent("c"), uuid.New()), withID(cancelEvent("b"), b))
		require.ErrorIs(t, err, pgjet.ErrEventIDReused, "new ids, then stored ones")
		require.ErrorContains(t, err, "1 of the 2 event ids are stored already")
	}
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	_, err = s.AppendTx(ctx, tx, "order-9", pgjet.Any, withID(cancelEvent("c"), uuid.New()), withID(cancelEvent("b"), b))
	require.ErrorIs(t, err, pgjet.ErrEventIDReused, "new ids, then stored ones, in a transaction")
	var one int
	require.NoError(t, tx.QueryRow(ctx, `SELECT 1`).Scan(&one), "the caller's transaction goes on")
	require.NoError(t, tx.Rollback(ctx))
	_, err = s.Append(ctx, "order-10", pgjet.Any, withID(cancelEvent("a"), a), withID(cancelEvent("b"), b))
	require.ErrorIs(t, err, pgjet.ErrEventIDReused, "same ids, other stream")
	_, err = s.Append(ctx, "order-9", pgjet.Exact(1), withID(cancelEvent("a"), a), withID(cancelEvent("b"), b))
	require.ErrorIs(t, err, pgjet.ErrWrongExpectedVersion, "a retry must carry the original expectation")
	require.Equal(t, 2, count(t, pool, "pgjet.events"))
}

func TestConcurrentRetriesOfOneAppend(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := newStore(t)
	id := uuid.New()
	var wg sync.WaitGroup
	results := make([]pgjet.AppendResult, 8)
	errs := make([]error, 8)
	for i := range 8 {
		wg.Go(func() { results[i], errs[i] = s.Append(ctx, "order-r", pgjet.Any, withID(cancelEvent("once"), id)) })
	}
	wg.Wait()
	for i := range 8 {
		require.NoError(t, errs[i])
		require.Equal(t, results[0].Positions, results[i].Positions)
	}
	require.Equal(t, 1, count(t, pool, "pgjet.events"))
}

// Concurrent appenders with exact expectations: every version is taken exactly once, the
// losers get conflicts, and versions stay gap-free.
func TestConcurrentAppendersGapFree(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := newStore(t)
	const writers, rounds = 6, 15
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, conflicts := 0, 0
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				stream := fmt.Sprintf("order-shared%d", r%3)
				v, err := s.StreamVersion(ctx, stream)
				if errors.Is(err, pgjet.ErrStreamNotFound) {
					v, err = 0, nil
				}
				require.NoError(t, err)
				_, err = s.Append(ctx, stream, pgjet.Exact(v), cancelEvent(fmt.Sprintf("w%d r%d", w, r)))
				mu.Lock()
				if err == nil {
					wins++
				} else {
					require.ErrorIs(t, err, pgjet.ErrWrongExpectedVersion)
					conflicts++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Equal(t, writers*rounds, wins+conflicts)
	require.Equal(t, wins, count(t, pool, "pgjet.events"))
	var bad int
	require.NoError(t, pool.QueryRow(ctx, `
		SELECT count(*) FROM (SELECT stream_id, max(version) AS m, count(*) AS n FROM pgjet.events GROUP BY stream_id) x
		JOIN pgjet.streams s USING (stream_id) WHERE x.m <> x.n OR s.version <> x.n`).Scan(&bad))
	require.Zero(t, bad, "versions must be 1..n without gaps and match pgjet.streams")
}

func TestAppendTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := newStore(t)
	_, err := pool.Exec(ctx, `CREATE TABLE app_orders (id text PRIMARY KEY)`)
	require.NoError(t, err)

	// Committed with the service's own change.
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO app_orders VALUES ('order-tx1')`); err != nil {
			return err
		}
		_, err := s.AppendTx(ctx, tx, "order-tx1", pgjet.NoStream, cancelEvent("committed"))
		return err
	})
	require.NoError(t, err)

	// Rolled back with it: nothing stored, nothing in the outbox.
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO app_orders VALUES ('order-tx2')`)
	require.NoError(t, err)
	_, err = s.AppendTx(ctx, tx, "order-tx2", pgjet.NoStream, cancelEvent("rolled back"))
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx))

	require.Equal(t, 1, count(t, pool, "app_orders"))
	require.Equal(t, 1, count(t, pool, "pgjet.events"))
	require.Equal(t, 1, count(t, pool, "pgjet.outbox"))
	_, err = s.StreamVersion(ctx, "order-tx2")
	require.ErrorIs(t, err, pgjet.ErrStreamNotFound)
}

// Every kind of bad append gets its own error, writes nothing, and counts as a client's
// mistake (result "invalid"), never as a server error.
func TestInvalidAppendsWriteNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	require.NoError(t, pgjet.Migrate(ctx, pool))
	reg := prometheus.NewRegistry()
	s, err := pgjet.New(pgjet.Config{Pool: pool, Registerer: reg})
	require.NoError(t, err)
	_, err = s.Registry().RegisterFS(ctx, demoschemas.Files)
	require.NoError(t, err)
	long := make([]byte, pgjet.MaxStreamIDLength+1)
	for i := range long {
		long[i] = 'a'
	}
	bad := pgjet.EventData{Type: placed, Data: json.RawMessage(`{"order_id":"not-a-uuid","customer_id":1,"customer_email":"x",
		"items":[{"sku":"a","quantity":1,"unit_price_cents":1},{"sku":"b","quantity":"two","unit_price_cents":1}],
		"placed_at":"2026-11-26T10:00:00Z"}`)}
	cases := []struct {
		name   string
		stream string
		events []pgjet.EventData
		want   error
	}{
		{"empty stream id", "", []pgjet.EventData{cancelEvent("x")}, pgjet.ErrInvalidStreamID},
		{"long stream id", string(long), []pgjet.EventData{cancelEvent("x")}, pgjet.ErrInvalidStreamID},
		{"control character", "order-\n1", []pgjet.EventData{cancelEvent("x")}, pgjet.ErrInvalidStreamID},
		{"invalid UTF-8", "order-\xff", []pgjet.EventData{cancelEvent("x")}, pgjet.ErrInvalidStreamID},
		{"no category", "-1", []pgjet.EventData{cancelEvent("x")}, pgjet.ErrInvalidStreamID},
		{"no events", "order-1", nil, pgjet.ErrInvalidAppend},
		{"unknown type", "order-1", []pgjet.EventData{{Type: "no.such.Type", Data: json.RawMessage(`{}`)}}, pgjet.ErrUnknownEventType},
		{"invalid type", "order-1", []pgjet.EventData{{Type: "not a type", Data: json.RawMessage(`{}`)}}, pgjet.ErrInvalidEventType},
		{"schema violation", "order-1", []pgjet.EventData{cancelEvent("ok"), bad}, pgjet.ErrValidation},
		{"malformed JSON", "order-1", []pgjet.EventData{{Type: cancelled, Data: json.RawMessage(`{"order_id":`)}}, pgjet.ErrValidation},
		{"repeated id", "order-1", []pgjet.EventData{withID(cancelEvent("a"), uuid.Max), withID(cancelEvent("a"), uuid.Max)}, pgjet.ErrInvalidAppend},
	}
	for _, c := range cases {
		_, err := s.Append(ctx, c.stream, pgjet.Any, c.events...)
		require.ErrorIs(t, err, c.want, c.name)
	}
	require.Equal(t, float64(len(cases)), promtest.Value(t, reg, "pgjet_append_total", "result", "invalid"))
	require.Zero(t, promtest.Value(t, reg, "pgjet_append_total", "result", "error"))
	_, err = s.Append(ctx, "order-1", pgjet.Any, cancelEvent("ok"), bad)
	var verr *pgjet.ValidationError
	require.True(t, errors.As(err, &verr))
	paths := map[string]string{}
	for _, f := range verr.Fields {
		paths[f.Path] = f.Rule
	}
	require.Contains(t, paths, "events[1].data.order_id")
	require.Contains(t, paths, "events[1].data.customer_id")
	require.Contains(t, paths, "events[1].data.items[1].quantity")
	require.Equal(t, 0, count(t, pool, "pgjet.events"))
	require.Equal(t, 0, count(t, pool, "pgjet.outbox"))
	require.Equal(t, 0, count(t, pool, "pgjet.streams"))
}

func TestEventsAreImmutable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := newStore(t)
	_, err := s.Append(ctx, "order-1", pgjet.Any, cancelEvent("x"))
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE pgjet.events SET type = 'x'`)
	require.ErrorContains(t, err, "append-only")
	_, err = pool.Exec(ctx, `DELETE FROM pgjet.events`)
	require.ErrorContains(t, err, "append-only")
	_, err = pool.Exec(ctx, `TRUNCATE pgjet.events CASCADE`)
	require.ErrorContains(t, err, "append-only")
}

func TestGoValueData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	_, err := s.Append(ctx, "order-go", pgjet.Any, pgjet.EventData{Type: cancelled, Data: map[string]any{
		"order_id": uuid.NewString(), "reason": "typed", "cancelled_at": time.Now(),
	}})
	require.NoError(t, err)
	_, err = s.Append(ctx, "order-go", pgjet.Any, pgjet.EventData{Type: cancelled, Data: map[string]any{"reason": 3}})
	require.ErrorIs(t, err, pgjet.ErrValidation)
}

// Avro maps encode in no fixed order, so an honest retry of an event with a map must still
// be recognised as the same event.
func TestIdempotentAppendWithMap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := newStore(t)
	_, err := s.Registry().Register(ctx, "test.Tagged", `{"type":"record","name":"Tagged","namespace":"test",
		"fields":[{"name":"tags","type":{"type":"map","values":"string"}}]}`)
	require.NoError(t, err)
	ev := pgjet.EventData{ID: uuid.New(), Type: "test.Tagged", Data: json.RawMessage(
		`{"tags":{"a":"1","b":"2","c":"3","d":"4","e":"5","f":"6","g":"7","h":"8"}}`)}
	first, err := s.Append(ctx, "tagged-1", pgjet.NoStream, ev)
	require.NoError(t, err)
	for range 5 {
		again, err := s.Append(ctx, "tagged-1", pgjet.NoStream, ev)
		require.NoError(t, err)
		require.True(t, again.Duplicate)
		require.Equal(t, first.Positions, again.Positions)
	}
	ev.Data = json.RawMessage(`{"tags":{"a":"changed"}}`)
	_, err = s.Append(ctx, "tagged-1", pgjet.NoStream, ev)
	require.ErrorIs(t, err, pgjet.ErrEventIDReused)
	require.Equal(t, 1, count(t, pool, "pgjet.events"))
}

// A caller whose transactions hold every pooled connection must still be able to append:
// AppendTx reads the registry through the caller's transaction, never through a second
// connection of the pool (which would wait forever).
func TestAppendTxNeedsNoSecondConnection(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	one := oneConnPool(t)
	s, err := pgjet.New(pgjet.Config{Pool: one}) // a cold registry cache
	require.NoError(t, err)

	err = pgx.BeginFunc(ctx, one, func(tx pgx.Tx) error {
		_, err := s.AppendTx(ctx, tx, "order-oneconn", pgjet.NoStream, cancelEvent("only one connection"))
		return err
	})
	require.NoError(t, err, "AppendTx must not wait for a second pooled connection")
	v, err := s.StreamVersion(ctx, "order-oneconn")
	require.NoError(t, err)
	require.EqualValues(t, 1, v)
}

// The append plans its statement with plan_cache_mode = force_generic_plan and
// enable_seqscan = off, set for its own transaction only: neither a pooled session nor a
// caller's transaction keeps those settings.
func TestAppendLeavesThePlanSettingsAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.DB(t)
	warm := pgtest.PoolOn(t, url)
	require.NoError(t, pgjet.Migrate(ctx, warm))
	one := pgtest.PoolOn(t, url, func(c *pgxpool.Config) { c.MaxConns = 1 }) // every call below runs on the same session
	for _, group := range []bool{false, true} {
		s, err := pgjet.New(pgjet.Config{Pool: one, GroupCommit: group})
		require.NoError(t, err)
		_, err = s.Registry().RegisterFS(ctx, demoschemas.Files)
		require.NoError(t, err)
		setting := func(db interface {
			QueryRow(context.Context, string, ...any) pgx.Row
		}) string {
			var v string
			require.NoError(t, db.QueryRow(ctx, `SELECT current_setting('plan_cache_mode') || ' ' || current_setting('enable_seqscan')`).Scan(&v))
			return v
		}

		_, err = s.Append(ctx, fmt.Sprintf("order-plan%v", group), pgjet.Any, cancelEvent("pooled"))
		require.NoError(t, err)
		require.Equal(t, "auto on", setting(one), "the pooled session keeps the defaults")

		err = pgx.BeginFunc(ctx, one, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL plan_cache_mode = force_custom_plan`); err != nil {
				return err
			}
			if _, err := s.AppendTx(ctx, tx, fmt.Sprintf("order-plantx%v", group), pgjet.Any, cancelEvent("in a transaction")); err != nil {
				return err
			}
			require.Equal(t, "force_custom_plan on", setting(tx), "the caller's transaction keeps its own settings")
			return nil
		})
		require.NoError(t, err)
		require.Equal(t, "auto on", setting(one))
	}
}

// An event without metadata is stored with '{}', whichever way it was appended, reads back
// without any, and its retry is recognised; metadata given is stored as given, and a retry
// with other metadata is refused.
func TestMetadataStoredAndCompared(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool := newStore(t)
	grouped, err := pgjet.New(pgjet.Config{Pool: pool, GroupCommit: true})
	require.NoError(t, err)
	inTx := func(ctx context.Context, stream string, expected pgjet.ExpectedVersion, events ...pgjet.EventData) (res pgjet.AppendResult, err error) {
		err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			res, err = s.AppendTx(ctx, tx, stream, expected, events...)
			return err
		})
		return res, err
	}
	ways := map[string]func(context.Context, string, pgjet.ExpectedVersion, ...pgjet.EventData) (pgjet.AppendResult, error){
		"alone": s.Append, "group commit": grouped.Append, "in a transaction": inTx,
	}
	for name, appendTo := range ways {
		stream := "order-md-" + uuid.NewString()
		plain, tagged := withID(cancelEvent("a"), uuid.New()), withID(cancelEvent("b"), uuid.New())
		tagged.Metadata = map[string]string{"tenant": "t1"}
		_, err := appendTo(ctx, stream, pgjet.Any, plain, tagged)
		require.NoError(t, err, name)

		var stored []string
		rows, err := pool.Query(ctx, `SELECT metadata::text FROM pgjet.events WHERE stream_id = $1 ORDER BY version`, stream)
		require.NoError(t, err)
		stored, err = pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		require.Equal(t, []string{`{}`, `{"tenant": "t1"}`}, stored, name)
		read, err := s.ReadStream(ctx, stream, pgjet.Forward, 1, 10)
		require.NoError(t, err)
		require.Empty(t, read[0].Metadata, name)
		require.Equal(t, map[string]string{"tenant": "t1"}, read[1].Metadata, name)

		again, err := appendTo(ctx, stream, pgjet.Any, plain, tagged)
		require.NoError(t, err, name)
		require.True(t, again.Duplicate, name)
		other := tagged
		other.Metadata = map[string]string{"tenant": "t2"}
		_, err = appendTo(ctx, stream, pgjet.Any, plain, other)
		require.ErrorIs(t, err, pgjet.ErrEventIDReused, name)
		plainWith := plain
		plainWith.Metadata = map[string]string{"tenant": "t1"}
		_, err = appendTo(ctx, stream, pgjet.Any, plainWith, tagged)
		require.ErrorIs(t, err, pgjet.ErrEventIDReused, name)
	}
}

// A retry that runs while the original append is still committing waits for it, then
// returns the original result, whatever the expectation: its id lookup came before the
// commit, and the stream had moved on by the time it could claim it.
func TestRetryDuringTheOriginalsCommit(t *testing.T) {
	t.Parallel()
	for _, exp := range []pgjet.ExpectedVersion{pgjet.NoStream, 1, pgjet.Any, pgjet.StreamExists} {
		t.Run(exp.String(), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s, pool := newStore(t)
			if exp != pgjet.NoStream {
				_, err := s.Append(ctx, "order-x", pgjet.NoStream, cancelEvent("first"))
				require.NoError(t, err)
			}
			id := uuid.New()
			tx, err := pool.Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = tx.Rollback(ctx) }()
			orig, err := s.AppendTx(ctx, tx, "order-x", exp, withID(cancelEvent("once"), id))
			require.NoError(t, err)
			type outcome struct {
				res pgjet.AppendResult
				err error
			}
			retry := make(chan outcome, 1)
			go func() {
				res, err := s.Append(ctx, "order-x", exp, withID(cancelEvent("once"), id))
				retry <- outcome{res, err}
			}()
			require.Eventually(t, func() bool { // the retry waits for the original's locks
				var waiting int
				err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
					WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
				return err == nil && waiting > 0
			}, 10*time.Second, 5*time.Millisecond)
			require.NoError(t, tx.Commit(ctx))
			o := <-retry
			require.NoError(t, o.err)
			require.True(t, o.res.Duplicate)
			require.Equal(t, orig.Positions, o.res.Positions)
			require.Equal(t, orig.LastVersion, o.res.LastVersion)
		})
	}
}

// A retry of a stored append returns its original result without running the hooks
// again: they would see its own events in the stream and could refuse them.
func TestRetryIsNotCheckedByHooksAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	calls := 0
	require.NoError(t, s.Hook(cancelled, func(ctx context.Context, ev pgjet.HookEvent) ([]pgjet.FieldError, error) {
		calls++
		if ev.StreamVersion > 0 { // "an order is cancelled at most once"
			return []pgjet.FieldError{{Rule: "once", Message: "already cancelled"}}, nil
		}
		return nil, nil
	}))
	id := uuid.New()
	first, err := s.Append(ctx, "order-h", pgjet.NoStream, withID(cancelEvent("x"), id))
	require.NoError(t, err)
	again, err := s.Append(ctx, "order-h", pgjet.NoStream, withID(cancelEvent("x"), id))
	require.NoError(t, err)
	require.True(t, again.Duplicate)
	require.Equal(t, first.Positions, again.Positions)
	require.Equal(t, 1, calls)
	_, err = s.Append(ctx, "order-h", pgjet.Any, cancelEvent("y")) // a new event is still checked
	require.ErrorIs(t, err, pgjet.ErrValidation)
}

// A retry whose id lookup ran just before its original committed reaches the hooks, which
// now see the original's events and refuse. The refusal must not stand: the retry finds
// the original and returns its result.
func TestRetryRefusedByHooksFindsItsOriginal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	var (
		calls       atomic.Int32
		secondIn    = make(chan struct{})
		oneReturned = make(chan struct{})
		once        sync.Once
	)
	require.NoError(t, s.Hook(cancelled, func(ctx context.Context, ev pgjet.HookEvent) ([]pgjet.FieldError, error) {
		switch calls.Add(1) {
		case 1: // the original: goes on once the retry is past its id lookup
			<-secondIn
		case 2: // the retry: its lookup found nothing; the original commits meanwhile
			close(secondIn)
			<-oneReturned
		}
		if v, err := ev.Store.StreamVersion(ctx, ev.StreamID); err == nil && v > 0 { // "cancelled at most once"
			return []pgjet.FieldError{{Rule: "once", Message: "already cancelled"}}, nil
		}
		return nil, nil
	}))
	id := uuid.New()
	res := make([]pgjet.AppendResult, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			res[i], errs[i] = s.Append(ctx, "order-r", pgjet.Any, withID(cancelEvent("x"), id))
			once.Do(func() { close(oneReturned) })
		})
	}
	wg.Wait()
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	require.Equal(t, res[0].Positions, res[1].Positions)
	require.NotEqual(t, res[0].Duplicate, res[1].Duplicate, "one original, one retry")
}
