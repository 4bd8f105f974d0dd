// Command demo runs pgjet end to end on one machine: the writer's HTTP API, a relay and the
// orders projector, in one process, on an embedded NATS server (or NATS_URL's) and a fresh
// pgjet_demo database. It appends generated shop orders, shows them flowing, and prints a
// summary. It only touches what is named for it: the pgjet_demo database and the
// PGJET_DEMO stream, both re-created at each run and left for a look afterwards.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/pgjet/pgjet/internal/demo"
	"github.com/pgjet/pgjet/internal/service"
)

func main() {
	var (
		c                     service.Common
		orders, rate, clients int
	)
	f := service.NewFlags("demo")
	c.LogLevel = "warn" // a tool's default: its output is the report, not the log
	c.Register(f)
	f.Int(&orders, "orders", "DEMO_ORDERS", 2000, "orders to generate (about 2.7 events each)")
	f.Int(&rate, "rate", "DEMO_RATE", 1000, "target append rate, events per second")
	f.Int(&clients, "clients", "DEMO_CLIENTS", 8, "concurrent HTTP clients")
	service.Main("demo", &c, f, os.Args[1:], func(ctx context.Context, log *zap.Logger) error {
		dir := filepath.Join(c.DataDir, "demo")
		if err := os.RemoveAll(filepath.Join(dir, "nats")); err != nil {
			return err
		}
		pg, err := service.OpenFresh(ctx, c.DatabaseURL, dir, "pgjet_demo", 32, log)
		if err != nil {
			return err
		}
		defer pg.Close(context.WithoutCancel(ctx))
		demoNATS := c
		demoNATS.DataDir = dir
		nc, err := demoNATS.ConnectNATS(ctx, "pgjet-demo", log)
		if err != nil {
			return err
		}
		defer nc.Close()

		fmt.Printf("pgjet demo: %d orders at %d events/s through the HTTP writer -> Postgres outbox -> relay -> JetStream -> projector\n", orders, rate)
		fmt.Printf("  Postgres %s   NATS %s\n", service.RedactDSN(pg.URL), service.RedactNATSURL(nc.URL))
		s, err := demo.Run(ctx, demo.Config{Pool: pg.Pool, Conn: nc.Conn, Orders: orders, Rate: rate, Clients: clients, Progress: os.Stdout, Logger: log})
		if err != nil {
			return err
		}
		fmt.Printf("\nSummary (%s)\n", s.Elapsed.Round(time.Millisecond))
		fmt.Printf("  appended   %6d events for %d orders (%.0f events/s; %d version conflicts)\n", s.Appended, s.Orders, float64(s.Appended)/s.Elapsed.Seconds(), s.Conflicts)
		fmt.Printf("  relayed    %6d to JetStream stream %s, e.g. subject %s\n", s.Relayed, demo.Stream, s.SampleSubject)
		fmt.Printf("  projected  %6d into demo.orders: %s\n", s.Projected, statuses(s.Statuses))
		fmt.Printf("  end-to-end latency, append -> projected: p50 %s   p99 %s   max %s   (first %s, warming up: max %s)\n", ms(s.P50), ms(s.P99), ms(s.Max), s.WarmUp, ms(s.WarmUpMax))
		if s.Relayed != s.Appended || s.Projected != s.Appended {
			return fmt.Errorf("appended %d but relayed %d and projected %d", s.Appended, s.Relayed, s.Projected)
		}
		return nil
	})
}

func statuses(m map[string]int) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%d %s", v, k))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }
