// Command projector keeps the demo read model (demo.orders) up to date from JetStream.
//
//	projector [flags]               run the projector
//	projector migrate [flags]       apply database migrations and exit
//	projector rebuild [flags] NAME  rebuild projection NAME from the first event beside the
//	                                live one, swap it in, and exit (docs/operations.md,
//	                                "Rebuilding a projection")
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/pgjet/pgjet/internal/demo"
	"github.com/pgjet/pgjet/internal/projection"
	"github.com/pgjet/pgjet/internal/registry"
	"github.com/pgjet/pgjet/internal/service"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

func main() {
	var (
		c           service.Common
		httpAddr    string
		stream      string
		batch       int
		batchTime   time.Duration
		stall       time.Duration
		resume      bool
		lockTimeout time.Duration
		durable     bool
	)
	f := service.NewFlags("projector")
	c.Register(f)
	f.String(&httpAddr, "http-addr", "PROJECTOR_HTTP_ADDR", ":8082", "address of /metrics, /healthz and /readyz")
	f.String(&stream, "stream", "PGJET_STREAM", "PGJET_EVENTS", "JetStream stream name")
	f.Int(&batch, "batch-size", "PROJECTOR_BATCH_SIZE", 256, "events applied per transaction")
	f.Duration(&batchTime, "batch-timeout", "PROJECTOR_BATCH_TIMEOUT", 30*time.Second, "longest a batch may take; a slower one is rolled back and retried (bounds a batch stuck on a Postgres that stopped answering)")
	f.Duration(&stall, "stall-after", "PROJECTOR_STALL_AFTER", time.Minute, "not ready when events wait longer than this without progress")
	f.Bool(&durable, "synchronous-commit", "PROJECTOR_SYNCHRONOUS_COMMIT", false, "wait for each batch's WAL flush (a batch lost in a Postgres crash is applied again either way)")
	f.Bool(&resume, "resume", "PROJECTOR_REBUILD_RESUME", false, "rebuild: continue an interrupted rebuild instead of starting over")
	f.Duration(&lockTimeout, "swap-lock-timeout", "PROJECTOR_SWAP_LOCK_TIMEOUT", 5*time.Second, "rebuild: longest wait for a lock at the swap before catching up and retrying")

	f.NonNegative("batch-size", "swap-lock-timeout")
	f.Positive("stall-after", "batch-timeout")

	args := os.Args[1:]
	cmd := ""
	if len(args) > 0 && (args[0] == "migrate" || args[0] == "rebuild") {
		cmd, args = args[0], args[1:]
	}
	if cmd != "rebuild" {
		f.NoArgs("projector [migrate] [flags], or projector rebuild [flags] NAME")
	} else {
		f.Check(func() error {
			if f.NArg() != 1 {
				return errors.New("usage: projector rebuild [flags] NAME")
			}
			return nil
		})
	}
	service.Main("projector", &c, f, args, func(ctx context.Context, log *zap.Logger) error {
		var name string
		if cmd == "rebuild" {
			if name = f.Arg(0); name != demo.ProjectionName {
				return fmt.Errorf("unknown projection %q; this projector runs %q", name, demo.ProjectionName)
			}
		}
		pg, err := c.OpenMigrated(ctx, log)
		if err != nil {
			return err
		}
		defer pg.Close(context.WithoutCancel(ctx))
		if cmd == "migrate" {
			return nil
		}
		nc, err := c.ConnectNATS(ctx, "pgjet-projector", log)
		if err != nil {
			return err
		}
		defer nc.Close()
		reg, err := registry.New(registry.Config{Pool: pg.Pool})
		if err != nil {
			return err
		}
		cfg := projection.Config{
			Pool: pg.Pool, Conn: nc.Conn, Registry: reg, Upcasters: demoschemas.Upcasters(), Stream: stream,
			Projection: demo.OrdersProjection(), BatchSize: batch, BatchTimeout: batchTime, SynchronousCommit: durable, Logger: log,
		}
		if cmd == "rebuild" {
			return rebuild(ctx, cfg, projection.RebuildOptions{Resume: resume, LockTimeout: lockTimeout})
		}
		tp, err := service.Tracing(ctx, "projector", log)
		if err != nil {
			return err
		}
		defer service.ShutdownTracing(ctx, tp, log)
		ops := service.NewOps(log)
		cfg.Registerer, cfg.TracerProvider = ops.Registry, tp
		p, err := projection.New(cfg)
		if err != nil {
			return err
		}
		ops.Track(pg, nc)
		ops.AddCheck("progress", func(ctx context.Context) error {
			if age := p.Stalled(stall); age > 0 {
				return fmt.Errorf("events have waited %s without progress", age.Round(time.Second))
			}
			return nil
		})
		return service.RunAll(ctx, p.Run,
			func(ctx context.Context) error { return service.Serve(ctx, httpAddr, ops.Mux, log) })
	})
}

// rebuild runs projection.Rebuild, printing its progress to stdout at most once a second.
func rebuild(ctx context.Context, cfg projection.Config, opts projection.RebuildOptions) error {
	name := cfg.Projection.Name
	start := time.Now()
	var last time.Time
	opts.Progress = func(p projection.RebuildProgress) {
		if p.Phase == projection.PhaseCatchingUp && time.Since(last) < time.Second {
			return
		}
		last = time.Now()
		rate := float64(p.Applied) / max(time.Since(start).Seconds(), 0.001)
		fmt.Printf("rebuild %s: %-11s sequence %d of %d, %d events applied (%.0f/s)\n",
			name, p.Phase, p.Checkpoint, p.Head, p.Applied, rate)
	}
	fmt.Printf("rebuild %s: building schema %s beside %s\n", name,
		projection.RebuildSchema(cfg.Projection.Schema), cfg.Projection.Schema)
	seq, err := projection.Rebuild(ctx, cfg, opts)
	if err != nil {
		return err
	}
	fmt.Printf("rebuild %s: done in %s; %s serves the rebuilt model, the live projector goes on after sequence %d\n",
		name, time.Since(start).Round(time.Millisecond), cfg.Projection.Schema, seq)
	return nil
}
