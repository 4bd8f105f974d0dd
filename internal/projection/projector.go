package projection

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet/internal/avro"
	"github.com/pgjet/pgjet/internal/evolve"
	"github.com/pgjet/pgjet/internal/registry"
	"github.com/pgjet/pgjet/subscription"
)

// Projection is a read model: its tables and how each event changes them.
type Projection struct {
	// Name identifies the projection: its checkpoint and its JetStream consumer
	// ("projection-<name>"). Letters, digits, '-' and '_'.
	Name string
	// Filters are the JetStream subject filters of the events it needs. Default: all.
	Filters []string
	// Schema is the Postgres schema that holds the read model's tables and nothing else:
	// the projector creates it, and runs Setup and Apply with search_path set to it (then
	// public), so they name their tables unqualified. A projection with a Schema can be
	// rebuilt (see Rebuild), which builds a new schema and swaps it in under this name;
	// readers name the tables schema-qualified. Lower-case letters, digits and '_', at
	// most 55 characters. Default: none; search_path is left alone and Rebuild refuses.
	Schema string
	// Setup creates or migrates the read model's tables; it runs at every start, so it
	// must be idempotent. Optional.
	Setup func(ctx context.Context, tx pgx.Tx) error
	// Apply changes the read model for one event, inside the batch's transaction. Each
	// statement it runs is a round trip. Set Apply or Queue, not both. An error or a panic
	// (here, in Queue, a callback or an upcaster) fails the batch: nothing of it commits,
	// and it is retried; a panic also ends the lock's session, and the projector starts
	// over on a new one.
	Apply func(ctx context.Context, tx pgx.Tx, ev Event) error
	// Queue, in place of Apply, adds to b the statements that change the read model for
	// one event. The projector sends the statements of every event of a batch at once,
	// with the checkpoint's move, as one transaction in one round trip, whatever the
	// batch's size. For handlers that only write: a statement cannot depend on what an
	// earlier one returns, though it sees what earlier ones changed.
	// QueuedQuery callbacks (Exec, Query, QueryRow) run as the results arrive. A failing
	// statement, or a callback returning an error, fails the batch, reported for its event,
	// as an error of Apply would: nothing of the batch commits. (With callbacks, a batch
	// commits in a second round trip, after they have all run.)
	Queue func(ctx context.Context, b *pgx.Batch, ev Event) error
}

// Config configures a Projector.
type Config struct {
	// Pool is the Postgres pool of the read model and the checkpoints. Required. A running
	// projector takes one connection out of it for good, the session it holds its lock and
	// applies batches on (the pool opens another in its place).
	Pool *pgxpool.Pool
	// Conn is the NATS connection. Required.
	Conn *nats.Conn
	// Registry decodes payloads. Required.
	Registry *registry.Registry
	// Upcasters move data written with older versions of an event type to newer shapes,
	// so Apply always sees the newest registered version (as pgjet.Store.Decode does).
	// Default: none; events that need an upcaster then fail to decode.
	Upcasters []evolve.Upcaster
	// Stream is the JetStream stream of the events. Default "PGJET_EVENTS".
	Stream string
	// Projection is what to keep up to date. Required.
	Projection Projection
	// BatchSize is the most events applied in one transaction. Default 256.
	BatchSize int
	// IdleWait is how long one pull waits for the first event of a batch. Default 5s.
	IdleWait time.Duration
	// BatchTimeout is the longest one batch may take to apply and commit, the projection's
	// Apply or Queue code and every Postgres round trip included. A batch that takes longer
	// is given up and retried: its session is closed, so it rolls back, unless its commit
	// had reached Postgres already (then the retry finds the checkpoint past it and skips
	// it, and AfterCommit is not called for it). It bounds how long a projector
	// whose Postgres stops answering mid-batch (a network partition, a frozen server) stays
	// stuck, also after ctx is cancelled, and, as the session's
	// idle_in_transaction_session_timeout, how long Postgres keeps such a batch's
	// transaction, and with it the projection's lock, open for a projector it no longer
	// hears from. The retry of a batch that ran out of it holds half as many events, down to
	// one (see fetchSize). Default 30s.
	BatchTimeout time.Duration
	// AfterCommit, if set, is called with the events of each committed batch (not with
	// skipped ones), after the commit.
	AfterCommit func(events []Event)
	// Logger receives structured logs. Default: none.
	Logger *zap.Logger
	// Registerer receives the projector's metrics. Default: none.
	Registerer prometheus.Registerer
	// SynchronousCommit makes each batch's commit wait until Postgres has flushed it to
	// disk. By default it does not wait (synchronous_commit = off for the batch's own
	// transaction): a batch lost in a Postgres crash takes its checkpoint with it, so the
	// projector applies those events again and the read model stays exactly-once; only a
	// read of the lost batch's changes, made before the crash, is undone until then. Set
	// it when something outside the read model acts on what it read there.
	SynchronousCommit bool
	// TracerProvider starts a span per applied event, a child of the span whose trace
	// context the message's traceparent header carries. Default: no tracing.
	TracerProvider trace.TracerProvider
}

