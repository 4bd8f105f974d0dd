package relay_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/avro"
	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/outbox"
	"github.com/pgjet/pgjet/internal/pgcluster"
	"github.com/pgjet/pgjet/internal/pgtest"
	"github.com/pgjet/pgjet/internal/promtest"
	"github.com/pgjet/pgjet/internal/relay"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

const childEnv = "PGJET_RELAY_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		runChild()
		return
	}
	if os.Getenv(natsChildEnv) != "" {
		runNATSChild()
		return
	}
	pgtest.Main(m)
}

// runChild is a relay in its own process, for tests that kill it for real.
func runChild() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		panic(err)
	}
	nc, err := nats.Connect(os.Getenv("NATS_URL"))
	if err != nil {
		panic(err)
	}
	r, err := relay.New(relay.Config{Pool: pool, Conn: nc, BatchSize: 40, Window: 16, PollInterval: 100 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	fmt.Println("ready") // the signal handler is in place
	if err := r.Run(ctx); err != nil {
		panic(err)
	}
}

type env struct {
	store *pgjet.Store
	pool  *pgxpool.Pool
	url   string
	nc    *nats.Conn
	js    jetstream.JetStream
	nurl  string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	url := pgtest.DB(t)
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, pgjet.Migrate(ctx, pool))
	store, err := pgjet.New(pgjet.Config{Pool: pool})
	require.NoError(t, err)
	_, err = store.Registry().RegisterFS(ctx, demoschemas.Files)
	require.NoError(t, err)
	srv := natstest.Server(t)
	nc, js := natstest.Connect(t, srv)
	return &env{store: store, pool: pool, url: url, nc: nc, js: js, nurl: srv.ClientURL()}
}

func (e *env) startRelay(t *testing.T, cfg relay.Config) (stop func()) {
	t.Helper()
	cfg.Pool, cfg.Conn = e.pool, e.nc
	cfg.PollInterval = 100 * time.Millisecond
	r, err := relay.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	return stop
}

func cancelled(stream string, n int) pgjet.EventData {
	return pgjet.EventData{ID: uuid.New(), Type: "pgjet.demo.order.OrderCancelled", Data: json.RawMessage(fmt.Sprintf(
		`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","reason":"%s #%d","cancelled_at":"2026-11-26T10:00:00Z"}`, stream, n))}
}

// published is what JetStream holds, in stream-sequence order.
type published struct {
	id      string
	stream  string
	version int64
	msg     jetstream.RawStreamMsg
}

func readAll(t *testing.T, js jetstream.JetStream) []published {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, "PGJET_EVENTS")
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	var out []published
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		require.NoError(t, err)
		v, err := strconv.ParseInt(m.Header.Get(relay.HeaderStreamVersion), 10, 64)
		require.NoError(t, err)
		out = append(out, published{id: m.Header.Get(jetstream.MsgIDHeader), stream: m.Header.Get("ce-subject"), version: v, msg: *m})
	}
	return out
}

