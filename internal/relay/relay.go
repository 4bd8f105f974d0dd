package relay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet/internal/outbox"
)

// DefaultBatchSize is Config.BatchSize's default.
const DefaultBatchSize = 2000

// Config configures a Relay.
type Config struct {
	// Pool is the Postgres pool holding the outbox. Required. The relay also opens two
	// dedicated sessions from its config: one for LISTEN, one holding partition locks.
	Pool *pgxpool.Pool
	// Conn is the NATS connection. Required.
	Conn *nats.Conn
	// Stream describes the JetStream stream; the relay creates it at start, or updates it
	// where its settings differ.
	Stream StreamConfig
	// Source is the CloudEvents source of every event. Default "pgjet".
	Source string
	// RegistryURL is the schema registry's base URL, for ce-dataschema. Default
	// "http://localhost:8080".
	RegistryURL string
	// BatchSize is the most outbox rows one worker reads at a time. Default 2000: with a
	// backlog, a batch spans more streams, and since a stream's events are published one
	// at a time, more streams mean more publishes in flight (the bench's relay scenario,
	// 10 events per stream in a row: 2000-row batches relayed 1.2-1.4x as fast as 500-row
	// ones). Without a backlog batches are small anyway.
	BatchSize int
	// Window is the most publishes one worker has in flight. Default 512.
	Window int
	// Workers is how many goroutines drain owned partitions in parallel while the outbox
	// has a backlog (a batch came back full within the last second). Without one, a
	// single worker reads every owned partition: fewer, larger reads on fewer sessions.
	// At 1,000 events/s, commit -> JetStream p99 came out lower than with four workers
	// always draining in 6 of 8 alternating runs (median 2.1 against 2.3 ms). Default 4.
	Workers int
	// PollInterval is how often partitions are checked without a notification, and how
	// often ownership is rebalanced. Default 1s.
	PollInterval time.Duration
	// BatchPublish sends a batch in which a stream has several events as one ordered
	// batch publish (nats-server 2.14 and later; fast-ingest, "gap: fail"), every event in
	// flight at once, instead of one event per stream at a time. Faster when few streams
	// are hot, but it trusts the server to end a batch at the first message it does not
	// store, and nats-server 2.15 does not when a message's disk write fails: see
	// docs/architecture.md, invariant 2. Default off.
	BatchPublish bool
	// AtomicPublish sends each batch as atomic batch publishes of up to 1,000 events
	// (nats-server 2.12 and later), which the server stores whole or not at all, with one
	// disk sync per batch where it syncs every message (sync_interval: always): there it
	// publishes more events per second than one event per stream at a time (8x on one
	// node, 1.5-1.8x on a 3-node cluster in BENCHMARKS.md). Not with the lazy default
	// sync: a single-replica stream syncs each atomic batch to disk anyway, which makes
	// it slower, and its latency tens of times higher (13-18 ms against 1 ms). A batch the
	// server does not take is published again per stream. See docs/architecture.md,
	// invariant 2. Not with BatchPublish. Default off.
	AtomicPublish bool
	// PublishTimeout bounds the wait for one publish acknowledgement. Default 5s.
	PublishTimeout time.Duration
	// Logger receives structured logs. Default: none.
	Logger *zap.Logger
	// Registerer receives the relay's metrics. Default: none.
	Registerer prometheus.Registerer
}

func (c *Config) setDefaults() {
	c.Source = cmp.Or(c.Source, "pgjet")
	c.RegistryURL = strings.TrimSuffix(cmp.Or(c.RegistryURL, "http://localhost:8080"), "/")
	c.BatchSize = cmp.Or(c.BatchSize, DefaultBatchSize)
	c.Window = cmp.Or(c.Window, 512)
	c.Workers = cmp.Or(c.Workers, 4)
	c.PollInterval = cmp.Or(c.PollInterval, time.Second)
	c.PublishTimeout = cmp.Or(c.PublishTimeout, 5*time.Second)
	c.Logger = cmp.Or(c.Logger, zap.NewNop())
}

