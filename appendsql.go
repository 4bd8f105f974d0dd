package pgjet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet/internal/outbox"
)

// The append is one statement. It never fails on a conflict or an already stored id: it
// reports them as data, so that several appends can share one transaction (group commit)
// without one aborting the others. Its parts, in execution order:
//
//   - dup counts stored events among the ids in $10 (see lookups);
//   - claim locks the stream's row, checks the expectation and moves the version forward by
//     the number of events, all only when dup is 0. It returns no row on a conflict. It
//     also moves the stream's stamp to greatest(this transaction's id, the last stamp), so
//     the stamps (tx_id) of a stream's events never decrease with their versions (see
//     migration 0002) and the all-events read returns them in version order.
//   - ev inserts the events, reading claim, so positions are taken after the lock: a
//     stream's positions increase with its versions (the outbox relies on it);
//   - ob inserts one outbox row per event.
const appendCTE = `
WITH dup AS (
	SELECT count(*) AS n FROM pgjet.events WHERE event_id = ANY($10::uuid[])),
claim AS (%s),
ev AS (
	INSERT INTO pgjet.events (event_id, stream_id, version, type, schema_id, data, metadata, tx_id)
	SELECT t.id, $1, claim.version - $2 + t.ord, t.type, t.schema_id, t.data, t.metadata, claim.last_tx_id
	FROM claim, unnest($3::uuid[], $4::text[], $5::int[], $6::bytea[], $7::jsonb[])
		WITH ORDINALITY AS t (id, type, schema_id, data, metadata, ord)
	ORDER BY t.ord
	RETURNING position, version),
ob AS (
	INSERT INTO pgjet.outbox (position, partition, traceparent)
	SELECT position, $8, $9 FROM ev)
SELECT (SELECT n FROM dup), (SELECT version FROM claim),
	coalesce((SELECT array_agg(position ORDER BY version) FROM ev), '{}')`

// The claim for each kind of expectation; $11 is the exact expected version.
var (
	claimAny = fmt.Sprintf(appendCTE, `
	INSERT INTO pgjet.streams AS s (stream_id, version, last_tx_id)
	SELECT $1, $2, pg_current_xact_id() WHERE (SELECT n FROM dup) = 0
	ON CONFLICT (stream_id) DO UPDATE SET version = s.version + EXCLUDED.version,
		last_tx_id = greatest(EXCLUDED.last_tx_id, s.last_tx_id), updated_at = now()
	RETURNING version, last_tx_id`)
	claimNoStream = fmt.Sprintf(appendCTE, `
	INSERT INTO pgjet.streams (stream_id, version, last_tx_id)
	SELECT $1, $2, pg_current_xact_id() WHERE (SELECT n FROM dup) = 0
	ON CONFLICT (stream_id) DO NOTHING RETURNING version, last_tx_id`)
	claimExists = fmt.Sprintf(appendCTE, `
	UPDATE pgjet.streams SET version = version + $2,
		last_tx_id = greatest(pg_current_xact_id(), last_tx_id), updated_at = now()
	WHERE stream_id = $1 AND (SELECT n FROM dup) = 0 RETURNING version, last_tx_id`)
	claimExact = fmt.Sprintf(appendCTE, `
	UPDATE pgjet.streams SET version = version + $2,
		last_tx_id = greatest(pg_current_xact_id(), last_tx_id), updated_at = now()
	WHERE stream_id = $1 AND version = $11 AND (SELECT n FROM dup) = 0 RETURNING version, last_tx_id`)
)

