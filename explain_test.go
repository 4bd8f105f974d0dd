package pgjet

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/pgtest"
	"github.com/pgjet/pgjet/internal/relay"
)

// accessPath is one query pgjet issues, with arguments for its custom plan.
type accessPath struct {
	name   string
	source string // where the query lives; queries of other packages are copied here
	sql    string
	args   []any
	// seqScanOK names a table the query may scan sequentially, and says why.
	seqScanOK map[string]string
	// settings is what the code runs before the query in the same transaction, to keep its
	// plan on the indexes whenever it was made (genericPlans, relay.IndexPlans); its
	// generic plan is then made under them, with settingsArgs as their arguments.
	settings     string
	settingsArgs []any
}

// largeTables are the tables that grow with use; a query must reach them through an index.
var largeTables = []string{"events", "streams", "outbox", "checkpoints", "schemas", "subject_versions", "registry_config", "snapshots"}

// accessPaths lists every query the code issues on pgjet's tables, beyond one-row inserts.
// A new query belongs here; docs/architecture.md ("Access paths") lists the plans.
func accessPaths() []accessPath {
	id := uuid.MustParse("0190c6a1-3e1f-7000-8000-000000000001")
	appendArgs := []any{"order-7", int64(1), []uuid.UUID{id}, []string{"t.Ev"}, []int32{1}, [][]byte{{0}}, [][]byte{[]byte(`{}`)}, int16(3), (*string)(nil), [][16]byte{id}}
	return []accessPath{
		{name: "stream read forward", source: "read.go ReadStream", sql: readForwardSQL, args: []any{"order-7", int64(1), 100}},
		{name: "stream read backward", source: "read.go ReadStream", sql: readBackwardSQL, args: []any{"order-7", int64(math.MaxInt64), 100}},
		{name: "stream read cache tail", source: "readcache.go", sql: readBackwardFromToSQL, args: []any{"order-7", int64(math.MaxInt64), int64(90), 11}},
		{name: "read all by (tx_id, position)", source: "read.go ReadAll", sql: readAllSQL, args: []any{"0", int64(0), 100}},
		{name: "read all, mid-way", source: "read.go ReadAll", sql: readAllSQL, args: []any{"60100", int64(50000), 100}},
		{name: "stream version", source: "append.go streamVersion", sql: `SELECT version FROM pgjet.streams WHERE stream_id = $1`, args: []any{"order-7"}},
		{name: "idempotency lookup by event id", source: "append.go existing", sql: `
			SELECT event_id, stream_id, version, type, data, metadata, position FROM pgjet.events
			WHERE event_id = ANY($1) ORDER BY position`, args: []any{[]uuid.UUID{id}}},
		{name: "command lookup by event id", source: "retry.go", sql: `SELECT stream_id, version FROM pgjet.events WHERE event_id = $1`, args: []any{id}},
		{name: "append, expected any", source: "appendsql.go", sql: claimAny, args: appendArgs, settings: genericPlans},
		{name: "append, expected no stream", source: "appendsql.go", sql: claimNoStream, args: appendArgs, settings: genericPlans},
		{name: "append, expected exists", source: "appendsql.go", sql: claimExists, args: appendArgs, settings: genericPlans},
		{name: "append, expected exact", source: "appendsql.go", sql: claimExact, args: append(appendArgs, int64(100)), settings: genericPlans},
		{name: "group commit, appends expecting any", source: "groupmerge.go", sql: mergedAnySQL, settings: genericPlans,
			args: []any{[]string{"order-7", "order-8"}, []int64{1, 1}, []int16{3, 4}, []*string{nil, nil}, []*[16]byte{(*[16]byte)(&id), nil},
				[]int64{1, 2}, []int64{1, 1}, [][16]byte{id, uuid.New()}, []string{"t.Ev", "t.Ev"}, []int32{1, 1},
				[][]byte{{0}, {0}}, [][]byte{[]byte(`{}`), []byte(`{}`)}}},
		{name: "snapshot load", source: "snapshot.go", sql: `SELECT schema_version, version, event_id, data FROM pgjet.snapshots
			WHERE stream_id = $1 AND aggregate_type = $2`, args: []any{"order-7", "order"}},

		{name: "outbox batch, one partition", source: "internal/relay/relay.go drain", sql: relay.BatchSQL, args: []any{[]int16{3}, 100, []int16{}, []string{}}, settings: relay.IndexPlans},
		{name: "outbox batch, all partitions", source: "internal/relay/relay.go drain", sql: relay.BatchSQL, args: []any{allPartitions(), 100, []int16{}, []string{}}, settings: relay.IndexPlans},
		{name: "outbox batch, a stream held back", source: "internal/relay/relay.go drain", sql: relay.BatchSQL, args: []any{allPartitions(), 100, []int16{7}, []string{"order-7"}}, settings: relay.IndexPlans},
		{name: "outbox delete published", source: "internal/relay/relay.go delete", sql: relay.DeleteSQL, args: []any{[]int64{5, 10, 15}, []int16{5, 10, 15}},
			settings: relay.DeleteSettings, settingsArgs: []any{"5000"}},
		{name: "outbox pending count (capped)", source: "internal/relay/outboxstats.go", sql: `SELECT count(*) FROM (SELECT 1 FROM pgjet.outbox LIMIT $1) x`, args: []any{10000},
			seqScanOK: map[string]string{"outbox": "counts at most the cap's rows; every plan reads them"}},
		{name: "outbox oldest row", source: "internal/relay/outboxstats.go", sql: `SELECT extract(epoch FROM clock_timestamp() - created_at) FROM pgjet.outbox ORDER BY position LIMIT 1`},

		{name: "checkpoint lock", source: "internal/projection/projector.go", sql: `SELECT sequence FROM pgjet.checkpoints WHERE name = $1 FOR UPDATE`, args: []any{"proj-7"}},
		{name: "checkpoint read with its event", source: "internal/projection/projector.go readCheckpoint", sql: `SELECT sequence, CASE WHEN event_sequence = sequence THEN event_id END
			FROM pgjet.checkpoints WHERE name = $1`, args: []any{"proj-7"}},
		{name: "checkpoint update", source: "internal/projection/projector.go applyTx", sql: `UPDATE pgjet.checkpoints SET sequence = $2, event_id = $3, event_sequence = $2, updated_at = now()
			WHERE name = $1 AND sequence < $2`, args: []any{"proj-7", int64(9), "ev-9"}},
		{name: "checkpoint move (pgjet.move_checkpoint)", source: "internal/migrate/sql/0006_checkpoint_event.sql", sql: `UPDATE pgjet.checkpoints
			SET sequence = $3, event_id = $4, event_sequence = $3, updated_at = now()
			WHERE name = $1 AND sequence = $2`, args: []any{"proj-7", int64(7), int64(9), "ev-9"}},
		{name: "checkpoint swap (rebuild)", source: "internal/projection/rebuild.go swap", sql: `UPDATE pgjet.checkpoints l SET sequence = $2, event_id = s.event_id, event_sequence = s.event_sequence, updated_at = now()
			FROM pgjet.checkpoints s WHERE l.name = $1 AND s.name = $3`, args: []any{"proj-7", int64(9), "rebuild-7"}},
		{name: "checkpoint delete", source: "internal/projection/rebuild.go", sql: `DELETE FROM pgjet.checkpoints WHERE name = $1`, args: []any{"proj-7"}},

		{name: "registry: schema by id", source: "internal/registry/registry.go stored", sql: `SELECT schema FROM pgjet.schemas WHERE id = $1`, args: []any{7}},
		{name: "registry: schema under subject by identity", source: "internal/registry/registry.go lookup", sql: `
			SELECT sv.version, sv.schema_id, s.schema FROM pgjet.subject_versions sv
			JOIN pgjet.schemas s ON s.id = sv.schema_id
			WHERE sv.subject = $1 AND s.fingerprint = $2`, args: []any{"subj.7", []byte("x")}},
		{name: "registry: latest version", source: "internal/registry/registry.go latestFrom", sql: `
			SELECT version, schema_id FROM pgjet.subject_versions
			WHERE subject = $1 ORDER BY version DESC LIMIT 1`, args: []any{"subj.7"}},
		{name: "registry: one version", source: "internal/registry/registry.go Version", sql: `SELECT schema_id FROM pgjet.subject_versions WHERE subject = $1 AND version = $2`, args: []any{"subj.7", 3}},
		{name: "registry: version numbers", source: "internal/registry/registry.go Versions", sql: `SELECT version FROM pgjet.subject_versions WHERE subject = $1 ORDER BY version`, args: []any{"subj.7"}},
		{name: "registry: versions with schemas", source: "internal/registry/registry.go versions", sql: `
			SELECT sv.version, sv.schema_id, s.schema FROM pgjet.subject_versions sv
			JOIN pgjet.schemas s ON s.id = sv.schema_id
			WHERE sv.subject = $1 ORDER BY sv.version`, args: []any{"subj.7"}},
		{name: "registry: versions by schema id", source: "internal/registry/registry.go VersionsByID", sql: `
			SELECT subject, version FROM pgjet.subject_versions WHERE schema_id = $1
			ORDER BY subject, version`, args: []any{7}},
		{name: "registry: subjects", source: "internal/registry/registry.go Subjects", sql: `SELECT DISTINCT subject FROM pgjet.subject_versions ORDER BY subject`,
			seqScanOK: map[string]string{"subject_versions": "lists every subject"}},
		{name: "registry: subject's level", source: "internal/registry/registry.go SubjectCompatibility", sql: `SELECT compatibility FROM pgjet.registry_config WHERE subject = $1`, args: []any{"subj.7"}},
		{name: "registry: level in force", source: "internal/registry/registry.go effectiveLevel", sql: `
			SELECT compatibility FROM pgjet.registry_config WHERE subject IN ($1, '')
			ORDER BY subject DESC LIMIT 1`, args: []any{"subj.7"}},
		{name: "registry: store schema", source: "internal/registry/registry.go Register", sql: `
			INSERT INTO pgjet.schemas (fingerprint, schema) VALUES ($1, $2)
			ON CONFLICT (fingerprint) DO UPDATE SET fingerprint = EXCLUDED.fingerprint
			RETURNING id, schema`, args: []any{[]byte("x"), "{}"}},
	}
}

