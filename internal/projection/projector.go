package projection

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet/internal/avro"
	"github.com/pgjet/pgjet/internal/registry"
)

// Projection is a read model: its tables and how each event changes them.
type Projection struct {
	// Name identifies the projection: its checkpoint and its JetStream consumer
	// ("projection-<name>"). Letters, digits, '-' and '_'.
	Name string
	// Filters are the JetStream subject filters of the events it needs. Default: all.
	Filters []string
	// Setup creates or migrates the read model's tables; it runs at every start, so it
	// must be idempotent. Optional.
	Setup func(ctx context.Context, tx pgx.Tx) error
	// Apply changes the read model for one event, inside the batch's transaction.
	Apply func(ctx context.Context, tx pgx.Tx, ev Event) error
}

// Config configures a Projector.
type Config struct {
	// Pool is the Postgres pool of the read model and the checkpoints. Required.
	Pool *pgxpool.Pool
	// Conn is the NATS connection. Required.
	Conn *nats.Conn
	// Registry decodes payloads. Required.
	Registry *registry.Registry
	// Stream is the JetStream stream of the events. Default "PGJET_EVENTS".
	Stream string
	// Projection is what to keep up to date. Required.
	Projection Projection
	// BatchSize is the most events applied in one transaction. Default 256.
	BatchSize int
	// IdleWait is how long one pull waits for the first event of a batch. Default 5s.
	IdleWait time.Duration
	// AfterCommit, if set, is called with the events of each committed batch (not with
	// skipped redeliveries), after the commit and before the acks.
	AfterCommit func(events []Event)
	// Logger receives structured logs. Default: none.
	Logger *zap.Logger
	// Registerer receives the projector's metrics. Default: none.
	Registerer prometheus.Registerer
	// TracerProvider starts a span per applied event, a child of the span whose trace
	// context the message's traceparent header carries. Default: no tracing.
	TracerProvider trace.TracerProvider
}

var validName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func (c *Config) setDefaults() {
	c.Stream = cmp.Or(c.Stream, "PGJET_EVENTS")
	c.BatchSize = cmp.Or(c.BatchSize, 256)
	c.IdleWait = cmp.Or(c.IdleWait, 5*time.Second)
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
	case c.Projection.Apply == nil:
		return errors.New("projection: Config.Projection.Apply is required")
	case c.BatchSize < 0:
		return errors.New("projection: Config.BatchSize must not be negative")
	}
	return nil
}

// Projector applies events to one projection. Create it with New, start it with Run.
type Projector struct {
	cfg     Config
	js      jetstream.JetStream
	log     *zap.Logger
	metrics *metrics
	tracer  trace.Tracer

	progress atomic.Int64 // unix nanos of the last applied batch or idle pull
}

// New checks cfg and returns a Projector.
func New(cfg Config) (*Projector, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, fmt.Errorf("projection: %w", err)
	}
	m, err := newMetrics(cfg.Registerer, cfg.Projection.Name)
	if err != nil {
		return nil, err
	}
	p := &Projector{cfg: cfg, js: js, log: cfg.Logger.With(zap.String("projection", cfg.Projection.Name)), metrics: m,
		tracer: cfg.TracerProvider.Tracer("github.com/pgjet/pgjet/internal/projection")}
	p.progress.Store(time.Now().UnixNano())
	return p, nil
}

