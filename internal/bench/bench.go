package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/demo"
	"github.com/pgjet/pgjet/internal/projection"
	"github.com/pgjet/pgjet/internal/relay"
	"github.com/pgjet/pgjet/internal/subject"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
	"github.com/pgjet/pgjet/subscription"
)

// The bench's JetStream streams and subject prefixes. They are its own, like its pgjet_bench
// database, so that on a NATS server that already runs (NATS_URL) the bench neither
// publishes into, consumes from, nor deletes a real pgjet's PGJET_EVENTS or
// PGJET_DEADLETTERS (or anyone's stream with a generic name). Run deletes every one of them
// at its start, so a run never finds an earlier run's messages, and at its end.
const (
	// Stream holds the events the relay scenarios publish; SubjectPrefix is its prefix.
	Stream        = "PGJET_BENCH"
	SubjectPrefix = "pgjet.bench.events"

	deadLetterStream = "PGJET_BENCH_DEADLETTERS" // the consume scenario's group's
	deadLetterPrefix = "pgjet.bench.deadletter"
	rawStream        = "PGJET_BENCH_RAW" // raw async publishes
	rawPrefix        = "pgjet.bench.raw"
	pipeStream       = "PGJET_BENCH_PIPE" // raw drain and publish at once
	pipePrefix       = "pgjet.bench.pipe"
)

// streams are the streams Run deletes at its start and end.
var streams = []string{Stream, deadLetterStream, rawStream, pipeStream}

// dropStreams deletes the bench's streams that exist.
func dropStreams(ctx context.Context, nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	for _, name := range streams {
		if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("deleting stream %s: %w", name, err)
		}
	}
	return nil
}

// ensureStreams creates the events stream the relay publishes to and the consume
// scenario's dead-letter stream.
func ensureStreams(ctx context.Context, nc *nats.Conn, events relay.StreamConfig) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if _, err := relay.EnsureStream(ctx, js, events); err != nil {
		return err
	}
	return subscription.EnsureDeadLetterStream(ctx, js, subscription.DeadLetterConfig{Stream: deadLetterStream, Prefix: deadLetterPrefix})
}

// Config configures a run.
type Config struct {
	// Pool is a migrated Postgres pool on a database the run may fill. Required.
	Pool *pgxpool.Pool
	// Conn is a NATS connection to a JetStream server the run may fill. Required.
	Conn *nats.Conn
	// Duration of each timed append scenario. Default 3s.
	Duration time.Duration
	// RelayEvents is how many events the relay and raw-publish scenarios move. Default 50,000.
	RelayEvents int
	// LatencyRate and LatencyFor set the steady load of the latency scenario and how long it
	// is measured, after 2 s of the same load unmeasured. Default 1,000 events/s for 15s.
	LatencyRate int
	LatencyFor  time.Duration
	// Relay configures the relay under test (workers, batch size, window); zero values are
	// the relay's defaults. Its stream is always Stream, on SubjectPrefix.
	Relay relay.Config
	// Out receives the report.
	Out io.Writer
	// JetStreamMode names the server's fsync mode in the report.
	JetStreamMode string
	// Only runs just the scenarios whose names it lists (comma-separated: append,
	// groupcommit, relay, latency, snapshot; relay includes consume). Default: all.
	// Run runs all but snapshot, which is SnapshotLoad's (see Runs).
	Only string
}

// scenarios are the names Config.Only takes.
var scenarios = []string{"append", "groupcommit", "relay", "latency", "snapshot"}

func (c Config) validate() error {
	if c.Only == "" {
		return nil
	}
	for _, name := range strings.Split(c.Only, ",") {
		if !slices.Contains(scenarios, name) {
			return fmt.Errorf("Config.Only: no scenario %q (there are %s)", name, strings.Join(scenarios, ", "))
		}
	}
	return nil
}

// Runs reports whether Only selects scenario.
func (c Config) Runs(scenario string) bool {
	return c.Only == "" || slices.Contains(strings.Split(c.Only, ","), scenario)
}

// Result is one measured figure beside its ceiling.
type Result struct {
	Name           string
	Value, Ceiling float64
	Unit           string
	CeilingName    string
}

const reasonPad = 240 // makes an OrderCancelled about 300 bytes of Avro

func event() pgjet.EventData {
	return pgjet.EventData{ID: uuid.New(), Type: demo.TypeOrderCancelled, Data: map[string]any{
		"order_id": uuid.NewString(), "reason": strings.Repeat("r", reasonPad), "cancelled_at": time.Now(),
	}}
}

// sameEvent is an event with a new id and the given data. The throughput scenarios with a
// raw ceiling build their events' data once, as the raw insert encodes its row once:
// building a caller's values is not the append's work (for 100-event appends from one
// writer it was 3-4 % of the time measured). Each event still gets its own id, validation
// and encoding.
func sameEvent(data any) pgjet.EventData {
	return pgjet.EventData{ID: uuid.New(), Type: demo.TypeOrderCancelled, Data: data}
}

