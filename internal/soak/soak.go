package soak

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/embednats"
	"github.com/pgjet/pgjet/internal/relay"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

// Config configures a run.
type Config struct {
	// DatabaseURL is an empty (or pgjet-migrated, event-free) database the run owns.
	// Required.
	DatabaseURL string
	// NATSDir is the embedded nats-server's store directory, owned by the run. Required.
	NATSDir string
	// Duration is how long the writers write; longer when some kind of fault has not come
	// up yet by then (by Settle at most). Default 60s.
	Duration time.Duration
	// MaxAppends stops the writers after this many append attempts. Default 20000.
	MaxAppends int
	// Writers is the number of concurrent writers. Default 4.
	Writers int
	// Streams is the number of streams written to. Default 20.
	Streams int
	// Relays is the number of relays, publishing per stream, in batch publishes and in
	// atomic batches in turn. Default 3.
	Relays int
	// Consumers is the number of JetStream consumers recording what they receive. Default 2.
	Consumers int
	// GroupMembers is the number of members of a subscription group that handles events in
	// batches and records them; negative runs no group. Default 2.
	GroupMembers int
	// FaultInterval is the mean pause between faults; negative disables them. Default 1s.
	FaultInterval time.Duration
	// Settle bounds the wait, after writing, for the outbox to drain and the consumers to
	// catch up. Default 60s.
	Settle time.Duration
	// Seed seeds the random choices. Default 1.
	Seed uint64
	// Logf receives progress lines. Default: discard.
	Logf func(format string, args ...any)
	// Logger receives the relays', projector's and group members' own logs, which say
	// what they recovered from and when. Default: none.
	Logger *zap.Logger
}

func (c *Config) setDefaults() {
	c.Duration = cmp.Or(c.Duration, 60*time.Second)
	c.MaxAppends = cmp.Or(c.MaxAppends, 20000)
	c.Writers = cmp.Or(c.Writers, 4)
	c.Streams = cmp.Or(c.Streams, 20)
	c.Relays = cmp.Or(c.Relays, 3)
	c.Consumers = cmp.Or(c.Consumers, 2)
	c.GroupMembers = max(cmp.Or(c.GroupMembers, 2), 0)
	c.FaultInterval = cmp.Or(c.FaultInterval, time.Second)
	c.Settle = cmp.Or(c.Settle, 60*time.Second)
	c.Seed = cmp.Or(c.Seed, 1)
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	c.Logger = cmp.Or(c.Logger, zap.NewNop())
}

func (c *Config) validate() error {
	switch {
	case c.DatabaseURL == "":
		return errors.New("soak: Config.DatabaseURL is required")
	case c.NATSDir == "":
		return errors.New("soak: Config.NATSDir is required")
	}
	// A run without writers, streams, relays or consumers would check nothing, or hang.
	for _, f := range []struct {
		name string
		n    int
	}{{"MaxAppends", c.MaxAppends}, {"Writers", c.Writers}, {"Streams", c.Streams}, {"Relays", c.Relays}, {"Consumers", c.Consumers}} {
		if f.n < 1 {
			return fmt.Errorf("soak: Config.%s must be at least 1 (it is %d)", f.name, f.n)
		}
	}
	return nil
}

// appName prefixes the application_name of every Postgres session of a run, so faults can
// find them.
const appName = "pgjet-soak"

// system is what a run drives: Postgres, nats-server, relays, the read model's projector,
// the subscription group, writers' store.
type system struct {
	cfg   Config
	pool  *pgxpool.Pool // the writers' and the checker's
	store *pgjet.Store
	nats  *embednats.Server
	nc    *nats.Conn // the checker's
	js    jetstream.JetStream
	group *group

	// Faults kill the projector and group members in the middle of a batch through these.
	projectorBatch, memberBatch midBatch

	mu         sync.Mutex
	relays     []*runningRelay
	projector  *runningProjector
	projectors int // instances started so far
}

// Run runs the writers, relays, consumers and faults, then checks the history.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	sys, err := start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer sys.close()
	h := newHistory()
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))

	consumers := make([]*consumer, cfg.Consumers)
	for i := range consumers {
		if consumers[i], err = startConsumer(ctx, sys.js, i); err != nil {
			return nil, err
		}
	}
	defer func() {
		for _, c := range consumers {
			c.stop()
		}
	}()

	writeCtx, stopWriting := context.WithCancel(ctx)
	defer stopWriting()
	var wg sync.WaitGroup
	budget := newBudget(cfg.MaxAppends)
	for w := range cfg.Writers {
		seed := rng.Uint64()
		wg.Go(func() { sys.write(writeCtx, w, seed, budget, h) })
	}
	faults := map[string]int{}
	dealt := make(chan struct{}) // closed once every kind of fault has come up
	if cfg.FaultInterval > 0 {
		seed := rng.Uint64()
		wg.Go(func() { faults = sys.injectFaults(writeCtx, seed, dealt) })
	} else {
		close(dealt)
	}
	wg.Go(func() {
		// Writing lasts Duration, and on a slow machine longer, until every kind of fault
		// has come up once (Settle more at most).
		defer stopWriting()
		select {
		case <-writeCtx.Done():
			return
		case <-time.After(cfg.Duration):
		}
		select {
		case <-writeCtx.Done():
		case <-dealt:
		case <-time.After(cfg.Settle):
		}
	})
	wg.Wait()
	cfg.Logf("writing done: %d appends attempted; settling", budget.used())

	// Heal: every relay running, then wait for the outbox and the consumers.
	if err := sys.healRelays(ctx); err != nil {
		return nil, err
	}
	settleCtx, cancel := context.WithTimeout(ctx, cfg.Settle)
	defer cancel()
	drained := sys.waitDrained(settleCtx)
	last, caughtUp := sys.waitConsumers(settleCtx, consumers)
	projected := sys.waitProjected(settleCtx, last)
	grouped := sys.waitGroup(settleCtx)

	res := &Result{Faults: faults}
	if !drained {
		res.violate("outbox not drained within %s", cfg.Settle)
	}
	if !caughtUp {
		res.violate("consumers did not reach stream sequence %d within %s", last, cfg.Settle)
	}
	if !projected {
		res.violate("the projector did not reach stream sequence %d within %s", last, cfg.Settle)
	}
	if !grouped {
		res.violate("the subscription group was not handed every committed event within %s", cfg.Settle)
	}
	for _, c := range consumers {
		c.stop()
	}
	sys.group.stop()
	if err := check(ctx, sys, h, consumers, res); err != nil {
		return nil, err
	}
	return res, nil
}

