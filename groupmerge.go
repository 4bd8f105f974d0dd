package pgjet

import (
	"github.com/jackc/pgx/v5"
)

// mergedAnySQL is the append statement of appendsql.go for many appends at once, all with
// the expectation Any and each to a different stream: one statement, one executor run,
// where group commit otherwise runs one statement per append. Its parts mirror appendCTE's:
//
//   - a holds one row per append ($1-$6), e one row per event ($7-$13: its append's row
//     number and its place k in that append);
//   - dup finds appends whose first caller-chosen id (lookup, NULL when pgjet generated
//     every id; see prepared.lookups) is stored already, looked up through the unique
//     index (LIMIT 1 keeps it a per-row lookup, whatever the planner thinks of the table);
//   - claim locks or creates each stream's row in the order of a, moves its version forward
//     by the append's event count and its stamp to greatest(this transaction's id, last
//     stamp). Committers must all lock in one order, or two batches can deadlock; the
//     caller passes the appends sorted by stream in Go (bytewise). Sorting here by stream
//     would follow the database's collation, which may differ (en-US puts "order-a" before
//     "order-B"). A retry's stream is locked too, in its place, without a change (a false
//     DO UPDATE ... WHERE still locks the row): a later round may hold a new append to it.
//     A retry of ids stored in another stream that does not exist yet creates nothing (the
//     lookup, only made for retries, has LIMIT 1 to stay a per-row index lookup, as in dup);
//   - ev inserts the events after their stream's claim, in the same order and then by
//     version, so positions increase with versions; ob inserts their outbox rows.
//
// The result has one row per append, in append order: whether it is a retry of stored ids,
// the stream's new version, and the positions of its events. The positions are grouped by
// stream once and joined, not gathered by a subquery per append: that subquery scanned all
// of ev for each append, n^2 rows for n appends, and took a sixth of a 100-append batch.
const mergedAnySQL = `
WITH a AS (
	SELECT * FROM unnest($1::text[], $2::int8[], $3::smallint[], $4::text[], $5::uuid[])
		WITH ORDINALITY AS a (stream, n, partition, traceparent, lookup, i)),
e AS (
	SELECT * FROM unnest($6::int8[], $7::int8[], $8::uuid[], $9::text[], $10::int[], $11::bytea[], $12::jsonb[])
		AS e (i, k, id, type, schema_id, data, metadata)),
dup AS (
	SELECT a.i FROM a
	CROSS JOIN LATERAL (SELECT 1 FROM pgjet.events x WHERE x.event_id = a.lookup LIMIT 1) found),
claim AS (
	INSERT INTO pgjet.streams AS s (stream_id, version, last_tx_id)
	SELECT a.stream, a.n, pg_current_xact_id() FROM a
	WHERE a.i NOT IN (SELECT i FROM dup) OR (SELECT true FROM pgjet.streams x WHERE x.stream_id = a.stream LIMIT 1)
	ORDER BY a.i
	ON CONFLICT (stream_id) DO UPDATE SET version = s.version + EXCLUDED.version,
		last_tx_id = greatest(EXCLUDED.last_tx_id, s.last_tx_id), updated_at = now()
	WHERE s.stream_id NOT IN (SELECT a.stream FROM a JOIN dup ON dup.i = a.i)
	RETURNING stream_id, version, last_tx_id),
ev AS (
	INSERT INTO pgjet.events (event_id, stream_id, version, type, schema_id, data, metadata, tx_id)
	SELECT e.id, a.stream, c.version - a.n + e.k, e.type, e.schema_id, e.data, coalesce(e.metadata, '{}'), c.last_tx_id
	FROM e JOIN a ON a.i = e.i JOIN claim c ON c.stream_id = a.stream
	ORDER BY a.i, e.k
	RETURNING position, stream_id, version),
ob AS (
	INSERT INTO pgjet.outbox (position, partition, traceparent)
	SELECT ev.position, a.partition, a.traceparent FROM ev JOIN a ON a.stream = ev.stream_id)
SELECT a.i IN (SELECT i FROM dup), c.version, coalesce(p.positions, '{}')
FROM a LEFT JOIN claim c ON c.stream_id = a.stream
LEFT JOIN (SELECT stream_id, array_agg(position ORDER BY version) AS positions FROM ev GROUP BY stream_id) p
	ON p.stream_id = a.stream
ORDER BY a.i`

// mergeable reports whether batch can go through mergedAnySQL: every append expects Any.
func mergeable(batch []*groupRequest) bool {
	for _, r := range batch {
		if r.p.expected != Any {
			return false
		}
	}
	return true
}

// rounds splits a batch sorted by stream into runs with each stream at most once, in
// order: the first append of every stream, then the second, and so on. Each round is one
// mergedAnySQL statement; a later round sees the earlier ones' effects, and only locks
// streams an earlier round of the same transaction locked already.
func rounds(batch []*groupRequest) [][]int {
	var out [][]int
	seen := map[string]int{}
	for i, r := range batch {
		n := seen[r.p.stream]
		seen[r.p.stream] = n + 1
		if n == len(out) {
			out = append(out, nil)
		}
		out[n] = append(out[n], i)
	}
	return out
}

// mergedArgs returns mergedAnySQL's arguments for the appends batch[i] for i in round.
func mergedArgs(batch []*groupRequest, round []int) []any {
	var (
		streams, types     []string
		counts, evApp, evK []int64
		partitions         []int16
		traceparents       []*string
		lookups            []*[16]byte
		ids                [][16]byte
		schemaIDs          []int32
		data, metadata     [][]byte
	)
	for j, i := range round {
		p := batch[i].p
		streams = append(streams, p.stream)
		counts = append(counts, int64(len(p.ids)))
		partitions = append(partitions, p.partition)
		traceparents = append(traceparents, p.traceparent)
		var lookup *[16]byte
		if p.clientIDs {
			id := [16]byte(p.clientID)
			lookup = &id
		}
		lookups = append(lookups, lookup)
		for k, id := range p.ids {
			evApp = append(evApp, int64(j+1))
			evK = append(evK, int64(k+1))
			ids = append(ids, id)
		}
		types = append(types, p.types...)
		schemaIDs = append(schemaIDs, p.schemaIDs...)
		data = append(data, p.data...)
		metadata = append(metadata, p.metadata...)
	}
	return []any{streams, counts, partitions, traceparents, lookups, evApp, evK, ids, types, schemaIDs, data, metadata}
}

// scanMerged reads one result row of mergedAnySQL into o.
func scanMerged(rows pgx.Rows, o *outcome) error {
	var dup bool
	if err := rows.Scan(&dup, &o.last, &o.positions); err != nil {
		return err
	}
	if dup {
		o.dup = 1
	}
	return nil
}