// Run runs every scenario and prints the report.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	cfg.Duration = cmp.Or(cfg.Duration, 3*time.Second)
	cfg.RelayEvents = cmp.Or(cfg.RelayEvents, 50_000)
	cfg.LatencyRate = cmp.Or(cfg.LatencyRate, 1000)
	cfg.LatencyFor = cmp.Or(cfg.LatencyFor, 15*time.Second)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	subjects, err := subject.New(SubjectPrefix)
	if err != nil {
		return nil, err
	}
	cfg.Relay.Stream.Name, cfg.Relay.Stream.Subjects = Stream, subjects
	if err := dropStreams(ctx, cfg.Conn); err != nil {
		return nil, err
	}
	defer dropStreams(context.WithoutCancel(ctx), cfg.Conn)
	store, err := pgjet.New(pgjet.Config{Pool: cfg.Pool})
	if err != nil {
		return nil, err
	}
	if _, err := store.Registry().RegisterFS(ctx, demoschemas.Files); err != nil {
		return nil, err
	}
	if _, err := cfg.Pool.Exec(ctx, `
		CREATE TABLE IF NOT EXISTS raw_events (LIKE pgjet.events INCLUDING ALL);
		CREATE TABLE IF NOT EXISTS raw_outbox (LIKE pgjet.outbox INCLUDING ALL)`); err != nil {
		return nil, err
	}
	// A sample encoded event, so raw inserts write the same bytes.
	payload := event().Data // the data of every event of the throughput scenarios
	sample, err := store.Append(ctx, "bench-sample", pgjet.Any, sameEvent(payload))
	if err != nil {
		return nil, err
	}
	var data []byte
	if err := cfg.Pool.QueryRow(ctx, `SELECT data FROM pgjet.events WHERE position = $1`, sample.Positions[0]).Scan(&data); err != nil {
		return nil, err
	}
	out := cfg.Out
	publishing := "one event per stream at a time"
	switch {
	case cfg.Relay.BatchPublish:
		publishing = "in ordered batches"
	case cfg.Relay.AtomicPublish:
		publishing = "in atomic batches"
	}
	if n := cfg.Relay.Stream.Replicas; n > 1 {
		publishing += fmt.Sprintf(" to %d replicas (the raw ceilings publish to 1)", n)
	}
	fmt.Fprintf(out, "pgjet bench — %s, JetStream %s; each append scenario runs %s; the relay publishes %s (except in its opt-in lines)\n\n",
		time.Now().Format(time.DateTime), cfg.JetStreamMode, cfg.Duration, publishing)
	fmt.Fprintf(out, "%-46s %14s %14s %7s   %s\n", "scenario", "pgjet", "ceiling", "ratio", "ceiling measured as")
	var results []Result
	report := func(r Result) {
		results = append(results, r)
		ratio := "     -"
		if r.Ceiling > 0 {
			ratio = fmt.Sprintf("%6.2f", r.Value/r.Ceiling)
		}
		fmt.Fprintf(out, "%-46s %14s %14s %7s   %s\n", r.Name, format(r.Value, r.Unit), format(r.Ceiling, r.Unit), ratio, r.CeilingName)
	}

	for _, size := range []int{1, 100} {
		if !cfg.Runs("append") {
			break
		}
		for _, writers := range []int{1, 8} {
			rates, err := interleaved(ctx, cfg.Duration, writers,
				func(ctx context.Context, w int) (int, error) {
					return size, rawInsert(ctx, cfg.Pool, data, size)
				},
				func(ctx context.Context, w int) (int, error) {
					evs := make([]pgjet.EventData, size)
					for i := range evs {
						evs[i] = sameEvent(payload)
					}
					_, err := store.Append(ctx, fmt.Sprintf("order-bench%d-%d", w, time.Now().UnixNano()%64), pgjet.Any, evs...)
					return size, err
				})
			if err != nil {
				return nil, fmt.Errorf("append: %w", err)
			}
			report(Result{Name: fmt.Sprintf("append, %d event(s) per call, %d writer(s)", size, writers), Value: rates[1], Ceiling: rates[0],
				Unit: "ev/s", CeilingName: fmt.Sprintf("one pgx statement: %d event row(s) + outbox row(s)", size)})
		}
	}

	// The relay scenario moves only its own events: drop what the append scenarios queued.
	if _, err := cfg.Pool.Exec(ctx, `TRUNCATE pgjet.outbox`); err != nil {
		return nil, err
	}
	// Group commit: many single-event writers share commits.
	groupReg := prometheus.NewRegistry()
	grouped, err := pgjet.New(pgjet.Config{Pool: cfg.Pool, GroupCommit: true, Registerer: groupReg})
	if err != nil {
		return nil, err
	}
	if cfg.Runs("groupcommit") {
		appendTo := func(st *pgjet.Store) func(ctx context.Context, w int) (int, error) {
			return func(ctx context.Context, w int) (int, error) {
				_, err := st.Append(ctx, fmt.Sprintf("order-gc%d-%d", w, time.Now().UnixNano()%64), pgjet.Any, sameEvent(payload))
				return 1, err
			}
		}
		rates, err := interleaved(ctx, cfg.Duration, 32,
			func(ctx context.Context, w int) (int, error) { return 1, rawInsert(ctx, cfg.Pool, data, 1) },
			appendTo(store), appendTo(grouped))
		if err != nil {
			return nil, fmt.Errorf("append: %w", err)
		}
		report(Result{Name: "append, 1 event per call, 32 writers", Value: rates[1], Ceiling: rates[0], Unit: "ev/s", CeilingName: "one pgx statement per event, 32 writers"})
		report(Result{Name: "append, 1 event per call, 32 writers, group commit", Value: rates[2], Ceiling: rates[0], Unit: "ev/s", CeilingName: "one pgx statement per event, 32 writers"})

		// What batching alone can give on this machine: raw multi-row inserts of group
		// commit's mean batch, from as many connections as it commits on.
		size, err := meanGroup(groupReg)
		if err != nil {
			return nil, err
		}
		conns := 2 // pgjet.Config.GroupCommitConns's default
		rates, err = interleavedLoads(ctx, cfg.Duration,
			load{conns, func(ctx context.Context, w int) (int, error) { return size, rawInsert(ctx, cfg.Pool, data, size) }},
			load{32, appendTo(grouped)})
		if err != nil {
			return nil, fmt.Errorf("append: %w", err)
		}
		report(Result{Name: "append, 32 writers, group commit, again", Value: rates[1], Ceiling: rates[0], Unit: "ev/s",
			CeilingName: fmt.Sprintf("one pgx statement per %d events (its mean batch), %d writers", size, conns)})
	}

	// The relay scenario moves only its own events: drop what the append scenarios queued.
	if _, err := cfg.Pool.Exec(ctx, `TRUNCATE pgjet.outbox`); err != nil {
		return nil, err
	}
	var relayPeak float64
	pending := 0
	if cfg.Runs("relay") {
		// The streams exist before any clock starts, as the raw publishes' do: creating
		// one is no part of draining or consuming.
		if err := ensureStreams(ctx, cfg.Conn, cfg.Relay.Stream); err != nil {
			return nil, err
		}
		pending, err = fillOutbox(ctx, store, cfg.Pool, cfg.RelayEvents)
		if err != nil {
			return nil, err
		}
		rawPub, err := rawPublish(ctx, cfg.Conn, data, cfg.RelayEvents)
		if err != nil {
			return nil, fmt.Errorf("raw publish: %w", err)
		}
		// The raw loops move as many rows at a time as the relay reads.
		rows := cmp.Or(cfg.Relay.BatchSize, relay.DefaultBatchSize)
		drain, err := rawDrain(ctx, cfg.Pool, data, cfg.RelayEvents, rows)
		if err != nil {
			return nil, fmt.Errorf("raw drain: %w", err)
		}
		pipeline, err := rawPipeline(ctx, cfg.Pool, cfg.Conn, data, cfg.RelayEvents, rows)
		if err != nil {
			return nil, fmt.Errorf("raw pipeline: %w", err)
		}
		relayMem := sampleMemory(50 * time.Millisecond)
		relayed, err := relayDrain(ctx, cfg.Relay, cfg.Pool, cfg.Conn, pending)
		relayPeak = relayMem.Stop()
		if err != nil {
			return nil, fmt.Errorf("relay: %w", err)
		}
		report(Result{Name: fmt.Sprintf("relay: outbox -> JetStream (%d ev, 2048 streams)", pending), Value: relayed, Ceiling: min(rawPub, drain),
			Unit: "ev/s", CeilingName: fmt.Sprintf("min(JetStream async publish %s, outbox DELETE..RETURNING %s)", format(rawPub, "ev/s"), format(drain, "ev/s"))})
		report(Result{Name: "relay, beside both done at once", Value: relayed, Ceiling: pipeline,
			Unit: "ev/s", CeilingName: fmt.Sprintf("4 loops of DELETE..RETURNING %d rows, then async publish of each (no order, no safety)", rows)})

		// The same with ordered batch publishes (relay.Config.BatchPublish) and with atomic
		// batch publishes (AtomicPublish), each on a fresh fill.
		for _, mode := range []struct {
			name          string
			batch, atomic bool
		}{{"-batch-publish", true, false}, {"-atomic-publish", false, true}} {
			refilled, err := fillOutbox(ctx, store, cfg.Pool, cfg.RelayEvents)
			if err != nil {
				return nil, err
			}
			rc := cfg.Relay
			rc.BatchPublish, rc.AtomicPublish = mode.batch, mode.atomic
			v, err := relayDrain(ctx, rc, cfg.Pool, cfg.Conn, refilled)
			if err != nil {
				return nil, fmt.Errorf("relay %s: %w", mode.name, err)
			}
			report(Result{Name: "relay with " + mode.name, Value: v, Ceiling: pipeline,
				Unit: "ev/s", CeilingName: "both done at once, as above"})
		}

		// Consume + decode beside a plain pull consumer, over the events the relay just published.
		rawCons, err := rawConsume(ctx, cfg.Conn, Stream, pending)
		if err != nil {
			return nil, fmt.Errorf("raw consume: %w", err)
		}
		consumed, err := consumeDecoded(ctx, cfg.Conn, store, pending)
		if err != nil {
			return nil, fmt.Errorf("consume: %w", err)
		}
		report(Result{Name: fmt.Sprintf("consume + decode, 1 member (%d ev)", pending), Value: consumed, Ceiling: rawCons,
			Unit: "ev/s", CeilingName: "JetStream pull consume, explicit acks, no decoding"})

		e2e, err := endToEnd(ctx, store, cfg)
		if err != nil {
			return nil, fmt.Errorf("end to end: %w", err)
		}
		report(Result{Name: "end to end: 8 writers (10-event appends) + relay", Value: e2e, Unit: "ev/s",
			CeilingName: "appended and published, per second of the whole run (no raw ceiling)"})
	}
	if cfg.Runs("relay") {
		report(Result{Name: fmt.Sprintf("Go heap in use, peak, relay draining %d ev", pending), Value: relayPeak, Unit: "MiB", CeilingName: heapOf})
	}
	if cfg.Runs("latency") {
		// Last, after the throughput scenarios: vacuum what they left behind, then write
		// out the pages they dirtied. Without the CHECKPOINT, the one their WAL had started
		// ran through the measurement, and its writes made the tail (commit -> JetStream p99
		// 4.3-17.4 ms against 2.8-4.9 ms with it, three runs each).
		if _, err := cfg.Pool.Exec(ctx, `VACUUM ANALYZE pgjet.outbox, pgjet.events, pgjet.streams`); err != nil {
			return nil, err
		}
		if _, err := cfg.Pool.Exec(ctx, `CHECKPOINT`); err != nil {
			// It takes a superuser or pg_checkpoint; measure without it rather than not.
			fmt.Fprintf(out, "(latency measured without a CHECKPOINT first: %v)\n", err)
		}
		latencyMem := sampleMemory(50 * time.Millisecond)
		delivered, projected, err := latency(ctx, store, cfg)
		latencyPeak := latencyMem.Stop()
		if err != nil {
			return nil, fmt.Errorf("latency: %w", err)
		}
		for _, row := range []struct {
			to      string
			q       float64
			p       string
			samples []time.Duration
		}{
			{"JetStream consumer", 0.5, "p50", delivered}, {"JetStream consumer", 0.99, "p99", delivered},
			{"projector", 0.5, "p50", projected}, {"projector", 0.99, "p99", projected},
		} {
			v, err := quantile(row.samples, row.q)
			if err != nil {
				return nil, fmt.Errorf("latency: commit -> %s %s: %w", row.to, row.p, err)
			}
			report(Result{Name: fmt.Sprintf("commit -> %s %s @%d ev/s", row.to, row.p, cfg.LatencyRate), Value: ms(v), Unit: "ms",
				CeilingName: fmt.Sprintf("nearest rank of %d events, appended at %.0f/s", len(row.samples), float64(len(row.samples))/cfg.LatencyFor.Seconds())})
		}
		report(Result{Name: fmt.Sprintf("Go heap in use, peak, relay+projector @%d ev/s", cfg.LatencyRate), Value: latencyPeak, Unit: "MiB", CeilingName: heapOf})
	}

	report(Result{Name: "peak RSS of the whole bench process", Value: peakRSS(), Unit: "MiB"})
	return results, nil
}

