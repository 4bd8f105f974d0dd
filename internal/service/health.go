package service

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/pgjet/pgjet/internal/migrate"
	"github.com/pgjet/pgjet/internal/relay"
	"github.com/pgjet/pgjet/internal/telemetry"
)

// Track registers the pgjet_db_pool_* and pgjet_nats_* metrics of pg and nc, and the
// readiness checks every binary has: "postgres" (the pool answers), "migrations" (the
// database holds every migration this binary knows) and "nats" (connected).
func (o *Ops) Track(pg *Postgres, nc *NATS) {
	o.Registry.MustRegister(NewPoolCollector(pg.Pool), NewNATSCollector(nc.Conn))
	o.AddCheck("postgres", PostgresCheck(pg))
	o.AddCheck("migrations", MigrationsCheck(pg))
	o.AddCheck("nats", NATSCheck(nc))
}

// MigrationsCheck is a readiness check that the database's migration version is at least
// the newest migration embedded in this binary.
func MigrationsCheck(pg *Postgres) Check {
	return func(ctx context.Context) error {
		v, err := migrate.Version(ctx, pg.Pool)
		if err != nil {
			return err
		}
		if want := migrate.Latest(); v < want {
			return fmt.Errorf("database is at migration %d, this binary needs %d: run `migrate`", v, want)
		}
		return nil
	}
}

// OutboxAgeCheck is a readiness check that fails while the oldest unpublished outbox row
// is older than maxAge: the relays are down, stuck or too few.
func OutboxAgeCheck(pg *Postgres, maxAge time.Duration) Check {
	return func(ctx context.Context) error {
		s, err := relay.ReadOutboxStats(ctx, pg.Pool)
		if err != nil {
			return err
		}
		if s.OldestAge > maxAge {
			return fmt.Errorf("the oldest of %d unpublished outbox rows has waited %s (limit %s)",
				s.Pending, s.OldestAge.Round(time.Second), maxAge)
		}
		return nil
	}
}

// Tracing returns the tracer provider the OTEL_* environment asks for (the no-op one when
// it asks for none) and logs which it is.
func Tracing(ctx context.Context, name string, log *zap.Logger) (*telemetry.Provider, error) {
	tp, err := telemetry.FromEnv(ctx, "pgjet-"+name)
	if err != nil {
		return nil, err
	}
	if tp.Enabled() {
		log.Info("exporting traces over OTLP (configured by OTEL_* environment variables)")
	}
	return tp, nil
}

// ShutdownTracing flushes tp's pending spans, bounded by a timeout that outlives ctx.
func ShutdownTracing(ctx context.Context, tp *telemetry.Provider, log *zap.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := tp.Shutdown(ctx); err != nil {
		log.Warn("flushing traces", zap.Error(err))
	}
}