var (
	validName   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	validSchema = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,54}$`)
)

func (c *Config) setDefaults() {
	c.Stream = cmp.Or(c.Stream, "PGJET_EVENTS")
	c.BatchSize = cmp.Or(c.BatchSize, 256)
	c.IdleWait = cmp.Or(c.IdleWait, 5*time.Second)
	c.BatchTimeout = cmp.Or(c.BatchTimeout, 30*time.Second)
	c.Logger = cmp.Or(c.Logger, zap.NewNop())
	if c.TracerProvider == nil {
		c.TracerProvider = noop.NewTracerProvider()
	}
}

func (c *Config) validate() error {
	switch {
	case c.Pool == nil:
		return errors.New("projection: Config.Pool is required")
	case c.Conn == nil:
		return errors.New("projection: Config.Conn is required")
	case c.Registry == nil:
		return errors.New("projection: Config.Registry is required")
	case !validName.MatchString(c.Projection.Name):
		return fmt.Errorf("projection: Config.Projection.Name %q must be 1-64 letters, digits, '-' or '_'", c.Projection.Name)
	case c.Projection.Schema != "" && !validSchema.MatchString(c.Projection.Schema):
		return fmt.Errorf("projection: Config.Projection.Schema %q must be 1-55 lower-case letters, digits or '_', not starting with a digit", c.Projection.Schema)
	case reservedSchema(c.Projection.Schema):
		return fmt.Errorf("projection: Config.Projection.Schema %q is shared with others; a projection needs a schema of its own", c.Projection.Schema)
	case (c.Projection.Apply == nil) == (c.Projection.Queue == nil):
		return errors.New("projection: set one of Config.Projection.Apply and Queue")
	case c.BatchSize < 0:
		return errors.New("projection: Config.BatchSize must not be negative")
	case c.IdleWait < 0:
		return errors.New("projection: Config.IdleWait must not be negative")
	case c.BatchTimeout < 0:
		return errors.New("projection: Config.BatchTimeout must not be negative")
	}
	return nil
}

// reservedSchema reports whether schema holds more than a read model, so a rebuild must
// never drop it.
func reservedSchema(schema string) bool {
	return schema == "public" || schema == "pgjet" || schema == "information_schema" || strings.HasPrefix(schema, "pg_")
}

// Projector applies events to one projection. Create it with New, start it with Run.
type Projector struct {
	cfg     Config
	target  target
	js      jetstream.JetStream
	decoder *evolve.Decoder
	log     *zap.Logger
	metrics *metrics
	tracer  trace.Tracer

	progress atomic.Int64 // unix nanos of the last applied batch or idle pull
	standby  atomic.Bool  // waiting for another projector's lock

	// known is the checkpoint as this projector last read or committed it; knownOK is
	// false after a failed batch, when it may be stale. Only the goroutine applying
	// batches uses them.
	known   uint64
	knownOK bool

	// tooSlow is the cause of a batch's context ending at BatchTimeout.
	tooSlow error
	// size is the most events the next batch fetches: BatchSize, or less after a batch
	// that ran out of BatchTimeout (see fetchSize). Only the goroutine applying batches
	// uses it.
	size int
}

// target is where a projector instance keeps its state: the live projection's, or a
// rebuild's.
type target struct {
	checkpoint string // row of pgjet.checkpoints, also the metrics label and the lock key
	consumer   string // durable JetStream consumer
	schema     string // search_path of Setup and Apply; "" leaves it alone
}

// New checks cfg and returns a Projector.
func New(cfg Config) (*Projector, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	pr := cfg.Projection
	return newProjector(cfg, target{checkpoint: pr.Name, consumer: ConsumerName(pr.Name), schema: pr.Schema})
}

// newProjector returns a projector of the checked cfg that keeps its state in t.
func newProjector(cfg Config, t target) (*Projector, error) {
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, fmt.Errorf("projection: %w", err)
	}
	dec, err := evolve.New(cfg.Registry, cfg.Upcasters...)
	if err != nil {
		return nil, fmt.Errorf("projection: Config.Upcasters: %w", err)
	}
	m, err := newMetrics(cfg.Registerer, t.checkpoint)
	if err != nil {
		return nil, err
	}
	p := &Projector{cfg: cfg, target: t, js: js, decoder: dec, log: cfg.Logger.With(zap.String("projection", t.checkpoint)), metrics: m,
		tracer: cfg.TracerProvider.Tracer("github.com/pgjet/pgjet/internal/projection"),
		tooSlow: fmt.Errorf("projection: the batch took longer than Config.BatchTimeout (%s); given up "+
			"(Postgres not answering, or a slow projection: lower BatchSize or raise BatchTimeout)", cfg.BatchTimeout)}
	p.progress.Store(time.Now().UnixNano())
	return p, nil
}

// Stalled returns how long the projector has gone without progress (an applied batch, or a
// pull that found nothing to do) when that exceeds threshold, and 0 otherwise. A standby,
// waiting while another instance is active, is not stalled.
func (p *Projector) Stalled(threshold time.Duration) time.Duration {
	if p.standby.Load() {
		return 0
	}
	since := time.Since(time.Unix(0, p.progress.Load()))
	if since > threshold {
		return since
	}
	return 0
}

// ConsumerName is the durable JetStream consumer a projection reads from.
func ConsumerName(projection string) string { return "projection-" + projection }

// lockClassProjection is the advisory lock class of active projectors: one per projection.
const lockClassProjection int32 = 0x706a0003

// Run sets up the projection, waits to become the projection's only active projector
// (another instance keeps a standby waiting on a Postgres advisory lock), then applies
// events until ctx is cancelled. A batch being applied when ctx ends is finished or rolled
// back as a whole, within Config.BatchTimeout.
func (p *Projector) Run(ctx context.Context) error {
	err := p.run(ctx)
	if ctx.Err() != nil {
		return nil // shut down, possibly while starting
	}
	return err
}

func (p *Projector) run(ctx context.Context) error {
	if err := p.setup(ctx); err != nil {
		return err
	}
	for ctx.Err() == nil {
		if err := p.lead(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("projector lost its lead or failed; starting over", zap.Error(err))
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

// setup creates the target's schema, runs the projection's Setup in it and creates the
// checkpoint row, in one transaction.
func (p *Projector) setup(ctx context.Context) error {
	pr := p.cfg.Projection
	err := pgx.BeginFunc(ctx, p.cfg.Pool, func(tx pgx.Tx) error {
		if p.target.schema != "" {
			if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{p.target.schema}.Sanitize()); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, setSearchPath, p.target.schema, true); err != nil {
				return err
			}
		}
		if pr.Setup != nil {
			if err := pr.Setup(ctx, tx); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO pgjet.checkpoints (name, sequence) VALUES ($1, 0) ON CONFLICT DO NOTHING`, p.target.checkpoint)
		return err
	})
	if err != nil {
		return fmt.Errorf("setting up projection %q: %w", p.target.checkpoint, err)
	}
	return nil
}