func (c *Config) validate() error {
	switch {
	case c.Pool == nil:
		return errors.New("relay: Config.Pool is required")
	case c.Conn == nil:
		return errors.New("relay: Config.Conn is required")
	case c.BatchPublish && c.AtomicPublish:
		return errors.New("relay: Config.BatchPublish and AtomicPublish exclude each other")
	case c.BatchSize < 0 || c.Window < 0 || c.Workers < 0:
		return errors.New("relay: Config.BatchSize, Window and Workers must not be negative")
	case c.PollInterval < 0 || c.PublishTimeout < 0:
		return errors.New("relay: Config.PollInterval and PublishTimeout must not be negative")
	case c.Workers > outbox.Partitions:
		return fmt.Errorf("relay: Config.Workers must be at most %d (the number of partitions)", outbox.Partitions)
	}
	return nil
}

// Relay publishes the outbox to JetStream. Create it with New and start it with Run.
type Relay struct {
	cfg     Config
	js      jetstream.JetStream
	owner   *owner
	log     *zap.Logger
	metrics *metrics
	wake    []chan struct{} // one per worker

	// level is how many workers drain: 1 without a backlog, Workers with one. Worker w
	// drains the owned partitions p with p % level == w. lastFull is when a batch last came
	// back full (UnixNano).
	level    atomic.Int32
	lastFull atomic.Int64
	// parts keeps a partition to one worker at a time while level changes hands it over.
	parts partitionClaims
	// held are the streams left out of reads after their publish failed; see minHold.
	held heldStreams

	// ordered is set when BatchPublish is on and the stream takes fast-ingest batches:
	// publishOrdered then pipelines every event of a batch; otherwise publish sends one
	// event per stream at a time.
	ordered atomic.Bool
	// atomic is set when AtomicPublish is on and the stream takes atomic batches: batches
	// then go through publishAtomic.
	atomic atomic.Bool
	// atomicSize is the most events in one atomic batch (see publishAtomic).
	atomicSize atomic.Int32

	// rebalanced holds the outcome of the latest rebalance (a nil error when it worked);
	// nil before the first one. Read by Ready.
	rebalanced atomic.Pointer[error]

	// published, set only by tests before Run, is called after each publish of a batch of
	// the partitions parts, before its rows are deleted and the partitions released.
	published func(parts []int16)
}

// New checks cfg and returns a Relay.
func New(cfg Config) (*Relay, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := cfg.Stream.setDefaults(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(cfg.Conn,
		jetstream.WithPublishAsyncMaxPending(cfg.Window*cfg.Workers),
		jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout))
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	r := &Relay{
		cfg: cfg, js: js, log: cfg.Logger, metrics: m,
		owner: newOwner(cfg.Pool.Config().ConnConfig.Copy(), cfg.PollInterval, cfg.Logger),
	}
	for range cfg.Workers {
		r.wake = append(r.wake, make(chan struct{}, 1))
	}
	r.level.Store(1)
	r.atomicSize.Store(atomicBatchSize)
	m.workers.Set(1)
	r.held.count = func(n int) { m.held.Set(float64(n)) }
	return r, nil
}

// Run ensures the JetStream stream, then relays until ctx is cancelled. In-flight batches
// finish publishing before it returns; partition locks are released on return.
func (r *Relay) Run(ctx context.Context) error {
	sc := r.cfg.Stream
	sc.AllowBatchPublish = sc.AllowBatchPublish || r.cfg.BatchPublish
	sc.AllowAtomicPublish = sc.AllowAtomicPublish || r.cfg.AtomicPublish
	s, err := r.ensureStream(ctx, sc)
	if err != nil {
		if ctx.Err() != nil {
			return nil // shut down while starting
		}
		return err
	}
	switch {
	case !r.cfg.BatchPublish:
	case s.CachedInfo().Config.AllowBatchPublish:
		r.ordered.Store(true)
	default:
		r.log.Warn("the JetStream stream does not take batch publishes (nats-server before 2.14?); publishing one event per stream at a time")
	}
	switch {
	case !r.cfg.AtomicPublish:
	case s.CachedInfo().Config.AllowAtomicPublish:
		r.atomic.Store(true)
	default:
		r.log.Warn("the JetStream stream does not take atomic batch publishes (nats-server before 2.12, or its persist mode is async); publishing one event per stream at a time")
	}
	defer r.owner.close(context.WithoutCancel(ctx))
	r.warnWithoutAutovacuum(ctx)

	var wg sync.WaitGroup
	wg.Go(func() { r.listen(ctx) })
	wg.Go(func() { r.rebalanceLoop(ctx) })
	for w := range r.cfg.Workers {
		wg.Go(func() { r.work(ctx, w) })
	}
	wg.Wait()
	// A relay that has stopped owns no partition and holds back no stream: gauges left at
	// their last values would say otherwise for as long as the process lives.
	r.metrics.owned.Set(0)
	r.held.keep(nil)
	return nil
}