// waitDrained waits until the outbox is empty.
func waitDrained(t *testing.T, pool *pgxpool.Pool, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM pgjet.outbox`).Scan(&n))
		return n == 0
	}, within, 20*time.Millisecond, "outbox not drained")
}

// checkExactlyOnceInOrder asserts invariants 1-3: JetStream holds exactly the committed
// events, each once, and every stream's events in version order without gaps.
func checkExactlyOnceInOrder(t *testing.T, got []published, committed map[string]string) {
	t.Helper()
	seen := map[string]bool{}
	last := map[string]int64{}
	for _, p := range got {
		require.False(t, seen[p.id], "event %s published twice", p.id)
		seen[p.id] = true
		stream, ok := committed[p.id]
		require.True(t, ok, "event %s was published but never committed", p.id)
		require.Equal(t, stream, p.stream)
		require.Equal(t, last[p.stream]+1, p.version, "stream %s: version %d after %d", p.stream, p.version, last[p.stream])
		last[p.stream] = p.version
	}
	for id := range committed {
		require.True(t, seen[id], "committed event %s never published", id)
	}
}

func TestPublishesTheNATSContract(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	res, err := e.store.Append(ctx, "order-42", pgjet.NoStream, cancelled("order-42", 1), cancelled("order-42", 2))
	require.NoError(t, err)
	e.startRelay(t, relay.Config{RegistryURL: "http://registry:8080"})
	waitDrained(t, e.pool, 10*time.Second)

	got := readAll(t, e.js)
	require.Len(t, got, 2)
	m := got[0].msg
	require.Equal(t, "pgjet.events.order.pgjet:demo:order:OrderCancelled.order-42", m.Subject)
	id := res.EventIDs[0].String()
	for k, want := range map[string]string{
		"Nats-Msg-Id": id, "ce-specversion": "1.0", "ce-id": id, "ce-source": "pgjet",
		"ce-type": "pgjet.demo.order.OrderCancelled", "ce-subject": "order-42",
		"ce-datacontenttype": "application/avro", "ce-streamversion": "1",
		"ce-position": strconv.FormatInt(res.Positions[0], 10),
	} {
		require.Equal(t, want, m.Header.Get(k), k)
	}
	schemaID, payload, err := avro.SplitWire(m.Data)
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("http://registry:8080/schemas/ids/%d", schemaID), m.Header.Get("ce-dataschema"))
	_, err = time.Parse(time.RFC3339Nano, m.Header.Get("ce-time"))
	require.NoError(t, err)
	schema, err := e.store.Registry().SchemaByID(ctx, int(schemaID))
	require.NoError(t, err)
	js, err := schema.DecodeJSON(payload)
	require.NoError(t, err)
	require.Contains(t, string(js), `"reason":"order-42 #1"`)
}

// Invariants 1-3 under concurrency: appenders on shared and distinct streams, rolled-back
// and deliberately slow transactions, the relay running all along.
func TestCommittedEqualsPublishedInOrder(t *testing.T) {
	t.Parallel()
	for _, m := range publishModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			testCommittedEqualsPublishedInOrder(t, m)
		})
	}
}

// publishMode is a relay's way of publishing; the invariant tests run with each.
type publishMode struct {
	name          string
	batch, atomic bool // Config.BatchPublish, Config.AtomicPublish
}

var publishModes = []publishMode{{name: "per-stream"}, {name: "batch-publish", batch: true}, {name: "atomic-publish", atomic: true}}

func testCommittedEqualsPublishedInOrder(t *testing.T, m publishMode) {
	ctx := context.Background()
	e := newEnv(t)
	e.startRelay(t, relay.Config{BatchSize: 50, Window: 8, BatchPublish: m.batch, AtomicPublish: m.atomic})

	var mu sync.Mutex
	committed := map[string]string{}
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range 60 {
				stream := fmt.Sprintf("order-%d", rng.IntN(8)) // shared streams
				if w == 0 {
					stream = fmt.Sprintf("order-own%d", i%3) // distinct streams
				}
				evs := []pgjet.EventData{cancelled(stream, i)}
				if rng.IntN(4) == 0 {
					evs = append(evs, cancelled(stream, i+1000))
				}
				tx, err := e.pool.Begin(ctx)
				require.NoError(t, err)
				_, err = e.store.AppendTx(ctx, tx, stream, pgjet.Any, evs...)
				require.NoError(t, err)
				if rng.IntN(6) == 0 {
					time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond) // a slow transaction
				}
				if rng.IntN(7) == 0 {
					require.NoError(t, tx.Rollback(ctx))
					continue
				}
				require.NoError(t, tx.Commit(ctx))
				mu.Lock()
				for _, ev := range evs {
					committed[ev.ID.String()] = stream
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	waitDrained(t, e.pool, 20*time.Second)
	checkExactlyOnceInOrder(t, readAll(t, e.js), committed)
}

// The relay process is SIGKILLed at random points while writers append; after a final
// restart, every committed event is in JetStream exactly once and in stream order.
func TestRelayKilledAndRestarted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=1", "DATABASE_URL="+e.url, "NATS_URL="+e.nurl)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		line, err := bufio.NewReader(out).ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, "ready\n", line)
		return cmd
	}

	var mu sync.Mutex
	committed := map[string]string{}
	writersDone := make(chan struct{})
	go func() {
		defer close(writersDone)
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := range 150 {
					stream := fmt.Sprintf("order-%d", (w*7+i)%20)
					evs := []pgjet.EventData{cancelled(stream, i), cancelled(stream, i+1000)}
					if _, err := e.store.Append(ctx, stream, pgjet.Any, evs...); err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					for _, ev := range evs {
						committed[ev.ID.String()] = stream
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}()

	rng := rand.New(rand.NewPCG(42, 42))
	kills := 0
	for running := true; running; {
		cmd := start()
		// Let it work for a random while: the kill lands mid-read, mid-publish or mid-delete.
		time.Sleep(time.Duration(50+rng.IntN(250)) * time.Millisecond)
		require.NoError(t, cmd.Process.Kill())
		_ = cmd.Wait()
		kills++
		select {
		case <-writersDone:
			running = false
		default:
		}
	}
	cmd := start()
	waitDrained(t, e.pool, 30*time.Second)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), "graceful shutdown on SIGTERM")
	t.Logf("relay killed %d times; %d events committed", kills, len(committed))
	require.GreaterOrEqual(t, kills, 2)
	got := readAll(t, e.js)
	checkExactlyOnceInOrder(t, got, committed)
}

// Every Postgres session of the relay (pool, LISTEN, partition locks) is terminated again and
// again while events flow; the relay recovers by itself and nothing is lost or reordered.
func TestRelaySurvivesDroppedConnections(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	cfg, err := pgxpool.ParseConfig(e.url)
	require.NoError(t, err)
	cfg.ConnConfig.RuntimeParams["application_name"] = "pgjet-relay-under-test"
	relayPool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(relayPool.Close)
	r, err := relay.New(relay.Config{Pool: relayPool, Conn: e.nc, BatchSize: 30, PollInterval: 100 * time.Millisecond})
	require.NoError(t, err)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()

	committed := map[string]string{}
	for i := range 300 {
		stream := fmt.Sprintf("order-%d", i%10)
		ev := cancelled(stream, i)
		_, err := e.store.Append(ctx, stream, pgjet.Any, ev)
		require.NoError(t, err)
		committed[ev.ID.String()] = stream
		if i%40 == 20 {
			_, err := e.pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgjet-relay-under-test'`)
			require.NoError(t, err)
		}
	}
	waitDrained(t, e.pool, 30*time.Second)
	cancel()
	require.NoError(t, <-done)
	checkExactlyOnceInOrder(t, readAll(t, e.js), committed)
}

