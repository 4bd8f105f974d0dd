// Command verify compares the JetStream events stream with Postgres, the source of truth,
// and reports events missing from JetStream, duplicated, out of stream order, or published
// without a committed event. With -repair it re-publishes the missing events from Postgres
// and checks again.
//
//	verify [flags]          check
//	verify -repair [flags]  check, re-publish what is missing, check again
//
// Exit status, as diff's:
//
//	0  JetStream agrees with Postgres; with -repair, also when the repair made it agree
//	   (the repaired events are listed; they sit behind later versions of their streams)
//	1  JetStream differs from Postgres; with -repair, it still differs after the repair
//	   (duplicates, unexpected messages and order violations cannot be repaired)
//	2  bad flags, or the check or the repair could not be done (Postgres or NATS failed,
//	   the stream does not exist, a re-publish was refused)
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet/internal/service"
	"github.com/pgjet/pgjet/internal/subject"
	"github.com/pgjet/pgjet/internal/verify"
)

// Exit statuses besides 0; see the package comment.
const (
	exitDiffers = 1
	exitTrouble = 2
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
	f.Bool(&repair, "repair", "VERIFY_REPAIR", false, "re-publish events missing from JetStream, then check again")
	f.Bool(&list, "list", "VERIFY_LIST", true, "print every event involved in a finding")
	f.Usage = func() {
		fmt.Fprint(f.Output(), `Usage: verify [-repair] [flags]

Compares the JetStream events stream with Postgres; -repair re-publishes the events
JetStream lacks. Exit status: 0 JetStream agrees with Postgres (with -repair: after the
repair), 1 it differs, 2 bad flags or the check or repair could not be done.

`)
		f.PrintDefaults()
	}

	service.Main("verify", &c, f, os.Args[1:], func(ctx context.Context, log *zap.Logger) error {
		pg, err := c.OpenMigrated(ctx, log)
		if err != nil {
			return &service.ExitError{Code: exitTrouble, Err: err}
		}
		defer pg.Close(context.WithoutCancel(ctx))
		nc, err := c.ConnectNATS(ctx, "pgjet-verify", log)
		if err != nil {
			return &service.ExitError{Code: exitTrouble, Err: err}
		}
		defer nc.Close()
		js, err := jetstream.New(nc.Conn)
		if err != nil {
			return &service.ExitError{Code: exitTrouble, Err: err}
		}
		scheme, err := subject.New(prefix)
		if err != nil {
			return &service.ExitError{Code: exitTrouble, Err: err}
		}
		cfg := verify.Config{
			Pool: pg.Pool, JetStream: js, Stream: stream, Subjects: scheme,
			Source: source, RegistryURL: reg, FromPosition: int64(from),
		}
		return run(ctx, cfg, repair, list, os.Stdout)
	})
}

// run checks, and with repair re-publishes what is missing and checks again, printing
// the reports to w. Its error is an *service.ExitError carrying the exit status.
func run(ctx context.Context, cfg verify.Config, repair, list bool, w io.Writer) error {
	rep, err := verify.Check(ctx, cfg)
	if err != nil {
		return &service.ExitError{Code: exitTrouble, Err: err}
	}
	printReport(w, rep, list)
	if repair && len(rep.Missing) > 0 {
		n, err := verify.Repair(ctx, cfg, rep.Missing)
		fmt.Fprintf(w, "re-published %d of %d missing events\n", n, len(rep.Missing))
		if err != nil {
			return &service.ExitError{Code: exitTrouble, Err: fmt.Errorf("repair: %w", err)}
		}
		if rep, err = verify.Check(ctx, cfg); err != nil {
			return &service.ExitError{Code: exitTrouble, Err: fmt.Errorf("check after the repair: %w", err)}
		}
		fmt.Fprint(w, "after the repair: ")
		printReport(w, rep, list)
	}
	if !rep.OK() {
		fmt.Fprintln(w, "JetStream differs from Postgres")
		return &service.ExitError{Code: exitDiffers, Err: errors.New("JetStream differs from Postgres: " + rep.String())}
	}
	fmt.Fprintln(w, "JetStream agrees with Postgres")
	return nil
}

func printReport(w io.Writer, rep *verify.Report, list bool) {
	fmt.Fprintln(w, rep)
	if !list {
		return
	}
	for _, g := range []struct {
		name   string
		events []verify.Event
	}{
		{"missing", rep.Missing}, {"duplicate", rep.Duplicates}, {"out of order", rep.OutOfOrder},
		{"unexpected", rep.Unexpected}, {"repaired", rep.Repaired},
	} {
		for _, e := range g.events {
			fmt.Fprintf(w, "  %s: %s\n", g.name, e)
		}
	}
}