// ensureStream runs EnsureStream holding a Postgres transaction lock for the stream, so
// relays starting together do not undo each other's stream settings: without it, a relay
// asking for batch publishes and one asking for atomic ones could both read the stream
// before either updated it, and the later update would take the earlier one's setting away
// (the earlier relay then falling back, or failing every publish its mode needs).
func (r *Relay) ensureStream(ctx context.Context, sc StreamConfig) (jetstream.Stream, error) {
	var s jetstream.Stream
	err := pgx.BeginFunc(ctx, r.cfg.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, lockClassStream, sc.Name); err != nil {
			return fmt.Errorf("relay: locking the stream's settings: %w", err)
		}
		var err error
		s, err = EnsureStream(ctx, r.js, sc)
		return err
	})
	return s, err
}

// autovacuumSQL reports whether autovacuum vacuums the outbox: on for the server and not
// switched off for the table.
const autovacuumSQL = `SELECT current_setting('autovacuum')::bool AND coalesce((
	SELECT option_value::bool FROM pg_class c, pg_options_to_table(c.reloptions)
	WHERE c.oid = 'pgjet.outbox'::regclass AND option_name = 'autovacuum_enabled'), true)`

// warnWithoutAutovacuum logs a warning when nothing vacuums the outbox: the rows the relay
// deletes would pile up in its table and indexes, and every read would step over them.
func (r *Relay) warnWithoutAutovacuum(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var on bool
	if err := r.cfg.Pool.QueryRow(ctx, autovacuumSQL).Scan(&on); err != nil {
		r.log.Debug("cannot tell whether autovacuum runs on the outbox", zap.Error(err))
		return
	}
	if !on {
		r.log.Warn("autovacuum is off for pgjet.outbox: the published rows the relay deletes stay in the table and its indexes, and reads slow down as they pile up; " +
			"turn autovacuum on or run VACUUM pgjet.outbox on a schedule (see pgjet_outbox_dead_rows)")
	}
}

// Owned reports how many partitions this relay owns now.
func (r *Relay) Owned() int { return r.owner.count() }

// Ready reports whether the relay takes part in the relay group: nil once its latest
// rebalance worked, whether it owns partitions or stands by (more relays than partitions),
// and an error before the first rebalance or while its partition-lock session fails.
func (r *Relay) Ready() error {
	last := r.rebalanced.Load()
	switch {
	case last == nil:
		return errors.New("relay has not joined the relay group yet")
	case *last != nil:
		return fmt.Errorf("relay cannot hold partitions: %w", *last)
	}
	return nil
}

func (r *Relay) rebalanceLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.PollInterval)
	defer t.Stop()
	for {
		changed, err := r.owner.rebalance(ctx)
		if err != nil && ctx.Err() == nil {
			r.log.Warn("rebalancing partitions", zap.Error(err))
		}
		r.rebalanced.Store(&err)
		r.metrics.owned.Set(float64(r.owner.count()))
		r.held.keep(r.owner.ownedOf(allPartitions))
		if changed {
			r.wakeAll()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// listen wakes the workers whose partitions got outbox rows. Notifications only cut
// latency: workers also poll, so a lost notification delays but never loses events.
func (r *Relay) listen(ctx context.Context) {
	for ctx.Err() == nil {
		err := r.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("outbox listener failed; polling until it reconnects", zap.Error(err))
		r.wakeAll()
		select {
		case <-ctx.Done():
		case <-time.After(r.cfg.PollInterval):
		}
	}
}

func (r *Relay) listenOnce(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, r.cfg.Pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `LISTEN pgjet_outbox`); err != nil {
		return err
	}
	r.wakeAll() // rows may have arrived while nobody listened
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		for _, part := range strings.Split(n.Payload, ",") {
			p, err := strconv.Atoi(part)
			if err != nil || p < 0 || p >= outbox.Partitions {
				continue
			}
			r.wakePartition(p)
		}
	}
}