// The append statement runs with a generic plan. Postgres plans a prepared statement anew
// for each execution as long as its custom plans look cheaper than the generic one, and the
// append's custom plans always do (they know the array lengths and whether ids came from
// the caller), yet planning this statement costs more than running it. With the default
// plan_cache_mode, 32 writers through group commit made about half as many appends per
// second.
//
// A generic plan is made once per connection and kept until the tables' statistics change,
// so it must not depend on how full the tables were at that moment: planned on a young
// database, its tables small and never analysed, the check for stored event ids scanned
// pgjet.events sequentially, and each append took longer as the table grew (8 ms for 100
// events at 18,000 events, against 2 ms) until autovacuum first analysed it. With
// sequential scans off while the plan is made, every table is reached through its index
// whatever its size. Both settings are local to the append's transaction.
const (
	genericPlans = `SELECT set_config('plan_cache_mode', 'force_generic_plan', true),
		set_config('enable_seqscan', 'off', true)`
	// In a caller's transaction (AppendTx), the caller's own settings come back afterwards.
	genericPlansSave = `SELECT set_config('pgjet.plan_cache_mode', current_setting('plan_cache_mode'), true),
		set_config('pgjet.enable_seqscan', current_setting('enable_seqscan'), true),
		set_config('plan_cache_mode', 'force_generic_plan', true),
		set_config('enable_seqscan', 'off', true)`
	genericPlansRestore = `SELECT set_config('plan_cache_mode', current_setting('pgjet.plan_cache_mode'), true),
		set_config('enable_seqscan', current_setting('pgjet.enable_seqscan'), true)`
)

// statement returns the append's SQL and arguments, for a caller's transaction if inTx.
func (p *prepared) statement(inTx bool) (string, []any) {
	args := []any{p.stream, int64(len(p.ids)), uuidArray(p.ids), p.types, p.schemaIDs, p.data, p.metadata, p.partition, p.traceparent, p.lookups(inTx)}
	switch e := p.expected; {
	case e == Any:
		return claimAny, args
	case e == NoStream || e == 0:
		return claimNoStream, args
	case e == StreamExists:
		return claimExists, args
	default:
		return claimExact, append(args, int64(e))
	}
}

// lookups returns the event ids the append statement looks up before it claims the
// stream, to tell a retry of a stored append: none when pgjet generated every id (such an
// append cannot be a retry). In a caller's transaction (inTx), all of them, so that an id
// reused from another append is reported as data and does not abort the caller's
// transaction. Otherwise only the first id the caller chose: a retry stored all its ids,
// so one finds it, and an id stored by another append fails the insert on its unique
// index instead, which runAlone explains. A 100-event append spent a quarter of its
// statement's time on 100 lookups.
func (p *prepared) lookups(inTx bool) [][16]byte {
	switch {
	case !p.clientIDs:
		return [][16]byte{}
	case inTx:
		return uuidArray(p.ids)
	default:
		return [][16]byte{p.clientID}
	}
}