// An append wakes the relay that owns its partition: with the relay's poll an hour away,
// every append, plain or through group commit, is published within seconds. The wake-up is
// a NOTIFY sent after the append's commit, off the appender's path.
func TestAppendsWakeTheRelay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	startOwnRelay(t, e.url, e.nc, relay.Config{PollInterval: time.Hour})
	waitUntil(t, 10*time.Second, "the relay owns every partition", func() bool { return fairlyShared(partitionHolders(t, e.pool), 1) })
	grouped, err := pgjet.New(pgjet.Config{Pool: e.pool, GroupCommit: true})
	require.NoError(t, err)
	want := uint64(0)
	for i := range 6 {
		store := map[bool]*pgjet.Store{false: e.store, true: grouped}[i%2 == 1]
		stream := fmt.Sprintf("order-wake%d", i) // a new partition, most of the time
		_, err := store.Append(ctx, stream, pgjet.Any, cancelled(stream, i))
		require.NoError(t, err)
		want++
		waitUntil(t, 5*time.Second, fmt.Sprintf("append %d published without a poll", i), func() bool { return streamMsgs(t, e.js) == want })
	}
}

// A relay warns at start when nothing vacuums the outbox, and not when autovacuum runs on
// it. On a shared server with autovacuum off, the test runs on a throwaway cluster of its
// own, so that both cases run wherever the tests do.
func TestWarnsWithoutAutovacuum(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	autovacuum := func(url string) bool {
		conn, err := pgx.Connect(ctx, url)
		require.NoError(t, err)
		defer conn.Close(ctx)
		var on bool
		require.NoError(t, conn.QueryRow(ctx, `SELECT current_setting('autovacuum')::bool`).Scan(&on))
		return on
	}
	url := pgtest.DB(t)
	if !autovacuum(url) {
		t.Log("the shared server runs with autovacuum off; starting one with it on")
		c, err := pgcluster.Start(ctx, pgcluster.Options{})
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Stop(context.Background()) })
		url = c.URL("postgres")
		require.True(t, autovacuum(url), "a throwaway cluster runs autovacuum")
	}
	srv := natstest.Server(t)
	nc, js := natstest.Connect(t, srv)
	e := newEnvOn(t, url, nc, js, srv.ClientURL())
	start := func() *observer.ObservedLogs {
		core, logs := observer.New(zap.WarnLevel)
		r := startOwnRelay(t, e.url, e.nc, relay.Config{Logger: zap.New(core)})
		waitUntil(t, 10*time.Second, "the relay has joined", func() bool { return r.r.Ready() == nil })
		r.stop()
		return logs.FilterMessageSnippet("autovacuum is off for pgjet.outbox")
	}
	require.Zero(t, start().Len(), "autovacuum runs on this server")
	_, err := e.pool.Exec(ctx, `ALTER TABLE pgjet.outbox SET (autovacuum_enabled = off)`)
	require.NoError(t, err)
	require.Equal(t, 1, start().Len())
}