func start(ctx context.Context, cfg Config) (*system, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("soak: database URL: %w", err)
	}
	pcfg.ConnConfig.RuntimeParams["application_name"] = appName + "-writer"
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("soak: %w", err)
	}
	sys := &system{cfg: cfg, pool: pool, group: &group{}}
	if err := pgjet.Migrate(ctx, pool); err != nil {
		sys.close()
		return nil, err
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pgjet.events`).Scan(&n); err != nil || n > 0 {
		sys.close()
		return nil, fmt.Errorf("soak: the database must hold no events (it holds %d; error %v)", n, err)
	}
	// Group commit: Append calls of the writers share transactions (AppendTx never does).
	if sys.store, err = pgjet.New(pgjet.Config{Pool: pool, GroupCommit: true}); err != nil {
		sys.close()
		return nil, err
	}
	if _, err := sys.store.Registry().RegisterFS(ctx, demoschemas.Files); err != nil {
		sys.close()
		return nil, err
	}
	if sys.nats, err = embednats.Start(embednats.Options{Dir: cfg.NATSDir, LazySync: true}); err != nil {
		sys.close()
		return nil, err
	}
	if sys.nc, err = connect(sys.nats.ClientURL(), "checker"); err != nil {
		sys.close()
		return nil, err
	}
	if sys.js, err = jetstream.New(sys.nc); err != nil {
		sys.close()
		return nil, err
	}
	// With the settings the relays ask for (batch and atomic publishes), so that no relay
	// updates the stream while the consumers are created: nats-server 2.15.2's file store
	// reads its config without a lock when a consumer is created (fileStore.ConsumerStore
	// against fileStore.UpdateConfig), which -race reports from the embedded server.
	if _, err := relay.EnsureStream(ctx, sys.js, relay.StreamConfig{AllowBatchPublish: true, AllowAtomicPublish: true}); err != nil {
		sys.close()
		return nil, err
	}
	for i := range cfg.Relays {
		r, err := sys.startRelay(ctx, i)
		if err != nil {
			sys.close()
			return nil, err
		}
		sys.relays = append(sys.relays, r)
	}
	sys.mu.Lock()
	err = sys.restartProjector(ctx)
	sys.mu.Unlock()
	if err != nil {
		sys.close()
		return nil, err
	}
	for i := range cfg.GroupMembers {
		m, err := sys.startMember(ctx, i)
		if err != nil {
			sys.close()
			return nil, err
		}
		sys.group.members = append(sys.group.members, m)
	}
	return sys, nil
}

func connect(url, name string) (*nats.Conn, error) {
	nc, err := nats.Connect(url, nats.Name(appName+"-"+name), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		// Faults make asynchronous errors expected; without a handler nats.go prints them.
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		return nil, fmt.Errorf("soak: connecting to NATS: %w", err)
	}
	return nc, nil
}

func (s *system) close() {
	if s.group != nil {
		s.group.stop()
	}
	s.mu.Lock()
	relays := s.relays
	s.relays = nil
	projector := s.projector
	s.projector = nil
	s.mu.Unlock()
	if projector != nil {
		projector.stop()
	}
	for _, r := range relays {
		if r != nil {
			r.stop()
		}
	}
	if s.nc != nil {
		s.nc.Close()
	}
	if s.nats != nil {
		s.nats.Shutdown()
	}
	if s.pool != nil {
		s.pool.Close()
	}
}

// waitDrained polls until the outbox is empty or ctx ends.
func (s *system) waitDrained(ctx context.Context) bool {
	return poll(ctx, func(ctx context.Context) bool {
		var n int
		err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pgjet.outbox`).Scan(&n)
		return err == nil && n == 0
	})
}

// waitConsumers polls until every consumer has seen the stream's last sequence.
func (s *system) waitConsumers(ctx context.Context, cs []*consumer) (uint64, bool) {
	var last uint64
	ok := poll(ctx, func(ctx context.Context) bool {
		st, err := s.js.Stream(ctx, "PGJET_EVENTS")
		if err != nil {
			return false
		}
		info, err := st.Info(ctx)
		if err != nil {
			return false
		}
		last = info.State.LastSeq
		for _, c := range cs {
			if c.lastSeq() < last {
				return false
			}
		}
		return true
	})
	return last, ok
}

// poll checks cond every 50ms until it holds (true) or ctx ends (false). Each check gets a
// context of its own, so that the last one, made after ctx has ended, still asks.
func poll(ctx context.Context, cond func(ctx context.Context) bool) bool {
	check := func() bool {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return cond(cctx)
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for !check() {
		select {
		case <-ctx.Done():
			return check()
		case <-t.C:
		}
	}
	return true
}

// budget hands out at most n append attempts across writers.
type budget struct {
	mu   sync.Mutex
	n, k int
}

func newBudget(n int) *budget { return &budget{n: n} }

func (b *budget) take() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.k >= b.n {
		return false
	}
	b.k++
	return true
}

func (b *budget) used() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.k
}