// heapOf says what the heap figures hold: one Go runtime serves the bench's own goroutines,
// the relay and projector, and an embedded nats-server.
const heapOf = "the bench process: relay, projector, load, and the nats-server if embedded"

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func format(v float64, unit string) string {
	if v == 0 {
		return "-"
	}
	if unit == "ms" {
		return fmt.Sprintf("%.2f ms", v)
	}
	return fmt.Sprintf("%.0f %s", v, unit)
}

// interleaved measures fns against each other on a machine whose speed drifts: it runs
// them in turn, in three rounds of d/3 each, and returns each one's units per second over
// its own slices. A slow phase of the machine then weighs on all of them alike.
func interleaved(ctx context.Context, d time.Duration, writers int, fns ...func(ctx context.Context, w int) (int, error)) ([]float64, error) {
	loads := make([]load, len(fns))
	for i, fn := range fns {
		loads[i] = load{writers, fn}
	}
	return interleavedLoads(ctx, d, loads...)
}

// load is fn run from writers goroutines.
type load struct {
	writers int
	fn      func(ctx context.Context, w int) (int, error)
}

// interleavedLoads is interleaved with its own number of writers for each function. Each
// load first runs unmeasured for a tenth of a slice: the pool opens the connections the
// writers need and each load prepares its statements on them. Without it the load measured
// first, the raw ceiling, paid for opening every connection that its writers' number
// added (up to 31 at once for 32 writers) and the others found them open.
func interleavedLoads(ctx context.Context, d time.Duration, loads ...load) ([]float64, error) {
	for _, l := range loads {
		if _, err := timed(ctx, d/30, l.writers, l.fn); err != nil {
			return nil, err
		}
	}
	units := make([]float64, len(loads))
	spent := make([]time.Duration, len(loads))
	for range 3 {
		for i, l := range loads {
			start := time.Now()
			rate, err := timed(ctx, d/3, l.writers, l.fn)
			if err != nil {
				return nil, err
			}
			took := time.Since(start)
			units[i] += rate * took.Seconds()
			spent[i] += took
		}
	}
	rates := make([]float64, len(loads))
	for i := range loads {
		rates[i] = units[i] / spent[i].Seconds()
	}
	return rates, nil
}