// Without a backlog one worker drains every partition; with one (batches coming back full)
// all of them do, and a second after the last full batch one again. No poll runs here:
// every event moves on its notification, whichever worker a partition has at the time.
func TestWorkersFollowTheBacklog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	committed := map[string]string{}
	appendTo := func(stream string, n int) {
		evs := make([]pgjet.EventData, n)
		for i := range evs {
			evs[i] = cancelled(stream, i)
		}
		res, err := e.store.Append(ctx, stream, pgjet.Any, evs...)
		require.NoError(t, err)
		for _, id := range res.EventIDs {
			committed[id.String()] = stream
		}
	}
	for i := range 40 {
		appendTo(fmt.Sprintf("order-backlog%d", i), 10)
	}
	reg := prometheus.NewRegistry()
	draining := func() float64 { return promtest.Must(t, reg, "pgjet_relay_workers_draining") }
	startOwnRelay(t, e.url, e.nc, relay.Config{Workers: 4, BatchSize: 20, PollInterval: time.Minute, Registerer: reg})
	require.Eventually(t, func() bool { return draining() == 4 }, 10*time.Second, time.Millisecond, "all workers drain the backlog")
	waitDrained(t, e.pool, 10*time.Second)

	// The level drops once a drain finds no backlog for a second; with no poll, only an
	// event makes a drain happen.
	waitUntil(t, 5*time.Second, "one worker once the backlog is gone", func() bool {
		appendTo("order-after", 1)
		waitDrained(t, e.pool, 5*time.Second)
		return draining() == 1
	})
	for i := range 64 { // most partitions: those of every worker at the backlog's level
		appendTo(fmt.Sprintf("order-calm%d", i), 1)
		// One at a time: on a loaded machine rows appended back to back can add up to a
		// full batch, which is a backlog.
		waitDrained(t, e.pool, 5*time.Second)
	}
	require.Equal(t, 1.0, draining())
	checkExactlyOnceInOrder(t, readAll(t, e.js), committed)
}