func allPartitions() []int16 {
	out := make([]int16, 32)
	for i := range out {
		out[i] = int16(i)
	}
	return out
}

// fillForExplain gives every large table enough rows that the planner prefers an index
// wherever one serves, as in production: 120,000 events in 1,200 streams, written by
// 120,000 transactions, 24,000 pending outbox rows, 2,000 schemas of 1 KB, checkpoints,
// snapshots and registry settings.
const fillForExplain = `
INSERT INTO pgjet.streams (stream_id, version) SELECT 'order-' || s, 100 FROM generate_series(1, 1200) s;
INSERT INTO pgjet.events (event_id, stream_id, version, type, schema_id, data, tx_id)
	SELECT gen_random_uuid(), 'order-' || s, v, 'pgjet.demo.order.OrderPlaced', 1 + v % 50, '\x0000000001020304'::bytea,
		(100 + v * 1200 + s)::text::xid8
	FROM generate_series(1, 1200) s, generate_series(1, 100) v;
INSERT INTO pgjet.outbox (position, partition) SELECT position, (position % 32)::smallint FROM pgjet.events WHERE position % 5 = 0;
INSERT INTO pgjet.schemas (fingerprint, schema)
	SELECT sha256(i::text::bytea), '{"type":"record","name":"E' || i || '","doc":"' || repeat('x', 1000) || '","fields":[]}' FROM generate_series(1, 2000) i;
INSERT INTO pgjet.subject_versions (subject, version, schema_id) SELECT 'subj.' || (i / 10), 1 + i % 10, i FROM generate_series(1, 2000) i;
INSERT INTO pgjet.registry_config (subject, compatibility) SELECT 'subj.' || i, 'FULL' FROM generate_series(1, 2000) i;
INSERT INTO pgjet.checkpoints (name, sequence) SELECT 'proj-' || i, i FROM generate_series(1, 2000) i;
INSERT INTO pgjet.snapshots (stream_id, aggregate_type, schema_version, version, event_id, data)
	SELECT 'order-' || s, 'order', 1, 100, gen_random_uuid(), '\x00'::bytea FROM generate_series(1, 1200) s;
ANALYZE;`