// meanGroup returns the mean number of appends in the shared transactions of the group
// commit whose metrics reg holds (pgjet_append_group_size; batches of one are not counted).
func meanGroup(reg *prometheus.Registry) (int, error) {
	families, err := reg.Gather()
	if err != nil {
		return 0, err
	}
	for _, f := range families {
		if f.GetName() == "pgjet_append_group_size" && len(f.GetMetric()) == 1 {
			h := f.GetMetric()[0].GetHistogram()
			if h.GetSampleCount() > 0 {
				return max(1, int(math.Round(h.GetSampleSum()/float64(h.GetSampleCount())))), nil
			}
		}
	}
	return 0, errors.New("group commit made no shared transaction")
}

// timed runs fn from writers goroutines for d and returns units per second. A call under
// way at d runs to its end: cancelling it would make pgx close its connection, and the next
// scenario would pay for new connections (their first statements planned anew). With 1 s
// slices on a slow machine that churn cost both pgjet and its ceilings several times over.
func timed(ctx context.Context, d time.Duration, writers int, fn func(ctx context.Context, w int) (int, error)) (float64, error) {
	var (
		total atomic.Int64
		g     errgroup.Group
	)
	start := time.Now()
	end := start.Add(d)
	for w := range writers {
		g.Go(func() error {
			for time.Now().Before(end) {
				n, err := fn(ctx, w)
				if err != nil {
					return err
				}
				total.Add(int64(n))
			}
			return nil
		})
	}
	err := g.Wait()
	return float64(total.Load()) / time.Since(start).Seconds(), err
}