// A running relay hands a partition over between workers without losing a wake-up. Worker
// 0, alone without a backlog, is held inside a batch of partition p while the level rises
// and p becomes worker 1's. Worker 1, woken by the rise and then by the stream's next event,
// finds p still held and leaves it both times; when worker 0 lets go, it wakes p's worker,
// which publishes the event at once, in order. With the poll a minute away, a lost wake-up
// fails the test.
func TestPartitionHandOverInRunningRelay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	const workers = 4
	stream := ""
	for i := 0; stream == ""; i++ { // a stream of a partition that is not worker 0's at the higher level
		if s := fmt.Sprintf("order-handover%d", i); outbox.PartitionOf(s)%workers == 1 {
			stream = s
		}
	}
	p := outbox.PartitionOf(stream)
	appendOne := func(n int) string {
		res, err := e.store.Append(ctx, stream, pgjet.Any, cancelled(stream, n))
		require.NoError(t, err)
		return res.EventIDs[0].String()
	}

	r, err := relay.New(relay.Config{Pool: e.pool, Conn: e.nc, Workers: workers, PollInterval: time.Minute})
	require.NoError(t, err)
	held, release := make(chan struct{}), make(chan struct{})
	var holding atomic.Bool
	relay.HoldAfterPublish(r, func(parts []int16) {
		if slices.Contains(parts, p) && holding.CompareAndSwap(false, true) {
			close(held)
			<-release
		}
	})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	var released sync.Once
	let := func() { released.Do(func() { close(release) }) }
	t.Cleanup(let) // first: a failed test must not leave worker 0 held
	waitUntil(t, 10*time.Second, "the relay owns every partition", func() bool {
		return r.Ready() == nil && r.Owned() == outbox.Partitions
	})

	first := appendOne(1)
	select {
	case <-held: // worker 0 published the first event and holds p
	case <-time.After(10 * time.Second):
		t.Fatal("the relay did not publish the first event")
	}
	require.Equal(t, workers, relay.RaiseLevel(r), "every worker drains; p is worker 1's")
	waitUntil(t, 10*time.Second, "worker 1, woken by the rise, leaves the partition worker 0 holds", func() bool { return relay.Missed(r, p) })
	relay.ForgetMissed(r, p)
	second := appendOne(2)
	waitUntil(t, 10*time.Second, "worker 1, woken by the event, leaves it too", func() bool { return relay.Missed(r, p) })
	let()

	var got []string
	waitUntil(t, 10*time.Second, "the second event published without waiting for the poll", func() bool {
		got = got[:0]
		for _, m := range readAll(t, e.js) {
			require.Equal(t, int64(len(got)+1), m.version, "the stream's events in version order")
			got = append(got, m.id)
		}
		return len(got) == 2
	})
	require.Equal(t, []string{first, second}, got)
}

// The largest event the store accepts by default, with the most metadata, fits in one
// message of a default NATS server (max_payload 1 MiB): what commits can be published.
// (With a 1 MiB default, an event of 1 MiB less 200 bytes committed and was retried for
// ever.)
func TestLargestDefaultEventIsPublished(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	require.EqualValues(t, 1<<20, e.nc.MaxPayload())
	body := func(note string) pgjet.EventData {
		return pgjet.EventData{ID: uuid.New(), Type: "pgjet.demo.order.OrderPlaced", Data: json.RawMessage(fmt.Sprintf(
			`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","customer_id":"c1","customer_email":"a@b.de",`+
				`"items":[{"sku":"A1","quantity":1,"unit_price_cents":1}],"placed_at":"2026-11-26T10:00:00Z","note":%q}`, note)),
			Metadata: map[string]string{"k": strings.Repeat("m", 16<<10-1)}}
	}
	// The note that makes the data exactly DefaultMaxEventSize bytes of Avro.
	probe := pgjet.DefaultMaxEventSize - 300
	_, err := e.store.Append(ctx, "order-big", pgjet.Any, body(strings.Repeat("x", probe)))
	require.NoError(t, err)
	stored, err := e.store.ReadStream(ctx, "order-big", pgjet.Forward, 1, 1)
	require.NoError(t, err)
	n := probe + pgjet.DefaultMaxEventSize - (len(stored[0].Data) - avro.WireHeaderSize)
	_, err = e.store.Append(ctx, "order-big", pgjet.Any, body(strings.Repeat("x", n+1)))
	require.ErrorIs(t, err, pgjet.ErrTooLarge)
	_, err = e.store.Append(ctx, "order-big", pgjet.Any, body(strings.Repeat("x", n)))
	require.NoError(t, err)
	e.startRelay(t, relay.Config{})
	waitUntil(t, 10*time.Second, "the largest event in JetStream", func() bool { return streamMsgs(t, e.js) == 2 })
}
