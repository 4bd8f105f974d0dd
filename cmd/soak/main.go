// Command soak runs pgjet's Jepsen-style checker for a bounded time: concurrent writers
// with random expected versions, relays, recording consumers, a projector and a
// batch-handling subscription group against Postgres and an embedded nats-server, with
// random faults; then it checks the history and prints the
// counts and every violation. It exits with status 1 when it finds one.
//
// It drops and recreates the database named by -database (default pgjet_soak) on the
// server of -database-url.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/pgjet/pgjet/internal/service"
	"github.com/pgjet/pgjet/internal/soak"
)

func main() {
	var (
		c                         service.Common
		db                        string
		duration, faults, settle  time.Duration
		appends, writers, streams int
		relays, consumers, seed   int
		members                   int
	)
	f := service.NewFlags("soak")
	c.Register(f)
	f.String(&db, "database", "SOAK_DATABASE", "pgjet_soak", "database to drop, recreate and use")
	f.Duration(&duration, "duration", "SOAK_DURATION", 60*time.Second, "how long the writers write")
	f.Int(&appends, "appends", "SOAK_APPENDS", 20000, "most append attempts")
	f.Int(&writers, "writers", "SOAK_WRITERS", 4, "concurrent writers")
	f.Int(&streams, "streams", "SOAK_STREAMS", 20, "streams written to")
	f.Int(&relays, "relays", "SOAK_RELAYS", 3, "relays (in turn: per stream, batch publish, atomic publish)")
	f.Int(&consumers, "consumers", "SOAK_CONSUMERS", 2, "recording consumers")
	f.Int(&members, "group-members", "SOAK_GROUP_MEMBERS", 2, "members of the batch-handling subscription group; negative for none")
	f.Duration(&faults, "fault-interval", "SOAK_FAULT_INTERVAL", time.Second, "mean pause between faults; negative disables them")
	f.Duration(&settle, "settle", "SOAK_SETTLE", 60*time.Second, "how long to wait for the outbox to drain and consumers to catch up")
	f.Int(&seed, "seed", "SOAK_SEED", 0, "random seed; 0 picks one from the clock")

	service.Main("soak", &c, f, os.Args[1:], func(ctx context.Context, log *zap.Logger) error {
		pg, err := service.OpenPostgres(ctx, c.DatabaseURL, c.DataDir, c.MaxConns, log)
		if err != nil {
			return err
		}
		defer pg.Close(context.WithoutCancel(ctx))
		url, err := pg.FreshDatabase(ctx, db)
		if err != nil {
			return err
		}
		dir, err := os.MkdirTemp("", "pgjet-soak-nats-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if seed == 0 {
			seed = int(time.Now().UnixNano() & 0x7fffffff)
		}
		log.Info("soak starting", zap.Int("seed", seed), zap.Duration("duration", duration), zap.Int("appends", appends))
		res, err := soak.Run(ctx, soak.Config{
			DatabaseURL: url, NATSDir: dir, Duration: duration, MaxAppends: appends,
			Writers: writers, Streams: streams, Relays: relays, Consumers: consumers, GroupMembers: members,
			FaultInterval: faults, Settle: settle, Seed: uint64(seed),
			Logf: func(format string, args ...any) { log.Info(fmt.Sprintf(format, args...)) },
		})
		if err != nil {
			return err
		}
		fmt.Print(res)
		if !res.OK() {
			return errors.New("the history has violations")
		}
		return nil
	})
}