// rawInsert writes n event rows and n outbox rows in one transaction with plain pgx: the
// same rows an append writes, without pgjet's checks. Each row's values travel with it, as
// they would for n different events.
func rawInsert(ctx context.Context, pool *pgxpool.Pool, data []byte, n int) error {
	ids := make([][16]byte, n) // as pgx encodes uuids fastest, as pgjet passes them
	types := make([]string, n)
	rows := make([][]byte, n)
	for i := range ids {
		ids[i] = uuid.New()
		types[i] = demo.TypeOrderCancelled
		rows[i] = data
	}
	stream := "raw-" + uuid.UUID(ids[0]).String()
	// One statement is its own transaction: one round trip, as an append takes.
	_, err := pool.Exec(ctx, `
		WITH ev AS (
			INSERT INTO raw_events (event_id, stream_id, version, type, schema_id, data)
			SELECT id, $2, ord, type, 1, data
			FROM unnest($1::uuid[], $3::text[], $4::bytea[]) WITH ORDINALITY AS t (id, type, data, ord)
			RETURNING position)
		INSERT INTO raw_outbox (position, partition) SELECT position, 0 FROM ev`,
		ids, stream, types, rows)
	return err
}

// fillOutbox appends n events in 10-event appends over 2,048 streams and returns how many
// rows the outbox holds.
func fillOutbox(ctx context.Context, store *pgjet.Store, pool *pgxpool.Pool, n int) (int, error) {
	var g errgroup.Group
	per := n / 10 / 8
	for w := range 8 {
		g.Go(func() error {
			for i := range per {
				evs := make([]pgjet.EventData, 10)
				for j := range evs {
					evs[j] = event()
				}
				if _, err := store.Append(ctx, fmt.Sprintf("order-fill%d", (w*per+i)%2048), pgjet.Any, evs...); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	var pending int
	err := pool.QueryRow(ctx, `SELECT count(*) FROM pgjet.outbox`).Scan(&pending)
	return pending, err
}

// fillRaw empties raw_outbox and fills it, and raw_events, with n rows.
func fillRaw(ctx context.Context, pool *pgxpool.Pool, data []byte, n int) error {
	if _, err := pool.Exec(ctx, `TRUNCATE raw_outbox`); err != nil {
		return err
	}
	for done := 0; done < n; done += 1000 {
		if err := rawInsert(ctx, pool, data, min(1000, n-done)); err != nil {
			return err
		}
	}
	return nil
}

// scratchStream creates a file-storage stream for raw publishes (async window 4096) and
// returns a function that deletes it.
func scratchStream(ctx context.Context, nc *nats.Conn, name, prefix string) (jetstream.JetStream, func(), error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return nil, nil, err
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{prefix + ".>"}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute}); err != nil {
		return nil, nil, err
	}
	return js, func() { _ = js.DeleteStream(context.WithoutCancel(ctx), name) }, nil
}

// relayShaped is a message shaped like the relay's: the payload, Nats-Msg-Id and as many
// headers.
func relayShaped(subject, id string, data []byte) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, id)
	for _, h := range []string{"ce-specversion", "ce-id", "ce-source", "ce-type", "ce-subject", "ce-time", "ce-datacontenttype", "ce-dataschema", "ce-schemaid", "ce-streamversion", "ce-position"} {
		m.Header.Set(h, id)
	}
	return m
}