// setSearchPath points search_path at the schema $1, then public: for the transaction
// when $2 is true, for the session otherwise.
const setSearchPath = `SELECT set_config('search_path', quote_ident($1) || ', public', $2)`

// lead takes the projection's lock, positions the consumer at the checkpoint and applies
// batches on the lock's session while it lives.
func (p *Projector) lead(ctx context.Context) error {
	conn, err := p.session(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, lockClassProjection, p.target.checkpoint).Scan(&got); err != nil {
		return err
	}
	if !got {
		p.log.Info("another projector is active; standing by")
		p.standby.Store(true)
		_, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1, hashtext($2))`, lockClassProjection, p.target.checkpoint)
		p.progress.Store(time.Now().UnixNano()) // the stall clock starts when it takes over
		p.standby.Store(false)
		if err != nil {
			return err
		}
	}
	p.log.Info("active")
	p.metrics.active.Set(1)
	defer func() {
		// A standby exports no lag: the alert takes the max over instances, and a lag kept
		// from before a demotion would fire while the active instance is caught up.
		p.metrics.active.Set(0)
		p.metrics.lag.Set(0)
	}()
	defer p.metrics.pending.setConsumer(nil)
	var cur *subscription.Cursor // nil: place it at the checkpoint
	placed := false
	backoff := time.Duration(0)
	lastPing := time.Now()
	for ctx.Err() == nil {
		if time.Since(lastPing) > time.Second {
			if err := conn.Ping(ctx); err != nil {
				return fmt.Errorf("lock session lost: %w", err)
			}
			lastPing = time.Now()
		}
		var (
			n   int
			err error
		)
		if cur == nil { // at the start, and whatever went wrong: read on from the checkpoint
			if cur, err = p.place(ctx, placed); err != nil && ctx.Err() == nil {
				p.metrics.readErrors.Inc()
			}
			placed = placed || err == nil
		}
		if err == nil {
			n, err = p.step(ctx, conn, cur)
		}
		if err == nil {
			backoff = 0
			continue
		}
		cur = nil
		if ctx.Err() != nil {
			break
		}
		if conn.IsClosed() {
			return fmt.Errorf("session lost: %w", err)
		}
		backoff = min(max(2*backoff, 100*time.Millisecond), maxBackoff)
		switch {
		case errors.Is(err, subscription.ErrGap):
			p.log.Info("deliveries lost in flight; reading on from the checkpoint", zap.Error(err), zap.Duration("retry_in", backoff))
		case n == 0: // nothing was fetched
			p.log.Warn("reading events failed; retrying", zap.Duration("retry_in", backoff), zap.Error(err))
		default:
			p.log.Warn("applying batch failed; retrying", append(eventFields(err),
				zap.Int("events", n), zap.Duration("retry_in", backoff), zap.Error(err))...)
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
	}
	return nil
}

// session returns the connection a projector holds its lock on and applies batches on: a
// connection of the pool (so it has whatever the pool's AfterConnect gives its
// connections), taken out of it for good. Its search_path is the target's schema (then
// public) and, unless SynchronousCommit, its commits do not wait for the WAL flush, for the
// whole session: so its statements are prepared where Setup put the tables, and a batch
// needs no settings of its own. Postgres ends the session when it is left idle too long,
// in a transaction or not (inTransactionTimeout, idleTimeout), which frees the lock of a
// projector cut off from it.
func (p *Projector) session(ctx context.Context) (*pgx.Conn, error) {
	pc, err := p.cfg.Pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting the projector's session: %w", err)
	}
	conn := pc.Hijack()
	// Before the lock is taken, so the session never holds it without the timeouts.
	idle := strconv.FormatInt(p.idleTimeout().Milliseconds(), 10)
	if _, err := conn.Exec(ctx, `SELECT set_config('idle_session_timeout', $1, false)`, idle); err != nil {
		if conn.IsClosed() {
			return nil, fmt.Errorf("setting up the projector's session: %w", err)
		}
		p.log.Warn("cannot set idle_session_timeout (Postgres 14+) on the projector's session; "+
			"a projector cut off from Postgres keeps the projection's lock until TCP keepalives notice", zap.Error(err))
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT set_config('idle_in_transaction_session_timeout', $1, false)`,
		strconv.FormatInt(p.inTransactionTimeout().Milliseconds(), 10))
	if p.target.schema != "" {
		b.Queue(setSearchPath, p.target.schema, false)
	}
	if !p.cfg.SynchronousCommit {
		b.Queue(`SET synchronous_commit = off`)
	}
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("setting up the projector's session: %w", err)
	}
	return conn, nil
}