func (r *Relay) wakeAll() {
	for w := range r.wake {
		r.wakeWorker(w)
	}
}

// wakePartition wakes the worker that drains partition p at the current level.
func (r *Relay) wakePartition(p int) { r.wakeWorker(p % int(r.level.Load())) }

func (r *Relay) wakeWorker(w int) {
	select {
	case r.wake[w] <- struct{}{}:
	default:
	}
}

// allPartitions are the outbox partitions, 0 to Partitions-1.
var allPartitions = func() []int16 {
	out := make([]int16, outbox.Partitions)
	for p := range out {
		out[p] = int16(p)
	}
	return out
}()

// backlogGrace is how long the relay keeps every worker draining after its last full
// batch.
const backlogGrace = time.Second

// work drains, until ctx ends, the owned partitions p with p % level == w: all of them for
// worker 0 while there is no backlog, a share of them for each worker while there is.
func (r *Relay) work(ctx context.Context, w int) {
	backoff := time.Duration(0)
	poll := time.NewTimer(r.cfg.PollInterval)
	defer poll.Stop()
	for {
		level := int(r.level.Load())
		var mine []int16
		for p := w; p < outbox.Partitions && w < level; p += level {
			mine = append(mine, int16(p))
		}
		n, retryAt, err := r.drain(ctx, mine)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			backoff = min(max(2*backoff, 50*time.Millisecond), 5*time.Second)
			r.log.Warn("draining outbox", zap.Int("worker", w), zap.Duration("retry_in", backoff), zap.Error(err))
		default:
			backoff = 0
		}
		if n == r.cfg.BatchSize && err == nil {
			r.backlog()
			continue // more waiting
		}
		r.settle()
		wait := r.cfg.PollInterval
		switch {
		case backoff > 0:
			wait = backoff
		case !retryAt.IsZero():
			// A held-back stream is read again at its retry time, not at the next poll, which
			// may be far (or an append that happens to wake the worker).
			wait = min(wait, max(time.Until(retryAt), 0))
		}
		poll.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-r.wake[w]:
			if backoff > 0 {
				<-poll.C // errors back off even when woken
			}
		case <-poll.C:
		}
	}
}

// backlog records a full batch and, if one worker drained alone, sets every worker to work.
func (r *Relay) backlog() {
	r.lastFull.Store(time.Now().UnixNano())
	if r.level.Swap(int32(r.cfg.Workers)) != int32(r.cfg.Workers) {
		r.metrics.workers.Set(float64(r.cfg.Workers))
		r.wakeAll()
	}
}

// settle goes back to one worker once no batch has come back full for backlogGrace.
func (r *Relay) settle() {
	level := r.level.Load()
	if level == 1 || time.Since(time.Unix(0, r.lastFull.Load())) < backlogGrace {
		return
	}
	if r.level.CompareAndSwap(level, 1) {
		r.metrics.workers.Set(1)
		r.wakeWorker(0) // the other workers' partitions are its now
	}
}

// partitionClaims are the partitions being drained. When the level changes, a worker may
// be given partitions another is still draining: it leaves them, and the other wakes the
// partitions' new worker when it is done, so that nothing waits for a poll.
type partitionClaims struct {
	mu     sync.Mutex
	busy   [outbox.Partitions]bool
	missed [outbox.Partitions]bool
	// stopped marks the partitions of a batch publish that stopped short: their next batch
	// goes one event per stream at a time, so that an event the server refuses holds back
	// only its own stream.
	stopped [outbox.Partitions]bool
}

