// Command relay publishes the pgjet outbox to NATS JetStream.
//
//	relay [flags]          run the relay
//	relay migrate [flags]  apply database migrations and exit
//
// Run several relays for more throughput and for fail-over: they share the outbox
// partitions between them.
package main

import (
	"cmp"
	"context"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet/internal/relay"
	"github.com/pgjet/pgjet/internal/service"
	"github.com/pgjet/pgjet/internal/subject"
)

func main() {
	var (
		c                   service.Common
		httpAddr, stream    string
		prefix, source, reg string
		replicas, batch     int
		window, workers     int
		maxBytes            int
		dupWindow, maxAge   time.Duration
		poll, outboxMaxAge  time.Duration
		batchPublish        bool
		atomicPublish       bool
	)
	f := service.NewFlags("relay")
	c.Register(f)
	f.String(&httpAddr, "http-addr", "RELAY_HTTP_ADDR", ":8081", "address of /metrics, /healthz and /readyz")
	f.String(&stream, "stream", "PGJET_STREAM", "PGJET_EVENTS", "JetStream stream name")
	f.String(&prefix, "subject-prefix", "PGJET_SUBJECT_PREFIX", subject.DefaultPrefix, "subject prefix of events")
	f.String(&source, "source", "PGJET_SOURCE", "pgjet", "CloudEvents source (ce-source)")
	f.String(&reg, "registry-url", "PGJET_REGISTRY_URL", "http://localhost:8080", "schema registry base URL for ce-dataschema")
	f.Int(&replicas, "replicas", "PGJET_STREAM_REPLICAS", 1, "JetStream stream replicas (3 in production)")
	f.Duration(&dupWindow, "duplicate-window", "PGJET_DUPLICATE_WINDOW", 2*time.Minute, "JetStream duplicate window")
	f.Duration(&maxAge, "max-age", "PGJET_MAX_AGE", 0, "JetStream retention by age; 0 keeps events forever")
	f.Int(&maxBytes, "max-bytes", "PGJET_MAX_BYTES", 0, "JetStream retention by size, in bytes (oldest events go first); 0: no cap")
	f.Int(&batch, "batch-size", "RELAY_BATCH_SIZE", relay.DefaultBatchSize, "outbox rows read per batch")
	f.Int(&window, "window", "RELAY_WINDOW", 512, "publishes in flight (unacknowledged) per worker")
	f.Bool(&batchPublish, "batch-publish", "RELAY_BATCH_PUBLISH", false, "send a batch whose streams repeat as one ordered batch publish (nats-server 2.14+); see docs/architecture.md for its limit")
	f.Bool(&atomicPublish, "atomic-publish", "RELAY_ATOMIC_PUBLISH", false, "send each batch as atomic batch publishes (nats-server 2.12+): faster where JetStream syncs every message (sync_interval: always); slower, and far slower per event, with its lazy default")
	f.Int(&workers, "workers", "RELAY_WORKERS", 4, "partition-draining workers while the outbox has a backlog (one without)")
	f.Duration(&poll, "poll-interval", "RELAY_POLL_INTERVAL", time.Second, "polling fallback and rebalance interval")
	f.Duration(&outboxMaxAge, "outbox-max-age", "RELAY_OUTBOX_MAX_AGE", time.Minute, "not ready while the oldest unpublished outbox row is older than this")
	f.NonNegative("replicas", "duplicate-window", "max-age", "max-bytes", "batch-size", "window", "workers")
	f.Positive("poll-interval", "outbox-max-age")
	f.NoArgs("relay [migrate] [flags]")

	args := os.Args[1:]
	migrateOnly := len(args) > 0 && args[0] == "migrate"
	if migrateOnly {
		args = args[1:]
	}
	service.Main("relay", &c, f, args, func(ctx context.Context, log *zap.Logger) error {
		pg, err := c.OpenMigrated(ctx, log)
		if err != nil {
			return err
		}
		defer pg.Close(context.WithoutCancel(ctx))
		if migrateOnly {
			return nil
		}
		nc, err := c.ConnectNATS(ctx, "pgjet-relay", log)
		if err != nil {
			return err
		}
		defer nc.Close()
		scheme, err := subject.New(prefix)
		if err != nil {
			return err
		}
		ops := service.NewOps(log)
		r, err := relay.New(relay.Config{
			Pool: pg.Pool, Conn: nc.Conn, Source: source, RegistryURL: reg,
			Stream: relay.StreamConfig{Name: stream, Subjects: scheme, Replicas: replicas, DuplicateWindow: dupWindow, MaxAge: maxAge,
				MaxBytes: int64(cmp.Or(maxBytes, -1))},
			BatchSize: batch, Window: window, Workers: workers, PollInterval: poll, BatchPublish: batchPublish, AtomicPublish: atomicPublish,
			Logger: log, Registerer: ops.Registry,
		})
		if err != nil {
			return err
		}
		ops.Track(pg, nc)
		js, err := jetstream.New(nc.Conn)
		if err != nil {
			return err
		}
		ops.Registry.MustRegister(relay.NewOutboxCollector(pg.Pool, 0), relay.NewStreamCollector(js, stream))
		ops.AddCheck("partitions", func(context.Context) error { return r.Ready() })
		ops.AddCheck("outbox", service.OutboxAgeCheck(pg, outboxMaxAge))
		return service.RunAll(ctx, func(ctx context.Context) error { return r.Run(ctx) },
			func(ctx context.Context) error { return service.Serve(ctx, httpAddr, ops.Mux, log) })
	})
}