// maxBackoff is the longest wait of the active projector after a failure.
const maxBackoff = 10 * time.Second

// idleTimeout is the idle_session_timeout of the projector's session. The active projector
// uses the session at least once a second between batches, and leaves it idle for longer
// only during one pull (up to IdleWait, and a consumer look-up) or one back-off after a
// failure (up to maxBackoff). A projector cut off from Postgres without a TCP reset (a
// network partition, a frozen process) stops using it, and Postgres ends the session after
// idleTimeout, which frees the lock for a standby. Without it the lock stays held until TCP
// keepalives notice, which by default takes hours, and the projection stops. A healthy
// session ended by mistake costs a restart of the lead, nothing more: batches commit only
// on the session that holds the lock.
func (p *Projector) idleTimeout() time.Duration { return 2*maxBackoff + 2*p.cfg.IdleWait }

// inTransactionTimeout is the idle_in_transaction_session_timeout of the projector's
// session: Postgres ends the session, rolling back its transaction and freeing the lock,
// when it waits this long for the next statement of an open transaction. A batch's
// statements come within BatchTimeout of its start; a rebuild's swap transaction also
// waits for pulls of up to max(IdleWait, 5s) between them (see swap).
func (p *Projector) inTransactionTimeout() time.Duration {
	return max(p.cfg.BatchTimeout, p.cfg.IdleWait, 5*time.Second)
}