// claim marks the partitions of parts that no worker drains as being drained, and returns
// them, and whether one of them follows a batch publish that stopped short.
func (c *partitionClaims) claim(parts []int16) (free []int16, perStream bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range parts {
		if c.busy[p] {
			c.missed[p] = true
			continue
		}
		c.busy[p] = true
		perStream = perStream || c.stopped[p]
		free = append(free, p)
	}
	return free, perStream
}

// release ends the drain of parts, stopped if it ended in errBatchStopped, and returns the
// partitions another worker was given meanwhile.
func (c *partitionClaims) release(parts []int16, stopped bool) (missed []int16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range parts {
		c.busy[p] = false
		c.stopped[p] = stopped
		if c.missed[p] {
			c.missed[p] = false
			missed = append(missed, p)
		}
	}
	return missed
}

// BatchSQL reads the next outbox rows of the partitions in $1, at most $2, with their
// events, leaving out the rows of the held-back streams in $4 (see minHold), whose
// partitions are $3 (both arrays, empty when none is held back: NULL keeps no row). Each
// partition is read through (partition, position) and the heads merged: a single scan in
// position order filtered by partition would walk past every row of the partitions other
// relays own. In a partition with a held-back stream, each row's stream is looked up, so
// the read steps over the held-back stream's waiting rows (about 2 µs a row: 170 ms with
// 100,000 waiting); the other partitions are read as without one. Only the rows kept are
// joined with their events, each looked up on its own (LIMIT 1 keeps the lookup per row
// whatever the planner thinks of the tables: as a plain join, a plan made while
// pgjet.events held two rows walked all of its primary key for every batch). Both lookups
// are a range in position order, not an equality, so that only events_pkey serves them: a
// position equality also fits events_tx_position (tx_id, position) as a condition on its
// second column, and a plan made while the table looked empty took that index, walking all
// of it for every row. (A NOT EXISTS drops its ORDER BY, and its plan did that.)
const BatchSQL = `
	WITH o AS MATERIALIZED (
		SELECT o.position, o.traceparent
		FROM unnest($1::smallint[]) AS p (partition)
		CROSS JOIN LATERAL (
			SELECT ob.position, ob.traceparent FROM pgjet.outbox ob
			WHERE ob.partition = p.partition
			  AND (p.partition <> ALL($3::smallint[]) OR (
				SELECT stream_id FROM pgjet.events
				WHERE position BETWEEN ob.position AND ob.position ORDER BY position LIMIT 1) <> ALL($4::text[]))
			ORDER BY ob.position LIMIT $2) o
		ORDER BY o.position LIMIT $2)
	SELECT o.position, o.traceparent, e.event_id::text, e.stream_id, e.version, e.type, e.schema_id, e.data, e.created_at
	FROM o CROSS JOIN LATERAL (
		SELECT event_id, stream_id, version, type, schema_id, data, created_at FROM pgjet.events
		WHERE position BETWEEN o.position AND o.position ORDER BY position LIMIT 1) e
	ORDER BY o.position`

// IndexPlans keeps BatchSQL on its indexes, for the read's own transaction. The outbox is a
// queue: its rows come and go faster than autovacuum's statistics follow them. With stale
// statistics Postgres read every pending row of each partition through a bitmap and sorted
// them (27-42 ms for 500 rows of 230,000 pending; 3.5 ms on the index), or merged the batch
// with pgjet.events from its first position. And a plan made while the tables were small
// stays: pgx prepares the read, and Postgres keeps the generic plan it switches to after a
// few executions until the tables are analysed again. Made on a young database analysed
// while empty, that plan scanned pgjet.events once per outbox row; with autovacuum off, the
// bench's latency scenario then slowed down as the table grew (commit -> JetStream p50 from
// 1 ms to 30 ms within 15 s at 1,000 events/s).
const IndexPlans = `SELECT set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true),
	set_config('enable_mergejoin', 'off', true), set_config('enable_hashjoin', 'off', true)`

// statementTimeout bounds the outbox read and delete. A connection that died without a
// word (a firewall dropping its state) would otherwise hold the worker, and the partition
// locks it needs, until TCP gives up (about 15 minutes), and keep a stopping relay from
// returning. A read or delete that times out fails the batch: its rows stay, and are
// published again (JetStream drops the copies within its duplicate window).
const statementTimeout = 30 * time.Second

