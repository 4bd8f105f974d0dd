package pgjet

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet/internal/evolve"
	"github.com/pgjet/pgjet/internal/migrate"
	"github.com/pgjet/pgjet/internal/registry"
)

// Config configures a Store.
type Config struct {
	// Pool is the Postgres pool. Required. Size it for the number of concurrent appends
	// (pgxpool's default is max(4, CPUs)).
	Pool *pgxpool.Pool
	// Logger receives structured logs. Default: no logs.
	Logger *zap.Logger
	// Registerer receives the store's metrics: the append path's (pgjet_append_*), the
	// schema registry's (pgjet_registry_*), the read cache's (pgjet_read_cache_*). Default: none.
	Registerer prometheus.Registerer
	// SchemaTTL bounds how long the newest schema of a type is cached before Postgres is asked
	// again, so a version registered by another process is used within it. Default 1s.
	SchemaTTL time.Duration
	// ReadCacheBytes is the memory, in bytes, ReadStream may use to keep recently read
	// events, per stream, and answer reads from them. A read never returns less than
	// Postgres holds: what a read could miss (events after the newest one cached) is always
	// read from Postgres, in the same single query. 0 turns the cache off. Default 0.
	ReadCacheBytes int64
	// GroupCommit combines concurrent Append calls into shared transactions (one commit, one
	// round trip for many appends), each append keeping its own concurrency check and
	// outcome. It raises throughput with many concurrent writers; with one writer it changes
	// nothing. AppendTx is never grouped. Default false.
	GroupCommit bool
	// GroupCommitMaxBatch caps the appends in one shared transaction. Default 256.
	GroupCommitMaxBatch int
	// GroupCommitConns is how many shared transactions may run at once (each on its own
	// pool connection). Fewer make larger batches: with 32 single-event writers on a
	// 2-core machine, 2 committers wrote about 35 % more than 4. Default 2.
	GroupCommitConns int
	// Upcasters move old versions of event types to newer shapes when events are decoded
	// (Decode, DecodeJSON); see Upcaster. More can be added with Store.Upcast. Default none.
	Upcasters []Upcaster
	// Hooks are domain checks per event type, run in the append path; see Hook. More can be
	// added with Store.Hook. Default none.
	Hooks map[string][]Hook
	// MaxEventsPerAppend caps the events of one append. Default 1000.
	MaxEventsPerAppend int
	// MaxEventSize caps an event's encoded Avro data, in bytes. Default DefaultMaxEventSize;
	// with its headers, an event must fit in one NATS message (the server's max_payload).
	MaxEventSize int
	// MaxMetadataSize caps an event's metadata (keys plus values), in bytes. Default 16 KiB.
	MaxMetadataSize int
}

// DefaultMaxEventSize is the default Config.MaxEventSize: 1 MiB, NATS's default
// max_payload, less 32 KiB for the message's headers (the CloudEvents ones, about 0.5 KB,
// and up to MaxMetadataSize of metadata). A larger event would commit and then never be
// published: the relay would retry it for ever.
const DefaultMaxEventSize = 1<<20 - 32<<10

func (c *Config) setDefaults() {
	c.Logger = cmp.Or(c.Logger, zap.NewNop())
	c.SchemaTTL = cmp.Or(c.SchemaTTL, time.Second)
	c.MaxEventsPerAppend = cmp.Or(c.MaxEventsPerAppend, 1000)
	c.GroupCommitMaxBatch = cmp.Or(c.GroupCommitMaxBatch, 256)
	c.GroupCommitConns = cmp.Or(c.GroupCommitConns, 2)
	c.MaxEventSize = cmp.Or(c.MaxEventSize, DefaultMaxEventSize)
	c.MaxMetadataSize = cmp.Or(c.MaxMetadataSize, 16<<10)
}

func (c *Config) validate() error {
	switch {
	case c.Pool == nil:
		return errors.New("pgjet: Config.Pool is required")
	case c.SchemaTTL < 0:
		return errors.New("pgjet: Config.SchemaTTL must not be negative")
	case c.ReadCacheBytes < 0:
		return errors.New("pgjet: Config.ReadCacheBytes must not be negative")
	case c.GroupCommitMaxBatch < 0 || c.GroupCommitConns < 0:
		return errors.New("pgjet: Config.GroupCommitMaxBatch and GroupCommitConns must not be negative")
	case c.MaxEventsPerAppend < 0:
		return errors.New("pgjet: Config.MaxEventsPerAppend must not be negative")
	case c.MaxEventSize < 0:
		return errors.New("pgjet: Config.MaxEventSize must not be negative")
	case c.MaxMetadataSize < 0:
		return errors.New("pgjet: Config.MaxMetadataSize must not be negative")
	}
	return nil
}

// Store appends and reads events. It is safe for concurrent use.
type Store struct {
	cfg      Config
	pool     *pgxpool.Pool
	registry *registry.Registry
	log      *zap.Logger
	metrics  *storeMetrics
	decoder  *evolve.Decoder // newest-shape decoding, see decode.go
	hooks    *hookSet
	group    *groupCommit // nil without Config.GroupCommit
	reads    *readCache   // see readcache.go
	aggs     *aggMetrics  // Update and aggregate loads, see retry.go
}

// New returns a Store. The database must be migrated (see Migrate).
func New(cfg Config) (*Store, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	reg, err := registry.New(registry.Config{Pool: cfg.Pool, LatestTTL: cfg.SchemaTTL, Registerer: cfg.Registerer})
	if err != nil {
		return nil, err
	}
	m, err := newStoreMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	reads, err := newReadCache(cfg.ReadCacheBytes, cfg.Registerer)
	if err != nil {
		return nil, err
	}
	aggs, err := newAggMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, pool: cfg.Pool, registry: reg, log: cfg.Logger, metrics: m, reads: reads, aggs: aggs}
	if cfg.GroupCommit {
		s.group = &groupCommit{store: s, max: cfg.GroupCommitMaxBatch, conns: cfg.GroupCommitConns}
	}
	if err := s.initEvolution(); err != nil {
		return nil, err
	}
	return s, nil
}

// Registry returns the store's schema registry.
func (s *Store) Registry() *registry.Registry { return s.registry }

// Migrate brings the database's pgjet schema up to date. It is safe to call from several
// processes at once; each migration is applied once.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := migrate.Up(ctx, pool); err != nil {
		return fmt.Errorf("pgjet: migrating: %w", err)
	}
	return nil
}