// Every query reaches the large tables through an index, in its custom plan (planned with
// the arguments, as for the first executions of a prepared statement) and in its generic
// plan (what Postgres may switch a prepared statement to later), on tables filled and
// analysed. Run with -v to see each plan's access nodes.
func TestAccessPathsUseIndexes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	require.NoError(t, Migrate(ctx, pool))
	_, err := pool.Exec(ctx, fillForExplain)
	require.NoError(t, err)
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	leading := leadingColumns(t, conn.Conn())
	for i, q := range accessPaths() {
		for _, generic := range []bool{false, true} {
			checkIndexed(t, q, explain(t, conn.Conn(), i, q, generic), map[bool]string{false: "custom", true: "generic"}[generic], leading)
		}
	}
}

// A query whose plan Postgres may keep keeps the plan it got on its connection's first
// executions, until the statistics of its tables change: the append statements, planned
// once, and every prepared statement once Postgres switches it to its generic plan. On a
// young database the tables are small, and a plan made then must still reach them through
// their indexes: it would otherwise keep scanning whole tables as they grow, until
// autovacuum next analyses them (an append of 100 events took 8 ms at 18,000 events instead
// of 1.7; the relay's read scanned pgjet.events once per outbox row). The queries that
// guard against it with settings are planned with the tables empty and with a few hundred
// and a few thousand rows, both never analysed and analysed while empty.
func TestPlannedOnceQueriesUseIndexesOnAYoungDatabase(t *testing.T) {
	t.Parallel()
	for _, analysed := range []bool{false, true} {
		state := map[bool]string{false: "never analysed", true: "analysed while empty"}[analysed]
		t.Run(state, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			pool := pgtest.Pool(t)
			require.NoError(t, Migrate(ctx, pool))
			conn, err := pool.Acquire(ctx)
			require.NoError(t, err)
			defer conn.Release()
			_, err = conn.Exec(ctx, `ALTER TABLE pgjet.events SET (autovacuum_enabled = off);
				ALTER TABLE pgjet.streams SET (autovacuum_enabled = off);
				ALTER TABLE pgjet.outbox SET (autovacuum_enabled = off)`)
			require.NoError(t, err)
			if analysed {
				_, err = conn.Exec(ctx, `ANALYZE pgjet.events, pgjet.streams, pgjet.outbox`)
				require.NoError(t, err)
			}
			leading := leadingColumns(t, conn.Conn())
			written := 0
			for _, rows := range []int{0, 300, 3000} {
				_, err := conn.Exec(ctx, `INSERT INTO pgjet.streams (stream_id, version)
					SELECT 'young-' || s, 10 FROM generate_series($1::int + 1, $2::int) s`, written/10, rows/10)
				require.NoError(t, err)
				_, err = conn.Exec(ctx, `INSERT INTO pgjet.events (event_id, stream_id, version, type, schema_id, data)
					SELECT gen_random_uuid(), 'young-' || s, v, 'pgjet.demo.order.OrderPlaced', 1, '\x00000000010203'::bytea
					FROM generate_series($1::int + 1, $2::int) s, generate_series(1, 10) v`, written/10, rows/10)
				require.NoError(t, err)
				_, err = conn.Exec(ctx, `INSERT INTO pgjet.outbox (position, partition)
					SELECT position, (position % 32)::smallint FROM pgjet.events WHERE position > $1`, written)
				require.NoError(t, err)
				written = rows
				planned := 0
				for i, q := range accessPaths() {
					if q.settings == "" {
						continue
					}
					planned++
					checkIndexed(t, q, explain(t, conn.Conn(), i, q, true), fmt.Sprintf("generic, %d events, %s", rows, state), leading)
				}
				require.Greater(t, planned, 7)
			}
		})
	}
}