// uuidArray returns ids as pgx encodes them fastest. pgx encodes a uuid.UUID through its
// driver.Valuer: formatted as text, then parsed back, which a profile of 100-event appends
// showed at about an eighth of the writer's CPU; a [16]byte goes straight to the wire.
func uuidArray(ids []uuid.UUID) [][16]byte {
	out := make([][16]byte, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out
}

// outcome is what the statement reported.
type outcome struct {
	dup       int64
	last      *int64
	positions []int64
}

func (o *outcome) scan(row pgx.Row) error {
	return row.Scan(&o.dup, &o.last, &o.positions)
}

// result turns the statement's outcome into the append's result, asking Postgres again
// only on the rare paths: a retry of stored ids, or a conflict.
func (p *prepared) result(ctx context.Context, db querier, o outcome) (AppendResult, error) {
	if o.dup > 0 {
		res, found, err := p.existing(ctx, db)
		if err != nil {
			return AppendResult{}, err
		}
		if !found {
			return AppendResult{}, errors.New("pgjet: stored event ids vanished") // events are immutable
		}
		return res, nil
	}
	if o.last == nil {
		actual, err := streamVersion(ctx, db, p.stream)
		if err != nil {
			return AppendResult{}, err
		}
		return AppendResult{}, &WrongExpectedVersionError{Stream: p.stream, Expected: p.expected, Actual: actual}
	}
	n := int64(len(p.ids))
	return AppendResult{
		StreamID: p.stream, FirstVersion: *o.last - n + 1, LastVersion: *o.last,
		Positions: o.positions, EventIDs: p.ids,
	}, nil
}

// notifySQL wakes the relays owning the partitions in its argument (comma-separated).
const notifySQL = `SELECT pg_notify('pgjet_outbox', $1)`

// wakeSQL is notifySQL in a transaction of its own that does not wait for its WAL flush
// (NOTIFY gives the transaction an id, so its commit writes a record): the listeners see it
// at once, and a wake-up lost in a crash only delays publishing until the relays poll.
const wakeSQL = `SELECT set_config('synchronous_commit', 'off', true), pg_notify('pgjet_outbox', $1)`

// relayWaker sends the NOTIFYs that tell relays a partition has new outbox rows, off the
// appenders' path: an append marks its partition after its commit and returns; one goroutine
// at a time sends a NOTIFY for every partition marked since its previous one. An append thus
// saves a round trip, and under load many appends share one NOTIFY, a transaction of its
// own that holds NOTIFY's global lock only for a moment.
//
// The goroutine sends on a connection of its own, outside the pool: when appends have
// taken every pooled connection, a wake-up for the ones already committed must not queue
// behind them (at 1,000 appends/s on a machine whose fsync takes 0.3 ms, NOTIFYs waited up
// to 0.6 s for a pooled connection, and the relays published that late). The goroutine and
// its connection end once no append has come for idle. A lost wake-up only delays
// publishing until the relays' next poll.
type relayWaker struct {
	connConfig *pgx.ConnConfig
	idle       time.Duration
	log        *zap.Logger

	mu      sync.Mutex
	pending [outbox.Partitions]bool
	sending bool
	kick    chan struct{} // tells a sender waiting out idle that partitions are marked
}

// wakerIdle is how long the waker's connection outlives the last append.
const wakerIdle = time.Second

func newRelayWaker(pool *pgxpool.Pool, log *zap.Logger) *relayWaker {
	cc := pool.Config().ConnConfig.Copy()
	if cc.RuntimeParams["application_name"] == "" {
		cc.RuntimeParams["application_name"] = "pgjet relay wake-ups"
	}
	return &relayWaker{connConfig: cc, idle: wakerIdle, log: log, kick: make(chan struct{}, 1)}
}

func (w *relayWaker) wake(partitions ...int16) {
	w.mu.Lock()
	for _, p := range partitions {
		w.pending[p] = true
	}
	start := !w.sending
	w.sending = true
	w.mu.Unlock()
	if start {
		go w.send()
		return
	}
	select {
	case w.kick <- struct{}{}:
	default: // a kick is waiting already
	}
}

func (w *relayWaker) send() {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			ctx, cancel := context.WithTimeout(context.Background(), notifyTimeout)
			conn.Close(ctx)
			cancel()
		}
	}()
	for {
		payload := w.take()
		if payload == "" {
			select {
			case <-w.kick:
				continue
			case <-time.After(w.idle):
			}
			w.mu.Lock()
			if slices.Contains(w.pending[:], true) {
				w.mu.Unlock()
				continue
			}
			w.sending = false
			w.mu.Unlock()
			return
		}
		conn = w.notify(conn, payload)
	}
}

// take returns the marked partitions, comma-separated, and clears them.
func (w *relayWaker) take() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	for p, marked := range w.pending {
		if marked {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(p))
		}
	}
	w.pending = [outbox.Partitions]bool{}
	return b.String()
}

// notify sends one NOTIFY on conn, connecting first if conn is nil, and returns the
// connection to use next time (nil after a failure).
func (w *relayWaker) notify(conn *pgx.Conn, payload string) *pgx.Conn {
	ctx, cancel := context.WithTimeout(context.Background(), notifyTimeout)
	defer cancel()
	var err error
	if conn == nil {
		if conn, err = pgx.ConnectConfig(ctx, w.connConfig); err != nil {
			w.log.Debug("waking relays: cannot connect; they will poll", zap.Error(err))
			return nil
		}
	}
	if _, err = conn.Exec(ctx, wakeSQL, payload); err != nil {
		w.log.Debug("waking relays failed; they will poll", zap.Error(err))
		conn.Close(ctx)
		return nil
	}
	return conn
}

// notifyTimeout bounds one NOTIFY: past it, the relays' poll finds the rows.
const notifyTimeout = 5 * time.Second