// consumer creates a cursor that reads the projection's events from the one after the
// checkpoint. The checkpoint in Postgres is the truth: whatever the consumer had delivered
// to an earlier projector is dropped.
func (p *Projector) consumer(ctx context.Context) (*subscription.Cursor, error) {
	seq, id, err := readCheckpoint(ctx, p.cfg.Pool, p.target.checkpoint, false)
	if err != nil {
		return nil, fmt.Errorf("reading checkpoint: %w", err)
	}
	if err := p.inStream(ctx, p.target.checkpoint, seq, id); err != nil {
		return nil, err
	}
	p.known, p.knownOK = seq, true
	return subscription.NewCursor(ctx, p.js, subscription.CursorConfig{
		Stream: p.cfg.Stream, Name: p.target.consumer, Subjects: p.cfg.Projection.Filters,
	}, seq)
}

// readCheckpoint reads checkpoint name: its sequence (0 when there is none yet) and the id
// of the event at it, nil when unknown (see migration 6). forUpdate locks the row.
func readCheckpoint(ctx context.Context, db interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, name string, forUpdate bool) (uint64, *string, error) {
	q := `SELECT sequence, CASE WHEN event_sequence = sequence THEN event_id END FROM pgjet.checkpoints WHERE name = $1`
	if forUpdate {
		q += ` FOR UPDATE`
	}
	var (
		seq uint64
		id  *string
	)
	err := db.QueryRow(ctx, q, name).Scan(&seq, &id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, nil
	}
	return seq, id, err
}

// inStream checks that checkpoint name, at sequence seq with event id (nil: unknown),
// names an event of the stream as it is now. A stream that ends before it
// (ErrCheckpointBeyondStream) or holds another event at it (ErrCheckpointNotInStream) was
// re-created, or lost its newest messages: the messages it numbers at or below seq are not
// the ones applied, and a cursor after seq would skip some events and apply others twice.
// A message removed at seq since (retention, a purge) leaves nothing to compare.
func (p *Projector) inStream(ctx context.Context, name string, seq uint64, id *string) error {
	s, err := p.js.Stream(ctx, p.cfg.Stream)
	if err != nil {
		return fmt.Errorf("looking up stream %q: %w", p.cfg.Stream, err)
	}
	if last := s.CachedInfo().State.LastSeq; last < seq {
		return fmt.Errorf("%w: stream %q ends at sequence %d, checkpoint %q is at %d (see docs/troubleshooting.md, consumer lag)",
			ErrCheckpointBeyondStream, p.cfg.Stream, last, name, seq)
	}
	if id == nil {
		return nil
	}
	msg, err := s.GetMsg(ctx, seq)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return nil
	case err != nil:
		right := "$JS.API.STREAM.MSG.GET." + p.cfg.Stream
		if s.CachedInfo().Config.AllowDirect { // GetMsg then asks any replica
			right = "$JS.API.DIRECT.GET." + p.cfg.Stream
		}
		return fmt.Errorf("reading the message at the checkpoint (sequence %d; NATS right %s): %w", seq, right, err)
	}
	if got := msg.Header.Get(subscription.HeaderID); got != *id {
		return fmt.Errorf("%w: stream %q holds event %q at sequence %d, checkpoint %q was of event %q (see docs/troubleshooting.md, consumer lag)",
			ErrCheckpointNotInStream, p.cfg.Stream, got, seq, name, *id)
	}
	return nil
}

// place creates the cursor at the checkpoint; again (after a failure) counts and logs it
// as a reset.
func (p *Projector) place(ctx context.Context, again bool) (*subscription.Cursor, error) {
	cur, err := p.consumer(ctx)
	if err != nil {
		return nil, err
	}
	p.metrics.checkpoint.Set(float64(p.known)) // not 0 until the first batch after a start
	p.metrics.pending.setConsumer(cur)
	if again {
		p.metrics.resets.Inc()
		p.log.Info("consumer re-created at the checkpoint")
	}
	return cur, nil
}

// reposition re-creates the cursor at the checkpoint after a failure, and counts it.
func (p *Projector) reposition(ctx context.Context) (*subscription.Cursor, error) {
	return p.place(ctx, true)
}

// step fetches one batch and applies it on conn, the projector's session. After an error
// the cursor must not be used again.
func (p *Projector) step(ctx context.Context, conn *pgx.Conn, cur *subscription.Cursor) (int, error) {
	evs, err := cur.Fetch(p.fetchSize(), p.cfg.IdleWait)
	if err != nil {
		if !errors.Is(err, subscription.ErrGap) && ctx.Err() == nil {
			p.metrics.readErrors.Inc() // a gap is counted as a reset
		}
		return 0, err
	}
	if len(evs) == 0 {
		p.progress.Store(time.Now().UnixNano())
		p.metrics.lag.Set(0) // caught up: nothing waited for the whole pull
		return 0, nil
	}
	if err := p.apply(ctx, conn, evs); err != nil {
		return len(evs), err
	}
	p.progress.Store(time.Now().UnixNano())
	return len(evs), nil
}

