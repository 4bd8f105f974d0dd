// Command bench measures pgjet on this machine beside the machine's raw ceilings (plain pgx
// inserts, plain JetStream async publishes), measured in the same run, and prints the ratios.
// It uses a fresh pgjet_bench database (-database names another) and an embedded JetStream
// server, or the one at NATS_URL; there it only touches streams named for it (PGJET_BENCH
// and PGJET_BENCH_*), deleted at its start and end.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"

	"go.uber.org/zap"

	"github.com/pgjet/pgjet/internal/bench"
	"github.com/pgjet/pgjet/internal/embednats"
	"github.com/pgjet/pgjet/internal/relay"
	"github.com/pgjet/pgjet/internal/service"
)

func main() {
	var (
		c          service.Common
		syncAlways bool
		dur        time.Duration
		events     int
		rate       int
		cpuprofile string
		rc         relay.Config
		only       string
		db         string
	)
	f := service.NewFlags("bench")
	c.LogLevel = "warn" // a tool's default: its output is the report, not the log
	c.Register(f)
	f.Bool(&syncAlways, "sync-always", "BENCH_SYNC_ALWAYS", false, "run the embedded JetStream with sync_interval: always instead of the lazy default")
	f.Duration(&dur, "duration", "BENCH_DURATION", 3*time.Second, "length of each timed append scenario")
	f.Int(&events, "relay-events", "BENCH_RELAY_EVENTS", 50_000, "events moved in the relay scenarios")
	f.Int(&rc.Workers, "relay-workers", "", 0, "relay workers (0: the relay's default)")
	f.Int(&rc.BatchSize, "relay-batch", "", 0, "relay batch size (0: the relay's default)")
	f.Int(&rc.Window, "relay-window", "", 0, "relay publish window (0: the relay's default)")
	f.Int(&rc.Stream.Replicas, "replicas", "", 0, "replicas of the events stream the relay publishes to (with -nats-url at a cluster; 0: 1)")
	f.Bool(&rc.BatchPublish, "relay-batch-publish", "", false, "the relay of the relay, end-to-end and latency scenarios uses ordered batch publishes")
	f.Bool(&rc.AtomicPublish, "relay-atomic-publish", "", false, "the relay of the relay, end-to-end and latency scenarios uses atomic batch publishes (with -sync-always, as deploy/compose runs)")
	f.Int(&rate, "latency-rate", "BENCH_LATENCY_RATE", 1000, "appends per second in the latency scenario")
	f.String(&only, "only", "BENCH_ONLY", "", "run only these scenarios (comma-separated: append, groupcommit, relay, latency, snapshot); default all")
	f.String(&cpuprofile, "cpuprofile", "", "", "write a CPU profile of the whole run to this file")
	f.String(&db, "database", "BENCH_DATABASE", "pgjet_bench", "database to drop, recreate and fill (two runs on one server need two names)")
	service.Main("bench", &c, f, os.Args[1:], func(ctx context.Context, log *zap.Logger) error {
		if syncAlways && c.NATSURL != "" {
			// A server's fsync is its own configuration, not the bench's to choose.
			return errors.New("-sync-always sets the embedded server's fsync; with -nats-url (NATS_URL), set sync_interval in that server's configuration")
		}
		if rc.Stream.Replicas > 1 && c.NATSURL == "" {
			return errors.New("-replicas needs a cluster: the embedded server is one node; give -nats-url (NATS_URL)")
		}
		if rc.BatchPublish && rc.AtomicPublish {
			return errors.New("-relay-batch-publish and -relay-atomic-publish exclude each other")
		}
		if cpuprofile != "" {
			pf, err := os.Create(cpuprofile)
			if err != nil {
				return err
			}
			defer pf.Close()
			if err := pprof.StartCPUProfile(pf); err != nil {
				return err
			}
			defer pprof.StopCPUProfile()
		}
		dir := filepath.Join(c.DataDir, "bench")
		if err := os.RemoveAll(filepath.Join(dir, "nats")); err != nil {
			return err
		}
		pg, err := service.OpenFresh(ctx, c.DatabaseURL, dir, db, 40, log)
		if err != nil {
			return err
		}
		defer pg.Close(context.WithoutCancel(ctx))
		var nc *service.NATS
		mode := "lazy fsync (server default)"
		if c.NATSURL != "" {
			mode = "at " + service.RedactNATSURL(c.NATSURL) + ", its own fsync setting"
			if nc, err = c.ConnectNATS(ctx, "pgjet-bench", log); err != nil {
				return err
			}
		} else {
			ns, err := embednats.Start(embednats.Options{Dir: filepath.Join(dir, "nats"), LazySync: !syncAlways})
			if err != nil {
				return err
			}
			defer ns.Shutdown()
			if nc, err = service.ConnectNATS(ctx, ns.ClientURL(), dir, "pgjet-bench", log); err != nil {
				return err
			}
			if syncAlways {
				mode = "sync_interval: always"
			}
		}
		defer nc.Close()
		cfg := bench.Config{Pool: pg.Pool, Conn: nc.Conn, Duration: dur, RelayEvents: events, LatencyRate: rate, Relay: rc, Out: os.Stdout, JetStreamMode: mode, Only: only}
		if _, err = bench.Run(ctx, cfg); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		if !cfg.Runs("snapshot") {
			return nil
		}
		snap, err := bench.SnapshotLoad(ctx, pg.Pool, 10_000)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		fmt.Println(snap)
		return nil
	})
}
