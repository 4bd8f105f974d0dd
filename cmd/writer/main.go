// Command writer serves pgjet's append API over HTTP (/streams/...) and NATS request-reply,
// and the Confluent-compatible schema registry API (/schemas, /subjects, /config,
// /compatibility) on the same HTTP address and over NATS (pgjet.registry.*).
//
//	writer [flags]          run the writer
//	writer migrate [flags]  apply database migrations and exit
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.uber.org/zap"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/registry"
	"github.com/pgjet/pgjet/internal/service"
	"github.com/pgjet/pgjet/internal/writer"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

func main() {
	var (
		c          service.Common
		httpAddr   string
		natsSubj   string
		schemasDir string
		maxBody    int
		maxRead    int
		auth       service.BearerAuth
		sc         pgjet.Config // the store's settings
		readCache  int
	)
	f := service.NewFlags("writer")
	c.Register(f)
	f.String(&httpAddr, "http-addr", "WRITER_HTTP_ADDR", ":8080", "address of the HTTP API, /metrics, /healthz and /readyz")
	f.String(&natsSubj, "nats-subject", "WRITER_NATS_SUBJECT", "pgjet.api.append", "NATS subject of the append endpoint")
	f.String(&schemasDir, "schemas-dir", "PGJET_SCHEMAS_DIR", "", "register every .avsc file of this directory at start (idempotent)")
	f.Int(&maxBody, "max-body-bytes", "WRITER_MAX_BODY_BYTES", 4<<20, "largest accepted request body")
	f.Int(&maxRead, "max-read-bytes", "WRITER_MAX_READ_BYTES", 4<<20, "a read's reply ends once its events' data reach this (at least one event)")
	f.Secret(&auth.Token, "api-token", "WRITER_API_TOKEN", "bearer token that HTTP writes (POST, PUT, DELETE) must present; empty: no authentication")
	f.Bool(&auth.Reads, "api-token-reads", "WRITER_API_TOKEN_READS", false, "require -api-token for HTTP reads too")
	f.Bool(&sc.GroupCommit, "group-commit", "WRITER_GROUP_COMMIT", true, "combine concurrent single appends into shared transactions")
	f.Int(&sc.MaxEventsPerAppend, "max-events-per-append", "WRITER_MAX_EVENTS_PER_APPEND", 1000, "most events in one append")
	f.Int(&sc.MaxEventSize, "max-event-bytes", "WRITER_MAX_EVENT_BYTES", pgjet.DefaultMaxEventSize, "largest event data, in bytes of Avro; with its headers it must fit in NATS's max_payload")
	f.Int(&sc.MaxMetadataSize, "max-metadata-bytes", "WRITER_MAX_METADATA_BYTES", 16<<10, "largest event metadata, in bytes of keys and values")
	f.Int(&readCache, "read-cache-bytes", "WRITER_READ_CACHE_BYTES", 0, "memory for recently read stream events; 0: no cache")
	f.NonNegative("max-body-bytes", "max-read-bytes", "max-events-per-append", "max-event-bytes", "max-metadata-bytes", "read-cache-bytes")
	f.NoArgs("writer [migrate] [flags]")
	f.Check(func() error {
		// A client cannot send a token that starts or ends with whitespace (it is trimmed
		// from the header), so such a token would refuse every write. It usually comes
		// from a secret file's trailing newline.
		if auth.Token != strings.TrimSpace(auth.Token) {
			return errors.New("-api-token (env WRITER_API_TOKEN) starts or ends with whitespace (a secret file's newline?); no client could present it")
		}
		return nil
	})

	args := os.Args[1:]
	migrateOnly := len(args) > 0 && args[0] == "migrate"
	if migrateOnly {
		args = args[1:]
	}
	service.Main("writer", &c, f, args, func(ctx context.Context, log *zap.Logger) error {
		pg, err := c.OpenMigrated(ctx, log)
		if err != nil {
			return err
		}
		defer pg.Close(context.WithoutCancel(ctx))
		if migrateOnly {
			return nil
		}
		tp, err := service.Tracing(ctx, "writer", log)
		if err != nil {
			return err
		}
		defer service.ShutdownTracing(ctx, tp, log)
		ops := service.NewOps(log)
		// The demo domain's upcasters: reads return its newest shapes. A service with its
		// own types registers its own upcasters the same way.
		sc.Pool, sc.Logger, sc.Registerer = pg.Pool, log, ops.Registry
		sc.Upcasters, sc.ReadCacheBytes = demoschemas.Upcasters(), int64(readCache)
		store, err := pgjet.New(sc)
		if err != nil {
			return err
		}
		if schemasDir != "" {
			vs, err := store.Registry().RegisterFS(ctx, os.DirFS(schemasDir))
			switch {
			case err != nil:
				return fmt.Errorf("registering the schemas of -schemas-dir %s: %w", schemasDir, err)
			case len(vs) == 0:
				return fmt.Errorf("-schemas-dir %s holds no .avsc files", schemasDir)
			}
			log.Info("schemas registered", zap.String("dir", schemasDir), zap.Int("schemas", len(vs)))
		}
		nc, err := c.ConnectNATS(ctx, "pgjet-writer", log)
		if err != nil {
			return err
		}
		defer nc.Close()
		if err := eventFitsNATS(cmp.Or(sc.MaxEventSize, pgjet.DefaultMaxEventSize), nc.Conn.MaxPayload()); err != nil {
			return err
		}
		api, err := writer.NewHandler(writer.HandlerConfig{Store: store, Logger: log, MaxBodyBytes: int64(maxBody), MaxReadBytes: int64(maxRead), TracerProvider: tp})
		if err != nil {
			return err
		}
		natsAPI, err := writer.NewNATSService(writer.NATSConfig{Store: store, Conn: nc.Conn, Subject: natsSubj, Logger: log, MaxRequestBytes: int64(maxBody), TracerProvider: tp})
		if err != nil {
			return err
		}
		regNATS, err := registry.NewNATSService(registry.NATSConfig{Registry: store.Registry(), Conn: nc.Conn, Logger: log})
		if err != nil {
			return err
		}
		ops.Track(pg, nc)
		httpMetrics, err := service.NewHTTPMetrics(ops.Registry)
		if err != nil {
			return err
		}
		// /metrics, /healthz and /readyz stay open; the APIs take the bearer token.
		auth.Logger = log
		if auth.Token != "" {
			log.Info("HTTP writes need a bearer token", zap.Bool("reads_too", auth.Reads))
		}
		ops.Mux.Handle("/streams/", httpMetrics.Wrap("append", auth.Wrap(api, service.AppendAPIUnauthorized)))
		ops.Mux.Handle("/", httpMetrics.Wrap("registry", auth.Wrap(registry.NewHandler(store.Registry(), log), service.RegistryUnauthorized)))
		return service.RunAll(ctx, natsAPI.Run, regNATS.Run,
			func(ctx context.Context) error { return service.Serve(ctx, httpAddr, ops.Mux, log) })
	})
}

// natsMessageRoom is what an event's NATS message needs beside its data: the 5 bytes of
// the wire format and the headers, whose stream id and type can reach 256 bytes each, twice.
const natsMessageRoom = 4 << 10

// eventFitsNATS checks that the largest event the writer accepts fits in a NATS message
// of the server's max_payload: a larger one would be appended, and then the relay could
// never publish it, holding up its stream for ever.
func eventFitsNATS(maxEvent int, maxPayload int64) error {
	if int64(maxEvent)+natsMessageRoom <= maxPayload {
		return nil
	}
	return fmt.Errorf("-max-event-bytes (env WRITER_MAX_EVENT_BYTES) is %d, but the NATS server's max_payload is %d: "+
		"an event that large (with %d bytes of headers) would be appended and never published; "+
		"lower -max-event-bytes or raise max_payload on every NATS server", maxEvent, maxPayload, natsMessageRoom)
}