// row is one outbox row joined with its event.
type row struct {
	position    int64
	traceparent *string
	eventID     string
	stream      string
	version     int64
	typ         string
	schemaID    int
	data        []byte
	createdAt   time.Time
}

// drain relays one batch of the owned partitions among mine that no other worker drains,
// leaving out the streams held back, and returns its size and the earliest retry time of
// the streams of those partitions held back now (zero when none is). The error reports a
// batch that failed as a whole, after which the worker backs off.
func (r *Relay) drain(ctx context.Context, mine []int16) (n int, retryAt time.Time, err error) {
	r.owner.mu.RLock()
	defer r.owner.mu.RUnlock()
	parts, perStream := r.parts.claim(r.owner.ownedOf(mine))
	if len(parts) == 0 {
		return 0, time.Time{}, nil
	}
	stopped := false
	defer func() {
		retryAt = r.held.next(parts)
		for _, p := range r.parts.release(parts, stopped) {
			r.wakePartition(int(p))
		}
	}()
	readAt := time.Now()
	skipParts, skipStreams, due := r.held.skip(parts, readAt)
	b := &pgx.Batch{}
	b.Queue(IndexPlans)
	b.Queue(BatchSQL, parts, r.cfg.BatchSize, skipParts, skipStreams)
	rctx, cancel := context.WithTimeout(ctx, statementTimeout)
	defer cancel()
	br := r.cfg.Pool.SendBatch(rctx, b)
	_, err = br.Exec()
	var batch []row
	if err == nil {
		var rows pgx.Rows
		rows, err = br.Query()
		if err == nil {
			batch, err = pgx.CollectRows(rows, func(cr pgx.CollectableRow) (row, error) {
				var x row
				err := cr.Scan(&x.position, &x.traceparent, &x.eventID, &x.stream, &x.version, &x.typ, &x.schemaID, &x.data, &x.createdAt)
				return x, err
			})
		}
	}
	if closeErr := br.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("reading outbox: %w", err)
	}
	if len(batch) == 0 {
		r.held.release(due...) // their rows are gone: another relay published them
		return 0, time.Time{}, nil
	}
	r.metrics.batch.Observe(float64(len(batch)))
	// A batch publish pays off when some stream has several events in the batch; with one
	// event per stream, plain publishes are all in flight at once anyway, and take one round
	// trip where a batch publish takes two. A batch that retries a held-back stream goes per
	// stream too, as the one after a batch publish that stopped short does: the stream failed
	// before, and a batch publish would stop at it, leaving the rest of the batch (and the
	// other streams due, as if retried) for another round; and when its event is the batch's
	// first, the publisher waits PublishTimeout for an acknowledgement the server never sends
	// (jetstreamext 0.3.2), which held up every stream of the worker at each retry.
	// An atomic batch pays off from two events on (one sync for both), and falls back to
	// per-stream publishes itself when it is not taken.
	publish := r.publish
	ordered := r.ordered.Load() && !perStream && !retries(batch, due) && repeatsStream(batch)
	switch {
	case ordered:
		publish = r.publishOrdered
	case r.atomic.Load() && !retries(batch, due) && len(batch) > 1:
		publish = r.publishAtomic
	}
	done, failed, err := publish(ctx, batch, readAt)
	stopped = ordered && len(failed) > 0
	if r.published != nil {
		r.published(parts)
	}
	if len(done) > 0 {
		if err := r.delete(context.WithoutCancel(ctx), parts, done); err != nil {
			return len(batch), time.Time{}, fmt.Errorf("deleting %d published outbox rows: %w", len(done), err)
		}
	}
	if err != nil {
		return len(batch), time.Time{}, err
	}
	return len(batch), time.Time{}, r.holdBack(batch, due, len(done), failed)
}