// apply applies evs on conn, the projector's session, in one transaction with the
// checkpoint. A Queue projection whose checkpoint the projector knows sends the whole
// batch in one round trip (applyPipelined); otherwise, or when the checkpoint has moved,
// the transaction reads the checkpoint first and skips what is applied already (applyTx).
func (p *Projector) apply(ctx context.Context, conn *pgx.Conn, evs []subscription.Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			// A panic in the projection's code (Apply, Queue, a queued statement's callback,
			// an upcaster) fails the batch as an error does, rather than the process, which
			// may run other projections. It may have left a transaction or a pipeline open on
			// the lock's session, so the session goes: nothing of the batch commits, and the
			// projector starts over on a new one, and retries the batch.
			p.log.Error("the projection panicked; its batch is rolled back and retried", zap.Any("panic", r), zap.Stack("stack"))
			p.knownOK = false
			p.metrics.batches.WithLabelValues("error").Inc()
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = conn.Close(cctx)
			cancel()
			err = fmt.Errorf("projection: the batch panicked: %v", r)
		}
	}()
	start := time.Now()
	var (
		applied    []Event
		skipped    int
		checkpoint uint64 // as the long way read it
	)
	// The batch commits or rolls back whole even if ctx is cancelled midway, within
	// BatchTimeout: when that runs out, pgx closes the session (see Config.BatchTimeout).
	txCtx, cancel := context.WithTimeoutCause(context.WithoutCancel(ctx), p.cfg.BatchTimeout, p.tooSlow)
	defer cancel()
	pipelined := p.cfg.Projection.Queue != nil && p.knownOK && evs[0].Sequence > p.known
	if pipelined {
		applied, err = p.applyPipelined(txCtx, conn, evs)
		if errors.Is(err, errCheckpointMoved) {
			p.log.Info("checkpoint moved by someone else; applying the batch the long way", zap.Uint64("expected", p.known))
			pipelined = false
		}
	}
	if !pipelined {
		err = pgx.BeginFunc(txCtx, conn, func(tx pgx.Tx) error {
			var err error
			applied, skipped, checkpoint, err = p.applyTx(txCtx, tx, evs)
			return err
		})
	}
	if err != nil {
		p.knownOK = false
		p.metrics.batches.WithLabelValues("error").Inc()
		if cause := context.Cause(txCtx); cause != nil && !errors.Is(err, cause) {
			err = fmt.Errorf("%w: %w", cause, err)
		}
		if errors.Is(err, p.tooSlow) && len(evs) > 1 {
			p.size = max(1, len(evs)/2)
			p.log.Warn("a batch ran out of BatchTimeout; retrying with smaller batches",
				zap.Int("events", len(evs)), zap.Int("next_batch_size", p.size), zap.Duration("batch_timeout", p.cfg.BatchTimeout))
		}
		return err
	}
	p.known, p.knownOK = max(checkpoint, evs[len(evs)-1].Sequence), true
	if p.size != 0 && time.Since(start) < p.cfg.BatchTimeout/4 {
		p.size *= 2
	}
	p.committed(start, applied, skipped)
	return nil
}

// fetchSize returns the most events the next batch may hold. A batch that ran out of
// BatchTimeout is retried at half its size, down to one event, rather than at the size
// that failed, which failed every time when the projection itself is that slow: a big
// batch over many new rows, say, or a read model without an index a burst needs. The size
// doubles again after each batch that took under a quarter of BatchTimeout, up to
// BatchSize, so a projection that stays slow keeps to the size it manages.
func (p *Projector) fetchSize() int {
	if p.size == 0 || p.size >= p.cfg.BatchSize {
		p.size = 0
		return p.cfg.BatchSize
	}
	return p.size
}

// committed records a committed batch in the metrics and tells AfterCommit.
func (p *Projector) committed(start time.Time, applied []Event, skipped int) {
	p.metrics.batches.WithLabelValues("ok").Inc()
	p.metrics.applied.Add(float64(len(applied)))
	p.metrics.skipped.Add(float64(skipped))
	p.metrics.duration.Observe(time.Since(start).Seconds())
	if len(applied) > 0 {
		p.metrics.checkpoint.Set(float64(applied[len(applied)-1].Sequence))
		p.metrics.lag.Set(time.Since(applied[len(applied)-1].Time).Seconds())
		if p.cfg.AfterCommit != nil {
			p.cfg.AfterCommit(applied)
		}
	}
}