// rawPublish publishes n messages shaped like the relay's (same payload, Nats-Msg-Id and
// header count) to a scratch stream with async publishes, window 4096.
func rawPublish(ctx context.Context, nc *nats.Conn, data []byte, n int) (float64, error) {
	js, drop, err := scratchStream(ctx, nc, rawStream, rawPrefix)
	if err != nil {
		return 0, err
	}
	defer drop()
	start := time.Now()
	for i := range n {
		m := relayShaped(fmt.Sprintf(rawPrefix+".order.pgjet:demo:order:OrderCancelled.order-%d", i%64), uuid.NewString(), data)
		if _, err := js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute)); err != nil { // sync_interval: always acks slowly
			return 0, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	took := time.Since(start)
	// PublishAsyncComplete means every publish has its answer, refusals and timeouts
	// included: count only what the stream stored.
	st, err := js.Stream(ctx, rawStream)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	if info.State.Msgs != uint64(n) {
		return 0, fmt.Errorf("the stream stored %d of the %d messages published", info.State.Msgs, n)
	}
	return float64(n) / took.Seconds(), nil
}

// rawDrain measures the outbox side alone: DELETE ... RETURNING of batches of rows joined
// to their events, as one drainer, on a copy of n rows.
func rawDrain(ctx context.Context, pool *pgxpool.Pool, data []byte, n, rows int) (float64, error) {
	if err := fillRaw(ctx, pool, data, n); err != nil {
		return 0, err
	}
	start := time.Now()
	moved := 0
	for {
		var k int
		err := pool.QueryRow(ctx, `
			WITH d AS (DELETE FROM raw_outbox WHERE position IN (SELECT position FROM raw_outbox ORDER BY position LIMIT $1) RETURNING position)
			SELECT count(*) FROM d JOIN raw_events e USING (position)`, rows).Scan(&k)
		if err != nil {
			return 0, err
		}
		if k == 0 {
			break
		}
		moved += k
	}
	return float64(moved) / time.Since(start).Seconds(), nil
}