// holdBack holds back the streams whose publish failed, and releases the streams that were
// due for a retry and did not fail: the batch had their rows, or room for them (another
// relay published them). When nothing was stored and several streams failed, the cause is
// likely no event's own (NATS unreachable, no stream leader, JetStream full): it returns an
// error, and the worker backs off as a whole. So it does when a failed stream cannot be held
// back, maxHeld being held back already: that is an outage too, and nothing else would pace
// the stream's retries (with a batch of its rows waiting, the worker read it again at once).
func (r *Relay) holdBack(batch []row, due []string, stored int, failed []failure) error {
	outage := stored == 0 && len(failed) > 1
	level := zap.WarnLevel
	if outage {
		level = zap.DebugLevel // the worker logs the outage once
	}
	now := time.Now()
	var unheld []failure
	for _, f := range failed {
		x := f.row
		h, ok := r.held.hold(x.stream, outbox.PartitionOf(x.stream), now)
		if !ok {
			unheld = append(unheld, f) // as many streams as maxHeld are held back already
			continue
		}
		r.log.Log(level, "publish failed; holding its stream back, the others go on",
			zap.String("stream", x.stream), zap.String("event_id", x.eventID), zap.Int64("version", x.version),
			zap.Int("failures", h.failures), zap.Time("failing_since", h.since), zap.Duration("retry_in", h.hold), zap.Error(f.err))
	}
	full := len(batch) == r.cfg.BatchSize
	due = slices.DeleteFunc(due, func(s string) bool {
		return slices.ContainsFunc(failed, func(f failure) bool { return f.row.stream == s }) ||
			full && !slices.ContainsFunc(batch, func(x row) bool { return x.stream == s })
	})
	r.held.release(due...)
	if outage {
		x := failed[0].row
		return fmt.Errorf("%d publishes failed and none was stored; first, %s (%s v%d): %w", len(failed), x.eventID, x.stream, x.version, failed[0].err)
	}
	if len(unheld) > 0 {
		x := unheld[0].row
		return fmt.Errorf("%d publishes failed with %d streams held back already; first, %s (%s v%d): %w", len(unheld), maxHeld, x.eventID, x.stream, x.version, unheld[0].err)
	}
	return nil
}

// retries reports whether batch has rows of the held-back streams due, which it retries.
func retries(batch []row, due []string) bool {
	return len(due) > 0 && slices.ContainsFunc(batch, func(x row) bool { return slices.Contains(due, x.stream) })
}

// repeatsStream reports whether some stream has more than one row in batch.
func repeatsStream(batch []row) bool {
	seen := make(map[string]struct{}, len(batch))
	for i := range batch {
		if _, ok := seen[batch[i].stream]; ok {
			return true
		}
		seen[batch[i].stream] = struct{}{}
	}
	return false
}

// DeleteSettings are the settings of the relay's delete, for its own transaction ($1: the
// idle-in-transaction timeout in milliseconds). See delete; enable_seqscan is off for the
// reason given at IndexPlans.
const DeleteSettings = `SELECT set_config('synchronous_commit', 'off', true),
	set_config('idle_in_transaction_session_timeout', $1, true), set_config('enable_seqscan', 'off', true)`

// DeleteSQL deletes the published outbox rows at the positions in $1, of the partitions in
// $2. The partitions add no rows to spare, but make a lookup of each row of any index of
// the outbox: on positions alone, a plan made while the outbox looked empty took
// outbox_partition_position, walking all of it for each delete.
const DeleteSQL = `DELETE FROM pgjet.outbox WHERE position = ANY($1) AND partition = ANY($2)`

// delete removes the published rows at positions, of partitions, in one round trip: the
// settings and the DELETE form one implicit transaction, committed at the batch's end. It
// commits without waiting for the WAL flush: a delete lost in a crash only means the rows
// are published again, and JetStream drops the duplicates, so the relay never waits on an
// fsync. A relay cut off from Postgres in the middle of the batch would leave the
// transaction open, holding the rows' locks and blocking the relay that takes its
// partitions over; Postgres ends it after the owner's idle timeout.
func (r *Relay) delete(ctx context.Context, partitions []int16, positions []int64) error {
	ctx, cancel := context.WithTimeout(ctx, statementTimeout)
	defer cancel()
	b := &pgx.Batch{}
	b.Queue(DeleteSettings, strconv.FormatInt(r.owner.idleTimeout().Milliseconds(), 10))
	b.Queue(DeleteSQL, positions, partitions)
	return r.cfg.Pool.SendBatch(ctx, b).Close()
}
