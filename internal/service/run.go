package service

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/migrate"
)

// Common is the configuration every binary shares.
type Common struct {
	DatabaseURL string
	NATSURL     string
	DataDir     string
	LogFormat   string
	LogLevel    string
	MaxConns    int
	// NATSSecurity authenticates to NATS and secures the connection (see security.md).
	NATSSecurity NATSSecurity
}

// Register adds the shared flags to f. A LogLevel set before is the -log-level default
// (the tools log at warn); LOG_LEVEL and the flag still override it.
func (c *Common) Register(f *Flags) {
	f.String(&c.DatabaseURL, "database-url", "DATABASE_URL", "", "Postgres URL; empty tries "+LocalPostgres+", then starts a throwaway cluster")
	f.String(&c.NATSURL, "nats-url", "NATS_URL", "", "NATS URL(s), comma-separated; empty starts an embedded server with JetStream")
	f.String(&c.DataDir, "data-dir", "PGJET_DATA_DIR", ".pgjet", "directory for embedded NATS and Postgres data")
	f.String(&c.LogFormat, "log-format", "LOG_FORMAT", "console", "log format: json or console")
	f.String(&c.LogLevel, "log-level", "LOG_LEVEL", cmp.Or(c.LogLevel, "info"), "log level: debug, info, warn, error")
	f.Int(&c.MaxConns, "db-max-conns", "DB_MAX_CONNS", 0, "Postgres pool size; 0 uses pgxpool's default, max(4, CPUs)")
	c.NATSSecurity.Register(f)
	f.redactDefault("database-url", RedactDSN)
	f.NonNegative("db-max-conns")
	f.Check(func() error {
		if c.MaxConns > math.MaxInt32 {
			return fmt.Errorf("%s is too large: %d", f.describe("db-max-conns"), c.MaxConns)
		}
		return nil
	})
}

// ExitError makes Main exit with Code instead of 1, for binaries whose exit status says
// more than "failed" (verify's, as diff's, says "differs" or "could not tell").
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Main runs a binary: parses flags, builds a logger, cancels the context on SIGINT or
// SIGTERM, and calls run. It exits the process with 0 after -h, 2 on bad flags and 1 on
// error, or with the code of an *ExitError that run returns. After the first signal, a
// second one ends the process at once (the default action of the signal), in case the
// graceful shutdown hangs.
func Main(name string, c *Common, f *Flags, args []string, run func(ctx context.Context, log *zap.Logger) error) {
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0) // the usage is printed
		}
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	log, err := NewLogger(c.LogFormat, c.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	log = log.With(zap.String("service", name))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	finished := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-finished:
			return
		}
		select {
		case <-finished: // ctx ended because run returned
			return
		default:
		}
		// Hand the signals back to the runtime: a second one ends the process.
		stop()
		log.Info("shutting down; a second signal stops at once")
	}()
	err = run(ctx, log)
	close(finished)
	if err != nil {
		log.Error("stopped with an error", zap.Error(err))
		_ = log.Sync()
		code := 1
		if ee := (*ExitError)(nil); errors.As(err, &ee) {
			code = ee.Code
		}
		os.Exit(code)
	}
	log.Info("stopped")
	_ = log.Sync()
}

// OpenMigrated opens Postgres per c and applies pgjet's migrations. A database that
// already has every migration is left alone, so a role without DDL rights (see
// security.md) can start a binary once the owner role has run `migrate`.
func (c *Common) OpenMigrated(ctx context.Context, log *zap.Logger) (*Postgres, error) {
	pg, err := OpenPostgres(ctx, c.DatabaseURL, c.DataDir, c.MaxConns, log)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if v, err := migrate.Version(ctx, pg.Pool); err == nil && v >= migrate.Latest() {
		return pg, nil
	}
	if err := pgjet.Migrate(ctx, pg.Pool); err != nil {
		pg.Close(ctx)
		if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "42501" { // insufficient_privilege
			return nil, fmt.Errorf("%w: the database needs migrations, and this role may not create objects; run `migrate` as the owner role (docs/security.md)", err)
		}
		return nil, err
	}
	log.Debug("migrations applied", zap.Duration("took", time.Since(start)))
	return pg, nil
}

// PostgresCheck is a readiness check that pings the pool.
func PostgresCheck(pg *Postgres) Check {
	return func(ctx context.Context) error { return pg.Pool.Ping(ctx) }
}

// NATSCheck is a readiness check on the NATS connection.
func NATSCheck(n *NATS) Check {
	return func(context.Context) error {
		if !n.Conn.IsConnected() {
			return fmt.Errorf("NATS %s", n.Conn.Status())
		}
		return nil
	}
}

// RunAll runs fns until ctx ends or one fails; then it stops the rest and waits.
func RunAll(ctx context.Context, fns ...func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, fn := range fns {
		wg.Go(func() {
			if err := fn(ctx); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			cancel()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