// rawPipeline measures both sides of the relay at once, on the same CPUs, without any of its
// guarantees: 4 goroutines each DELETE ... RETURNING batches of rows joined to their events from a
// copy of n outbox rows, publish them asynchronously (the relay's message shape) and wait
// for the acks. On a small machine the relay pays for Postgres and JetStream together,
// which the two separate ceilings do not show.
func rawPipeline(ctx context.Context, pool *pgxpool.Pool, nc *nats.Conn, data []byte, n, batch int) (float64, error) {
	if err := fillRaw(ctx, pool, data, n); err != nil {
		return 0, err
	}
	js, drop, err := scratchStream(ctx, nc, pipeStream, pipePrefix)
	if err != nil {
		return 0, err
	}
	defer drop()
	var (
		moved atomic.Int64
		g     errgroup.Group
	)
	start := time.Now()
	for range 4 {
		g.Go(func() error {
			for {
				rows, err := pool.Query(ctx, `
					WITH d AS (DELETE FROM raw_outbox WHERE position IN (
						SELECT position FROM raw_outbox ORDER BY position LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING position)
					SELECT e.event_id::text, e.stream_id, e.data FROM d JOIN raw_events e USING (position)`, batch)
				if err != nil {
					return err
				}
				k := 0
				var futs []jetstream.PubAckFuture
				for rows.Next() {
					var id, stream string
					var payload []byte
					if err := rows.Scan(&id, &stream, &payload); err != nil {
						rows.Close()
						return err
					}
					m := relayShaped(pipePrefix+"."+stream, id, payload)
					f, err := js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute))
					if err != nil {
						rows.Close()
						return err
					}
					futs = append(futs, f)
					k++
				}
				if err := rows.Err(); err != nil {
					return err
				}
				if k == 0 {
					return nil
				}
				for _, f := range futs {
					select {
					case <-f.Ok():
					case err := <-f.Err():
						return err
					}
				}
				moved.Add(int64(k))
			}
		})
	}
	err = g.Wait()
	return float64(moved.Load()) / time.Since(start).Seconds(), err
}

// endToEnd runs 8 writers of 10-event appends over 2,048 streams for cfg.Duration with a
// relay running, waits until the relay has published everything, and returns events per
// second from the first append to the last publish.
func endToEnd(ctx context.Context, store *pgjet.Store, cfg Config) (float64, error) {
	if _, err := cfg.Pool.Exec(ctx, `TRUNCATE pgjet.outbox`); err != nil {
		return 0, err
	}
	_, stop, err := runRelay(ctx, cfg.Relay, cfg.Pool, cfg.Conn)
	if err != nil {
		return 0, err
	}
	defer stop()
	start := time.Now()
	var appended atomic.Int64
	if _, err := timed(ctx, cfg.Duration, 8, func(ctx context.Context, w int) (int, error) {
		evs := make([]pgjet.EventData, 10)
		for i := range evs {
			evs[i] = event()
		}
		_, err := store.Append(ctx, fmt.Sprintf("order-e2e%d", (int(appended.Load())+w)%2048), pgjet.Any, evs...)
		if err == nil {
			appended.Add(10)
		}
		return 10, err
	}); err != nil {
		return 0, err
	}
	if err := waitOutboxEmpty(ctx, cfg.Pool); err != nil {
		return 0, err
	}
	return float64(appended.Load()) / time.Since(start).Seconds(), nil
}

// relayDrain runs a relay until the outbox is empty and returns events per second, from
// the relay holding its partitions (its start-up, which a running relay does not pay
// again, is not timed, as the raw ceilings' connections and streams are made before
// their clocks start) to the outbox being empty.
func relayDrain(ctx context.Context, rc relay.Config, pool *pgxpool.Pool, nc *nats.Conn, pending int) (float64, error) {
	r, stop, err := runRelay(ctx, rc, pool, nc)
	if err != nil {
		return 0, err
	}
	defer stop()
	if err := waitReady(ctx, r); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := waitOutboxEmpty(ctx, pool); err != nil {
		return 0, err
	}
	return float64(pending) / time.Since(start).Seconds(), nil
}

// waitReady polls every millisecond until r holds its partitions (30 s at most).
func waitReady(ctx context.Context, r *relay.Relay) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		err := r.Ready()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the relay to start: %w", err)
		case <-time.After(time.Millisecond):
		}
	}
}

