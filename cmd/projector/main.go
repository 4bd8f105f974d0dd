// Command projector keeps the demo read model (demo.orders) up to date from JetStream.
//
//	projector [flags]          run the projector
//	projector migrate [flags]  apply database migrations and exit
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/pgjet/pgjet/internal/demo"
	"github.com/pgjet/pgjet/internal/projection"
	"github.com/pgjet/pgjet/internal/registry"
	"github.com/pgjet/pgjet/internal/service"
)

func main() {
	var (
		c        service.Common
		httpAddr string
		stream   string
		batch    int
		stall    time.Duration
	)
	f := service.NewFlags("projector")
	c.Register(f)
	f.String(&httpAddr, "http-addr", "PROJECTOR_HTTP_ADDR", ":8082", "address of /metrics, /healthz and /readyz")
	f.String(&stream, "stream", "PGJET_STREAM", "PGJET_EVENTS", "JetStream stream name")
	f.Int(&batch, "batch-size", "PROJECTOR_BATCH_SIZE", 256, "events applied per transaction")
	f.Duration(&stall, "stall-after", "PROJECTOR_STALL_AFTER", time.Minute, "not ready when events wait longer than this without progress")

	args := os.Args[1:]
	migrateOnly := len(args) > 0 && args[0] == "migrate"
	if migrateOnly {
		args = args[1:]
	}
	service.Main("projector", &c, f, args, func(ctx context.Context, log *zap.Logger) error {
		pg, err := c.OpenMigrated(ctx, log)
		if err != nil {
			return err
		}
		defer pg.Close(context.WithoutCancel(ctx))
		if migrateOnly {
			return nil
		}
		nc, err := service.ConnectNATS(ctx, c.NATSURL, c.DataDir, "pgjet-projector", log)
		if err != nil {
			return err
		}
		defer nc.Close()
		reg, err := registry.New(registry.Config{Pool: pg.Pool})
		if err != nil {
			return err
		}
		tp, err := service.Tracing(ctx, "projector", log)
		if err != nil {
			return err
		}
		defer service.ShutdownTracing(ctx, tp, log)
		ops := service.NewOps(log)
		p, err := projection.New(projection.Config{
			Pool: pg.Pool, Conn: nc.Conn, Registry: reg, Stream: stream,
			Projection: demo.OrdersProjection(), BatchSize: batch,
			Logger: log, Registerer: ops.Registry, TracerProvider: tp,
		})
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
