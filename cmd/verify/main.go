// Command verify compares the JetStream events stream with Postgres, the source of truth,
// and reports events missing from JetStream, duplicated, out of stream order, or published
// without a committed event. With -repair it re-publishes the missing events from Postgres.
//
//	verify [flags]          check; exit status 1 when something is wrong
//	verify -repair [flags]  check, re-publish what is missing, check again
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet/internal/service"
	"github.com/pgjet/pgjet/internal/subject"
	"github.com/pgjet/pgjet/internal/verify"
)

func main() {
	var (
		c              service.Common
		stream, prefix string
		source, reg    string
		repair, list   bool
		from           int
	)
	f := service.NewFlags("verify")
	c.Register(f)
	f.String(&stream, "stream", "PGJET_STREAM", "PGJET_EVENTS", "JetStream stream name")
	f.String(&prefix, "subject-prefix", "PGJET_SUBJECT_PREFIX", subject.DefaultPrefix, "subject prefix of events")
	f.String(&source, "source", "PGJET_SOURCE", "pgjet", "CloudEvents source (ce-source) of re-published events")
	f.String(&reg, "registry-url", "PGJET_REGISTRY_URL", "http://localhost:8080", "schema registry base URL for ce-dataschema")
	f.Int(&from, "from-position", "VERIFY_FROM_POSITION", 0, "check only events at or after this global position")
	f.Bool(&repair, "repair", "VERIFY_REPAIR", false, "re-publish events missing from JetStream")
	f.Bool(&list, "list", "VERIFY_LIST", true, "print every event involved in a violation")

	service.Main("verify", &c, f, os.Args[1:], func(ctx context.Context, log *zap.Logger) error {
		pg, err := c.OpenMigrated(ctx, log)
		if err != nil {
			return err
		}
		defer pg.Close(context.WithoutCancel(ctx))
		nc, err := c.ConnectNATS(ctx, "pgjet-verify", log)
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc.Conn)
		if err != nil {
			return err
		}
		scheme, err := subject.New(prefix)
		if err != nil {
			return err
		}
		cfg := verify.Config{
			Pool: pg.Pool, JetStream: js, Stream: stream, Subjects: scheme,
			Source: source, RegistryURL: reg, FromPosition: int64(from),
		}
		rep, err := verify.Check(ctx, cfg)
		if err != nil {
			return err
		}
		printReport(rep, list)
		if repair && len(rep.Missing) > 0 {
			n, err := verify.Repair(ctx, cfg, rep.Missing)
			fmt.Printf("re-published %d of %d missing events\n", n, len(rep.Missing))
			if err != nil {
				return err
			}
			if rep, err = verify.Check(ctx, cfg); err != nil {
				return err
			}
			printReport(rep, list)
		}
		if !rep.OK() {
			return fmt.Errorf("JetStream differs from Postgres: %s", rep)
		}
		return nil
	})
}

func printReport(rep *verify.Report, list bool) {
	fmt.Println(rep)
	if !list {
		return
	}
	for _, g := range []struct {
		name   string
		events []verify.Event
	}{{"missing", rep.Missing}, {"duplicate", rep.Duplicates}, {"out of order", rep.OutOfOrder}, {"unexpected", rep.Unexpected}} {
		for _, e := range g.events {
			fmt.Printf("  %s: %s\n", g.name, e)
		}
	}
}