// runRelay starts a relay on pool and nc; stop ends it and waits until it has.
func runRelay(ctx context.Context, rc relay.Config, pool *pgxpool.Pool, nc *nats.Conn) (r *relay.Relay, stop func(), err error) {
	rc.Pool, rc.Conn = pool, nc
	r, err = relay.New(rc)
	if err != nil {
		return nil, nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	return r, func() { cancel(); <-done }, nil
}

// waitOutboxEmpty polls until pgjet.outbox holds no row.
func waitOutboxEmpty(ctx context.Context, pool *pgxpool.Pool) error {
	for {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pgjet.outbox`).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// latencyWarmUp is how long the latency scenario's load runs before it is measured.
const latencyWarmUp = 2 * time.Second

// latencyStragglers bounds the wait, after the load, for the last measured events to be
// delivered and projected.
const latencyStragglers = 10 * time.Second

// latency appends single events at a steady rate with a relay, a projector and an ordered
// JetStream consumer running, and returns, for every event appended after the warm-up, the
// time from its append's commit to the consumer receiving it and to the projector
// committing it. It fails when an append fails, or when a measured event is not delivered
// and projected within latencyStragglers of the load's end: a percentile of the events
// that arrived would leave out the slowest.
func latency(ctx context.Context, store *pgjet.Store, cfg Config) (delivered, projected []time.Duration, err error) {
	// The relay and the projector have pools of their own, as cmd/relay and cmd/projector
	// do. Sharing the writers' pool, they queued behind appends for connections whenever
	// the writers fell behind, and published or projected hundreds of milliseconds late.
	own := func() (*pgxpool.Pool, error) {
		pc := cfg.Pool.Config()
		pc.MaxConns = 4 // what the binaries get by default here: pgxpool's max(4, CPUs)
		return pgxpool.NewWithConfig(ctx, pc)
	}
	relayPool, err := own()
	if err != nil {
		return
	}
	defer relayPool.Close()
	projectorPool, err := own()
	if err != nil {
		return
	}
	defer projectorPool.Close()
	timings := newTimings()
	var warmed atomic.Bool
	pj, err := projection.New(projection.Config{
		Pool: projectorPool, Conn: cfg.Conn, Registry: store.Registry(), Projection: demo.OrdersProjection(), Stream: Stream,
		AfterCommit: func(evs []projection.Event) {
			now := time.Now()
			for _, ev := range evs {
				if !timings.projectedAt(ev.ID, now) && ev.StreamID == "order-latwarmup" {
					warmed.Store(true)
				}
			}
		},
	})
	if err != nil {
		return
	}
	rc := cfg.Relay
	rc.Pool, rc.Conn = relayPool, cfg.Conn
	r, err := relay.New(rc)
	if err != nil {
		return
	}
	// The projector starts at the end of what earlier scenarios published.
	if s, err := jetstream.New(cfg.Conn); err == nil {
		if st, err := s.Stream(ctx, Stream); err == nil {
			if info, err := st.Info(ctx); err == nil {
				if _, err := cfg.Pool.Exec(ctx, `INSERT INTO pgjet.checkpoints (name, sequence) VALUES ($1, $2)
					ON CONFLICT (name) DO UPDATE SET sequence = EXCLUDED.sequence`, demo.ProjectionName, info.State.LastSeq); err != nil {
					return nil, nil, err
				}
			}
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() { _ = r.Run(rctx) })
	wg.Go(func() { _ = pj.Run(rctx) })
	// Warm up: the relay has its stream and partitions and the projector its consumer once
	// a first event went all the way; only then does the clock run.
	for warm := time.Now().Add(30 * time.Second); ; {
		if _, err := store.Append(ctx, "order-latwarmup", pgjet.Any, event()); err != nil {
			return nil, nil, err
		}
		time.Sleep(50 * time.Millisecond)
		if warmed.Load() || time.Now().After(warm) {
			break
		}
	}
	// The consumer, made once the relay has made the stream, is a JetStream one: a message
	// reaches it once the stream has stored it. (A core NATS subscription on the subjects
	// would get each publish as the stream does, before it is stored.)
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return
	}
	oc, err := js.OrderedConsumer(ctx, Stream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		return
	}
	cc, err := oc.Consume(func(m jetstream.Msg) {
		timings.deliveredAt(m.Headers().Get("ce-id"), time.Now())
	})
	if err != nil {
		return
	}
	defer cc.Stop()
	// Then the load runs for latencyWarmUp before the clock starts: the pools open their
	// connections and prepare their statements at the rate's concurrency, not in the sample.
	interval := time.Second / time.Duration(cfg.LatencyRate)
	measureFrom := time.Now().Add(latencyWarmUp)
	deadline := measureFrom.Add(cfg.LatencyFor)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var (
		appends  sync.WaitGroup
		failed   atomic.Int64
		firstErr atomic.Pointer[error]
	)
	for i := 0; time.Now().Before(deadline); i++ {
		<-tick.C
		stream := fmt.Sprintf("order-lat%d", i%256)
		measured := time.Now().After(measureFrom)
		appends.Go(func() {
			ev := event()
			id := ev.ID.String()
			if measured {
				timings.add(id) // before the append: its delivery may come before it returns
			}
			if _, err := store.Append(ctx, stream, pgjet.Any, ev); err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, &err)
				return
			}
			if measured {
				timings.committedAt(id, time.Now())
			}
		})
	}
	appends.Wait()
	if n := failed.Load(); n > 0 {
		return nil, nil, fmt.Errorf("%d appends failed, the first with: %w", n, *firstErr.Load())
	}
	// Wait (bounded) for the stragglers: every measured event delivered and projected.
	for end := time.Now().Add(latencyStragglers); timings.pending() > 0 && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
	}
	delivered, projected, missing := timings.samples()
	if missing > 0 {
		return nil, nil, fmt.Errorf("%d of %d events appended were not delivered to the JetStream consumer and projected within %s of the load's end",
			missing, timings.count(), latencyStragglers)
	}
	return delivered, projected, nil
}