// checkIndexed fails t if plan scans a large table sequentially where q does not allow it,
// or walks a whole index: an index scan with conditions on none but later columns of the
// index (leading maps index names to their first column), or with no condition at all
// unless a Limit right above it stops it (the first rows in the index's order). Such walks
// are what a planner that believes a table empty picks where sequential scans are off, or
// where two indexes cost the same.
func checkIndexed(t *testing.T, q accessPath, plan []planNode, kind string, leading map[string]string) {
	t.Helper()
	large := map[string]bool{}
	for _, table := range largeTables {
		large[table] = true
	}
	var access []string
	for _, n := range plan {
		if n.Relation == "" && n.Index == "" {
			continue
		}
		access = append(access, n.String())
		if n.Type == "Seq Scan" && large[n.Relation] && q.seqScanOK[n.Relation] == "" {
			t.Errorf("%s (%s, %s plan): Seq Scan on %s\n%s", q.name, q.source, kind, n.Relation, strings.Join(access, "\n"))
		}
		if !strings.HasPrefix(n.Type, "Index") && n.Type != "Bitmap Index Scan" {
			continue
		}
		first := leading[n.Index]
		require.NotEmpty(t, first, "first column of index %s", n.Index)
		// With no condition, a Limit right above stops the walk at the index's first rows;
		// a condition on later columns only filters the walk, wherever it stops.
		if n.IndexCond == "" && n.parent != "Limit" || n.IndexCond != "" && !strings.Contains(n.IndexCond, first) {
			t.Errorf("%s (%s, %s plan): %s on %s using %s without a condition on its first column, %s\n%s",
				q.name, q.source, kind, n.Type, n.Relation, n.Index, first, strings.Join(access, "\n"))
		}
	}
	t.Logf("%-45s %-7s %s", q.name, kind, strings.Join(access, "; "))
}