// settings queues, for one transaction, the settings the projector's session has for good
// (see session): the target's search_path and, unless SynchronousCommit, a commit that does
// not wait for its WAL flush. applyTx needs them when it runs on another connection (a
// rebuild's swap); on the session they repeat what it has.
func (p *Projector) settings(b *pgx.Batch) {
	if p.target.schema != "" {
		b.Queue(setSearchPath, p.target.schema, true)
	}
	if !p.cfg.SynchronousCommit {
		b.Queue(`SELECT set_config('synchronous_commit', 'off', true)`)
	}
}

// errCheckpointMoved reports that applyPipelined found the checkpoint elsewhere than the
// projector knew it, and changed nothing.
var errCheckpointMoved = errors.New("projection: the checkpoint moved")

// sqlstateCheckpointMoved is what pgjet.move_checkpoint raises (migrations 0005, 0006).
const sqlstateCheckpointMoved = "PJ001"

// applyPipelined applies evs, all after the checkpoint the projector knows, on conn in
// one round trip: one pipeline, one implicit transaction, of the checkpoint's move from
// where the projector knows it to the batch's last event, then every event's queued
// statements (the session has the settings). The move fails when the checkpoint is
// elsewhere; then nothing after it runs, the transaction rolls back, and applyPipelined
// returns errCheckpointMoved.
//
// A statement's QueuedQuery callback runs only once Postgres has run the whole pipeline,
// and an implicit transaction commits whatever the callback says. So when the projection
// queued callbacks, the pipeline opens a transaction instead, committed in a second round
// trip only when every callback accepted its result, and rolled back otherwise.
func (p *Projector) applyPipelined(ctx context.Context, conn *pgx.Conn, evs []subscription.Event) ([]Event, error) {
	b := &pgx.Batch{}
	last := evs[len(evs)-1]
	b.Queue(`SELECT pgjet.move_checkpoint($1, $2, $3, $4)`, p.target.checkpoint, p.known, last.Sequence, eventID(last))
	q := queuedEvents{batch: b, failed: -1}
	for _, d := range evs {
		if err := p.queue(ctx, &q, d); err != nil {
			q.endSpans(nil)
			return nil, err
		}
	}
	if q.callbacks {
		b.QueuedQueries = slices.Insert(b.QueuedQueries, 0, &pgx.QueuedQuery{SQL: "BEGIN"})
	}
	err := conn.SendBatch(ctx, b).Close()
	if q.callbacks {
		err = endTx(ctx, conn, err)
	}
	q.endSpans(err)
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == sqlstateCheckpointMoved {
		return nil, errCheckpointMoved
	}
	if err != nil {
		return nil, q.applyError(err)
	}
	return q.applied, nil
}

// endTx ends the transaction a pipeline opened on conn: commits it when the pipeline
// succeeded (err nil), rolls it back otherwise, and returns the pipeline's error or the
// commit's. When the rollback fails, conn is closed, so its transaction cannot commit later.
func endTx(ctx context.Context, conn *pgx.Conn, err error) error {
	if err != nil {
		if !conn.IsClosed() {
			if _, rbErr := conn.Exec(ctx, "ROLLBACK"); rbErr != nil {
				conn.Close(ctx)
			}
		}
		return err
	}
	tag, err := conn.Exec(ctx, "COMMIT")
	if err == nil && tag.String() != "COMMIT" {
		err = fmt.Errorf("committing the batch: %s", tag)
	}
	return err
}

// applyTx applies evs in tx and moves the checkpoint past them; events at or below the
// checkpoint are skipped. It returns the applied events, the number skipped and the
// checkpoint it found.
func (p *Projector) applyTx(ctx context.Context, tx pgx.Tx, evs []subscription.Event) ([]Event, int, uint64, error) {
	if len(evs) == 0 {
		return nil, 0, 0, nil
	}
	// The transaction's settings, the checkpoint and its move past the batch, in one round
	// trip. The move is right whatever the checkpoint was: the events above it are applied
	// below, in this transaction, or the transaction fails as a whole.
	b := &pgx.Batch{}
	p.settings(b)
	var checkpoint uint64
	b.Queue(`SELECT sequence FROM pgjet.checkpoints WHERE name = $1 FOR UPDATE`, p.target.checkpoint).QueryRow(func(row pgx.Row) error {
		return row.Scan(&checkpoint)
	})
	last := evs[len(evs)-1]
	b.Queue(`UPDATE pgjet.checkpoints SET sequence = $2, event_id = $3, event_sequence = $2, updated_at = now()
		WHERE name = $1 AND sequence < $2`, p.target.checkpoint, last.Sequence, eventID(last))
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, 0, 0, fmt.Errorf("reading and moving the checkpoint: %w", err)
	}
	var (
		skipped int
		q       = queuedEvents{batch: &pgx.Batch{}, failed: -1}
	)
	for _, d := range evs {
		if d.Sequence <= checkpoint {
			skipped++
			continue
		}
		if p.cfg.Projection.Queue != nil {
			if err := p.queue(ctx, &q, d); err != nil {
				q.endSpans(nil)
				return nil, 0, 0, err
			}
			continue
		}
		ev, err := p.decode(ctx, d)
		if err != nil {
			return nil, 0, 0, err
		}
		spanCtx, span := p.startSpan(ctx, d, ev)
		err = p.cfg.Projection.Apply(spanCtx, tx, ev)
		endSpan(span, err)
		if err != nil {
			return nil, 0, 0, &applyError{ev: ev, err: err}
		}
		q.applied = append(q.applied, ev)
	}
	if q.batch.Len() > 0 {
		err := tx.SendBatch(ctx, q.batch).Close()
		q.endSpans(err)
		if err != nil {
			return nil, 0, 0, q.applyError(err)
		}
	} else {
		q.endSpans(nil)
	}
	return q.applied, skipped, checkpoint, nil
}