// Stalled returns how long the projector has gone without progress (an applied batch, or a
// pull that found nothing to do) when that exceeds threshold, and 0 otherwise.
func (p *Projector) Stalled(threshold time.Duration) time.Duration {
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
// back as a whole.
func (p *Projector) Run(ctx context.Context) error {
	err := p.run(ctx)
	if ctx.Err() != nil {
		return nil // shut down, possibly while starting
	}
	return err
}

func (p *Projector) run(ctx context.Context) error {
	pr := p.cfg.Projection
	err := pgx.BeginFunc(ctx, p.cfg.Pool, func(tx pgx.Tx) error {
		if pr.Setup != nil {
			if err := pr.Setup(ctx, tx); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO pgjet.checkpoints (name, sequence) VALUES ($1, 0) ON CONFLICT DO NOTHING`, pr.Name)
		return err
	})
	if err != nil {
		return fmt.Errorf("setting up projection %q: %w", pr.Name, err)
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

// lead takes the projection's lock, positions the consumer at the checkpoint and applies
// batches while the lock's session lives.
func (p *Projector) lead(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, p.cfg.Pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connecting the lock session: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, lockClassProjection, p.cfg.Projection.Name).Scan(&got); err != nil {
		return err
	}
	if !got {
		p.log.Info("another projector is active; standing by")
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1, hashtext($2))`, lockClassProjection, p.cfg.Projection.Name); err != nil {
			return err
		}
	}
	p.log.Info("active")
	p.metrics.active.Set(1)
	defer p.metrics.active.Set(0)
	cons, err := p.consumer(ctx)
	if err != nil {
		return err
	}
	p.metrics.pending.setConsumer(cons)
	defer p.metrics.pending.setConsumer(nil)
	backoff := time.Duration(0)
	lastPing := time.Now()
	for ctx.Err() == nil {
		if time.Since(lastPing) > time.Second {
			if err := conn.Ping(ctx); err != nil {
				return fmt.Errorf("lock session lost: %w", err)
			}
			lastPing = time.Now()
		}
		n, err := p.step(ctx, cons)
		if err == nil {
			backoff = 0
			continue
		}
		if ctx.Err() != nil {
			break
		}
		backoff = min(max(2*backoff, 100*time.Millisecond), 10*time.Second)
		p.log.Warn("applying batch failed; retrying", append(eventFields(err),
			zap.Int("events", n), zap.Duration("retry_in", backoff), zap.Error(err))...)
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrNoHeartbeat) {
			if c, cerr := p.consumer(ctx); cerr == nil {
				cons = c
				p.metrics.pending.setConsumer(cons)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
	}
	return nil
}

// consumer (re)creates the durable consumer so that it delivers from the event after the
// checkpoint. The checkpoint in Postgres is the truth; whatever the consumer had pending
// from an earlier, killed projector is dropped instead of waiting out its AckWait.
func (p *Projector) consumer(ctx context.Context) (jetstream.Consumer, error) {
	seq, err := Checkpoint(ctx, p.cfg.Pool, p.cfg.Projection.Name)
	if err != nil {
		return nil, fmt.Errorf("reading checkpoint: %w", err)
	}
	name := ConsumerName(p.cfg.Projection.Name)
	if err := p.js.DeleteConsumer(ctx, p.cfg.Stream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("resetting consumer %q: %w", name, err)
	}
	cfg := jetstream.ConsumerConfig{
		Durable:       name,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   seq + 1,
		AckWait:       30 * time.Second,
		// One batch in flight at a time: a failed batch is redelivered before anything newer.
		MaxAckPending: p.cfg.BatchSize,
		MaxDeliver:    -1,
	}
	switch len(p.cfg.Projection.Filters) {
	case 0:
	case 1:
		cfg.FilterSubject = p.cfg.Projection.Filters[0]
	default:
		cfg.FilterSubjects = p.cfg.Projection.Filters
	}
	cons, err := p.js.CreateOrUpdateConsumer(ctx, p.cfg.Stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("creating consumer %q on %q: %w", name, p.cfg.Stream, err)
	}
	return cons, nil
}

// step fetches one batch and applies it. The first pull waits up to IdleWait for an event;
// the rest of the batch is whatever else is ready at once.
func (p *Projector) step(ctx context.Context, cons jetstream.Consumer) (int, error) {
	first, err := cons.Fetch(1, jetstream.FetchMaxWait(p.cfg.IdleWait))
	if err != nil {
		return 0, err
	}
	var msgs []jetstream.Msg
	for m := range first.Messages() {
		msgs = append(msgs, m)
	}
	if err := first.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
		return 0, err
	}
	if len(msgs) == 0 {
		p.progress.Store(time.Now().UnixNano())
		p.metrics.lag.Set(0) // caught up: nothing waited for the whole pull
		return 0, nil
	}
	if p.cfg.BatchSize > 1 {
		rest, err := cons.FetchNoWait(p.cfg.BatchSize - 1)
		if err == nil {
			for m := range rest.Messages() {
				msgs = append(msgs, m)
			}
		}
	}
	p.countRedeliveries(msgs)
	if err := p.apply(ctx, msgs); err != nil {
		for _, m := range msgs {
			_ = m.Nak()
		}
		return len(msgs), err
	}
	p.progress.Store(time.Now().UnixNano())
	for _, m := range msgs {
		if err := m.Ack(); err != nil {
			// The checkpoint is committed: a redelivery will be skipped.
			p.log.Debug("ack failed; the event will be redelivered and skipped", zap.Error(err))
		}
	}
	return len(msgs), nil
}

// apply applies msgs in one transaction with the checkpoint.
func (p *Projector) apply(ctx context.Context, msgs []jetstream.Msg) error {
	start := time.Now()
	skipped := 0
	var applied []Event
	// The batch commits or rolls back whole even if ctx is cancelled midway.
	txCtx := context.WithoutCancel(ctx)
	err := pgx.BeginFunc(txCtx, p.cfg.Pool, func(tx pgx.Tx) error {
		var checkpoint uint64
		if err := tx.QueryRow(txCtx, `SELECT sequence FROM pgjet.checkpoints WHERE name = $1 FOR UPDATE`,
			p.cfg.Projection.Name).Scan(&checkpoint); err != nil {
			return fmt.Errorf("reading checkpoint: %w", err)
		}
		next := checkpoint
		for _, m := range msgs {
			ev, err := p.decode(txCtx, m)
			if err != nil {
				return err
			}
			if ev.Sequence <= next {
				skipped++
				continue
			}
			spanCtx, span := p.startSpan(txCtx, m, ev)
			err = p.cfg.Projection.Apply(spanCtx, tx, ev)
			endSpan(span, err)
			if err != nil {
				return &applyError{ev: ev, err: err}
			}
			next = ev.Sequence
			applied = append(applied, ev)
		}
		if next == checkpoint {
			return nil
		}
		_, err := tx.Exec(txCtx, `UPDATE pgjet.checkpoints SET sequence = $2, updated_at = now() WHERE name = $1`,
			p.cfg.Projection.Name, next)
		return err
	})
	if err != nil {
		p.metrics.batches.WithLabelValues("error").Inc()
		return err
	}
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
	return nil
}

func (p *Projector) decode(ctx context.Context, m jetstream.Msg) (Event, error) {
	ev, err := parseHeaders(m)
	if err != nil {
		return Event{}, err
	}
	id, payload, err := avro.SplitWire(ev.Raw)
	if err != nil {
		return Event{}, fmt.Errorf("event %s: %w", ev.ID, err)
	}
	ev.SchemaID = int(id)
	schema, err := p.cfg.Registry.SchemaByID(ctx, ev.SchemaID)
	if err != nil {
		return Event{}, fmt.Errorf("event %s: %w", ev.ID, err)
	}
	v, err := schema.Decode(payload)
	if err != nil {
		return Event{}, fmt.Errorf("event %s: %w", ev.ID, err)
	}
	data, ok := v.(map[string]any)
	if !ok {
		return Event{}, fmt.Errorf("event %s: data is %T, not a record", ev.ID, v)
	}
	ev.Data = data
	return ev, nil
}

// Checkpoint returns the JetStream sequence of the last event the projection applied.
func Checkpoint(ctx context.Context, db interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, name string) (uint64, error) {
	var seq uint64
	err := db.QueryRow(ctx, `SELECT sequence FROM pgjet.checkpoints WHERE name = $1`, name).Scan(&seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return seq, err
}