// leadingColumns returns the first column of each index of pgjet's tables, by index name.
func leadingColumns(t *testing.T, conn *pgx.Conn) map[string]string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `
		SELECT c.relname, a.attname FROM pg_index i
		JOIN pg_class c ON c.oid = i.indexrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
		WHERE n.nspname = 'pgjet'`)
	require.NoError(t, err)
	out := map[string]string{}
	var index, column string
	_, err = pgx.ForEachRow(rows, []any{&index, &column}, func() error {
		out[index] = column
		return nil
	})
	require.NoError(t, err)
	return out
}

// planNode is one node of a plan that reads a table.
type planNode struct {
	Type      string `json:"Node Type"`
	Relation  string `json:"Relation Name"`
	Index     string `json:"Index Name"`
	IndexCond string `json:"Index Cond"`
	Plans     []planNode
	parent    string // the node type above it
}

func (n planNode) String() string {
	switch {
	case n.Relation == "":
		return fmt.Sprintf("%s using %s", n.Type, n.Index)
	case n.Index != "":
		return fmt.Sprintf("%s on %s using %s", n.Type, n.Relation, n.Index)
	}
	return fmt.Sprintf("%s on %s", n.Type, n.Relation)
}

var paramRef = regexp.MustCompile(`\$(\d+)`)

// explain returns the nodes of q's plan, depth first: its custom plan, or its generic plan
// (PREPARE, then EXPLAIN EXECUTE in a transaction with plan_cache_mode =
// force_generic_plan, or with q.settings when the code plans q under its own).
func explain(t *testing.T, conn *pgx.Conn, i int, q accessPath, generic bool) []planNode {
	t.Helper()
	ctx := context.Background()
	var out []byte
	if !generic {
		require.NoError(t, conn.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+q.sql, q.args...).Scan(&out), q.name)
	} else {
		params := 0
		for _, m := range paramRef.FindAllStringSubmatch(q.sql, -1) {
			var n int
			fmt.Sscan(m[1], &n)
			params = max(params, n)
		}
		name := fmt.Sprintf("access_path_%d", i)
		nulls := strings.TrimSuffix(strings.Repeat("NULL, ", params), ", ")
		_, err := conn.Exec(ctx, "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan")
		require.NoError(t, err, q.name)
		if q.settings != "" {
			_, err = conn.Exec(ctx, q.settings, q.settingsArgs...)
			require.NoError(t, err, q.name)
		}
		_, err = conn.Exec(ctx, "PREPARE "+name+" AS "+q.sql, pgx.QueryExecModeSimpleProtocol)
		require.NoError(t, err, q.name)
		execute := "EXPLAIN (FORMAT JSON) EXECUTE " + name
		if params > 0 {
			execute += "(" + nulls + ")"
		}
		require.NoError(t, conn.QueryRow(ctx, execute, pgx.QueryExecModeSimpleProtocol).Scan(&out), q.name)
		_, err = conn.Exec(ctx, "DEALLOCATE "+name+"; ROLLBACK", pgx.QueryExecModeSimpleProtocol)
		require.NoError(t, err)
	}
	var doc []struct{ Plan planNode }
	require.NoError(t, json.Unmarshal(out, &doc), q.name)
	var nodes []planNode
	var walk func(planNode)
	walk = func(n planNode) {
		nodes = append(nodes, n)
		for _, c := range n.Plans {
			c.parent = n.Type
			walk(c)
		}
	}
	walk(doc[0].Plan)
	return nodes
}

// ReadAll follows transaction ids as numbers: events of transactions 9 and 10, read one at
// a time, come 9 first, and the cursor after it does not skip 10 (ordered as text, "10"
// came first and the cursor after it skipped 9).
func TestReadAllOrdersTransactionIDsAsNumbers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	require.NoError(t, Migrate(ctx, pool))
	s, err := New(Config{Pool: pool})
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `
		INSERT INTO pgjet.events (event_id, stream_id, version, type, schema_id, data, tx_id) VALUES
		(gen_random_uuid(), 'order-10', 1, 't.Ev', 1, '\x00', '10'),
		(gen_random_uuid(), 'order-9', 1, 't.Ev', 1, '\x00', '9')`)
	require.NoError(t, err)
	var got []uint64
	for cursor := (AllPosition{}); ; {
		page, err := s.ReadAll(ctx, cursor, 1)
		require.NoError(t, err)
		if len(page) == 0 {
			break
		}
		got = append(got, page[0].TxID)
		cursor = page[0].Next()
	}
	require.Equal(t, []uint64{9, 10}, got)
}