// queuedEvents gathers the statements a Queue projection queues for a batch's events.
type queuedEvents struct {
	batch   *pgx.Batch
	applied []Event
	spans   []trace.Span // of the applied events
	failed  int          // the applied event whose statement failed first; -1 for none
	// callbacks: a statement has a QueuedQuery callback of the projection's, which can
	// fail it after Postgres ran it.
	callbacks bool
}

// queue decodes d and queues its statements in q, each failure of which is recorded as
// d's. The event's span stays open until endSpans.
func (p *Projector) queue(ctx context.Context, q *queuedEvents, d subscription.Event) error {
	ev, err := p.decode(ctx, d)
	if err != nil {
		return err
	}
	spanCtx, span := p.startSpan(ctx, d, ev)
	from := q.batch.Len()
	if err := p.cfg.Projection.Queue(spanCtx, q.batch, ev); err != nil {
		endSpan(span, err)
		return &applyError{ev: ev, err: err}
	}
	i := len(q.applied)
	for _, qq := range q.batch.QueuedQueries[from:] {
		inner := qq.Fn
		q.callbacks = q.callbacks || inner != nil
		qq.Fn = func(br pgx.BatchResults) error {
			var err error
			if inner != nil {
				err = inner(br)
			} else {
				_, err = br.Exec()
			}
			if err != nil && q.failed < 0 {
				q.failed = i
			}
			return err
		}
	}
	q.spans = append(q.spans, span)
	q.applied = append(q.applied, ev)
	return nil
}

// endSpans ends the queued events' spans once their statements ran; err goes to the
// failed event's span, or to all when no statement of one failed (a lost connection).
func (q *queuedEvents) endSpans(err error) {
	for i, span := range q.spans {
		if q.failed >= 0 && i != q.failed {
			endSpan(span, nil)
		} else {
			endSpan(span, err)
		}
	}
}

// applyError reports the failure of a batch's queued statements for the event whose
// statement failed, when one did.
func (q *queuedEvents) applyError(err error) error {
	if q.failed >= 0 {
		return &applyError{ev: q.applied[q.failed], err: err}
	}
	return fmt.Errorf("applying the batch's queued statements: %w", err)
}

// decode turns a delivered event into the projection's Event, its data in the newest shape.
func (p *Projector) decode(ctx context.Context, d subscription.Event) (Event, error) {
	ev := Event{ID: d.ID, StreamID: d.StreamID, Version: d.Version, Type: d.Type, Position: d.Position,
		Time: d.Time, Sequence: d.Sequence, Raw: d.Raw}
	id, _, err := avro.SplitWire(ev.Raw)
	if err != nil {
		return Event{}, &applyError{op: "decoding", ev: ev, err: err}
	}
	ev.SchemaID = int(id)
	if ev.Data, err = p.decoder.Decode(ctx, ev.Type, ev.Raw); err != nil {
		return Event{}, &applyError{op: "decoding", ev: ev, err: err}
	}
	return ev, nil
}

// eventID is what a checkpoint at d records of its event: the id, NULL for a message
// without one.
func eventID(d subscription.Event) *string {
	if d.ID == "" {
		return nil
	}
	return &d.ID
}

// Checkpoint returns the JetStream sequence of the last event the projection applied.
func Checkpoint(ctx context.Context, db interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, name string) (uint64, error) {
	seq, _, err := readCheckpoint(ctx, db, name, false)
	return seq, err
}
