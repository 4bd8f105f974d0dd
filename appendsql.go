package pgjet

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
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
//
// A NULL metadata is an event without any, stored as '{}'. The positions come back in no
// particular order; result sorts them, which puts them in version order. Both save
// Postgres work per event (a jsonb to parse, a sort): together about 5 % of a 100-event
// append's time.
const appendCTE = `
WITH dup AS (
	SELECT count(*) AS n FROM pgjet.events WHERE event_id = ANY($10::uuid[])),
claim AS (%s),
ev AS (
	INSERT INTO pgjet.events (event_id, stream_id, version, type, schema_id, data, metadata, tx_id)
	SELECT t.id, $1, claim.version - $2 + t.ord, t.type, t.schema_id, t.data, coalesce(t.metadata, '{}'), claim.last_tx_id
	FROM claim, unnest($3::uuid[], $4::text[], $5::int[], $6::bytea[], $7::jsonb[])
		WITH ORDINALITY AS t (id, type, schema_id, data, metadata, ord)
	ORDER BY t.ord
	RETURNING position, version),
ob AS (
	INSERT INTO pgjet.outbox (position, partition, traceparent)
	SELECT position, $8, $9 FROM ev)
SELECT (SELECT n FROM dup), (SELECT version FROM claim),
	coalesce((SELECT array_agg(position) FROM ev), '{}')`

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
		// A retry that ran while the original append was committing: the id lookup came
		// before the commit and found nothing, the claim after it found the stream moved on.
		// Or this append's own earlier run committed, and its answer was lost.
		if p.clientIDs || p.mayBeStored {
			if res, found, err := p.existing(ctx, db); err != nil || found {
				return res, err
			}
		}
		actual, err := streamVersion(ctx, db, p.stream)
		if err != nil {
			return AppendResult{}, err
		}
		return AppendResult{}, &WrongExpectedVersionError{Stream: p.stream, Expected: p.expected, Actual: actual}
	}
	n := int64(len(p.ids))
	slices.Sort(o.positions) // version order: see appendCTE
	return AppendResult{
		StreamID: p.stream, FirstVersion: *o.last - n + 1, LastVersion: *o.last,
		Positions: o.positions, EventIDs: p.ids,
	}, nil
}
