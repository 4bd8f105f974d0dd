package service

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/embednats"
	"github.com/pgjet/pgjet/internal/pgcluster"
)

// LocalPostgres is tried when no database URL is configured.
const LocalPostgres = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Postgres is a pool and, for a first run without a server, the throwaway cluster behind it.
type Postgres struct {
	Pool    *pgxpool.Pool
	URL     string
	cluster *pgcluster.Cluster
	admin   *Postgres // what OpenFresh created the database with
}

// OpenPostgres connects to url. With url empty it tries LocalPostgres, and if nothing
// answers there it starts a throwaway cluster from the machine's PostgreSQL binaries with
// its data under dataDir/postgres; also, with a warning, if a server there refuses (Debian's
// own cluster wants a password over TCP). maxConns > 0 sizes the pool.
func OpenPostgres(ctx context.Context, url, dataDir string, maxConns int, log *zap.Logger) (*Postgres, error) {
	pg := &Postgres{URL: url}
	if url == "" {
		pg.URL = LocalPostgres
		if err := ping(ctx, LocalPostgres); err != nil {
			if answered(err) {
				// Debian's own cluster on 5432 wants a password over TCP: make demo must
				// still run there. Said loudly, for whoever meant to use that server.
				log.Warn("Postgres at the default address refused the connection; starting a throwaway cluster instead (set -database-url or DATABASE_URL to use that server)",
					zap.String("tried", LocalPostgres), zap.String("dir", filepath.Join(dataDir, "postgres")), zap.Error(err))
			} else {
				log.Info("no Postgres at the default address; starting a throwaway cluster",
					zap.String("tried", LocalPostgres), zap.String("dir", filepath.Join(dataDir, "postgres")))
			}
			c, err := pgcluster.Start(ctx, pgcluster.Options{Dir: filepath.Join(dataDir, "postgres")})
			if err != nil {
				return nil, fmt.Errorf("no Postgres reachable at %s and none could be started: %w", LocalPostgres, err)
			}
			pg.cluster, pg.URL = c, c.URL("postgres")
		}
	}
	cfg, err := pgxpool.ParseConfig(pg.URL)
	if err != nil {
		pg.Close(ctx)
		return nil, fmt.Errorf("database URL: %w", scrub(err, dsnSecrets(pg.URL)...))
	}
	if maxConns > 0 {
		cfg.MaxConns = int32(maxConns)
	}
	pg.Pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		pg.Close(ctx)
		return nil, fmt.Errorf("connecting to Postgres: %w", scrub(err, dsnSecrets(pg.URL)...))
	}
	if err := pg.Pool.Ping(ctx); err != nil {
		pg.Close(ctx)
		return nil, fmt.Errorf("connecting to Postgres at %s: %w", redact(cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database), scrub(err, dsnSecrets(pg.URL)...))
	}
	return pg, nil
}

// answered reports whether err, from connecting, comes from a Postgres server that
// answered (and refused: authentication, a missing database or role, too many
// connections) rather than from nothing answering.
func answered(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr)
}

func redact(host string, port uint16, db string) string {
	return fmt.Sprintf("%s:%d/%s", host, port, db)
}

func ping(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	return pool.Ping(ctx)
}

// Close closes the pool and stops a throwaway cluster.
func (p *Postgres) Close(ctx context.Context) {
	if p.Pool != nil {
		p.Pool.Close()
	}
	if p.cluster != nil {
		_ = p.cluster.Stop(ctx)
	}
	if p.admin != nil {
		p.admin.Close(ctx)
	}
}

// OpenFresh opens Postgres as OpenPostgres does, drops database db there if it exists,
// creates it empty with pgjet's migrations, and returns a pool of maxConns connections on
// it. The demo and the bench start clean with it. Closing the result also closes the
// connection db was created on and stops a throwaway cluster.
func OpenFresh(ctx context.Context, url, dataDir, db string, maxConns int, log *zap.Logger) (*Postgres, error) {
	admin, err := OpenPostgres(ctx, url, dataDir, 2, log)
	if err != nil {
		return nil, err
	}
	dbURL, err := admin.FreshDatabase(ctx, db)
	if err != nil {
		admin.Close(ctx)
		return nil, err
	}
	pg, err := OpenPostgres(ctx, dbURL, dataDir, maxConns, log)
	if err != nil {
		admin.Close(ctx)
		return nil, err
	}
	pg.admin = admin
	if err := pgjet.Migrate(ctx, pg.Pool); err != nil {
		pg.Close(ctx)
		return nil, fmt.Errorf("migrating database %s: %w", db, err)
	}
	return pg, nil
}

// NATS is a connection and, without a configured server, the embedded one behind it.
type NATS struct {
	Conn     *nats.Conn
	URL      string
	embedded *embednats.Server
	lock     *os.File // held while the embedded server runs
	closed   chan struct{}
}

// ConnectNATS connects to url. With url empty it starts an embedded nats-server with
// JetStream (file store under dataDir/nats, fsync on every write) on a free loopback port.
// One process at a time runs the embedded server of a data directory: another one fails,
// naming the running server's URL to set as NATS_URL, rather than start a second server
// on the same store (and publish where no one else reads).
func ConnectNATS(ctx context.Context, url, dataDir, name string, log *zap.Logger, opts ...nats.Option) (*NATS, error) {
	n := &NATS{URL: url, closed: make(chan struct{})}
	if url == "" {
		lock, err := lockEmbedded(dataDir)
		if err != nil {
			return nil, err
		}
		s, err := embednats.Start(embednats.Options{Dir: filepath.Join(dataDir, "nats")})
		if err != nil {
			lock.Close()
			return nil, fmt.Errorf("starting the embedded NATS server: %w", err)
		}
		n.embedded, n.URL, n.lock = s, s.ClientURL(), lock
		// Tell a second process where this server is.
		if err := lock.Truncate(0); err == nil {
			_, _ = lock.WriteAt([]byte(n.URL), 0)
		}
		log.Info("started an embedded NATS server with JetStream", zap.String("url", n.URL), zap.String("dir", filepath.Join(dataDir, "nats")))
	}
	opts = append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("NATS reconnected", zap.String("url", RedactNATSURL(c.ConnectedUrl()))) }),
		nats.ClosedHandler(func(*nats.Conn) { close(n.closed) }),
	}, opts...)
	conn, err := nats.Connect(n.URL, opts...)
	if err != nil {
		n.Close()
		// nats.go quotes a URL it cannot parse, user info and all.
		return nil, fmt.Errorf("connecting to NATS at %s: %w", RedactNATSURL(n.URL), scrub(err, natsURLSecrets(n.URL)...))
	}
	n.Conn = conn
	log.Debug("connected to NATS", zap.String("url", RedactNATSURL(conn.ConnectedUrl())), zap.String("server", conn.ConnectedServerName()))
	return n, nil
}

// Close drains the connection and stops an embedded server.
func (n *NATS) Close() {
	if n.Conn != nil {
		if err := n.Conn.Drain(); err == nil {
			select {
			case <-n.closed:
			case <-time.After(5 * time.Second):
			}
		}
		n.Conn.Close()
	}
	if n.embedded != nil {
		n.embedded.Shutdown()
	}
	if n.lock != nil {
		n.lock.Close() // releases the lock
	}
}

// lockEmbedded takes the lock of dataDir's embedded NATS server (the file
// dataDir/nats.lock, which holds the running server's URL) without waiting.
func lockEmbedded(dataDir string) (*os.File, error) {
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	path := filepath.Join(dataDir, "nats.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := io.ReadAll(io.LimitReader(f, 1024))
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another process runs the embedded NATS server of %s (at %s): set NATS_URL to use it, or give this one its own -data-dir",
				dataDir, cmp.Or(strings.TrimSpace(string(holder)), "an unknown address"))
		}
		return nil, fmt.Errorf("embedded NATS server: locking %s: %w", path, err)
	}
	return f, nil
}

// ErrNotReady is returned by readiness checks that fail without a more precise error.
var ErrNotReady = errors.New("not ready")

// FreshDatabase drops db on p's server if it exists, creates it empty, and returns its URL.
func (p *Postgres) FreshDatabase(ctx context.Context, db string) (string, error) {
	ident := pgx.Identifier{db}.Sanitize()
	if _, err := p.Pool.Exec(ctx, `DROP DATABASE IF EXISTS `+ident+` WITH (FORCE)`); err != nil {
		return "", fmt.Errorf("dropping database %s: %w", db, err)
	}
	if _, err := p.Pool.Exec(ctx, `CREATE DATABASE `+ident); err != nil {
		return "", fmt.Errorf("creating database %s: %w", db, err)
	}
	return withDatabase(p.URL, db)
}

// withDatabase returns connection string dsn (a URL or a key=value DSN) with its database
// replaced by db and every other setting, password and TLS parameters included, kept.
func withDatabase(dsn, db string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("database URL %s: cannot parse it", RedactDSN(dsn))
		}
		u.Path, u.RawPath = "/"+db, ""
		return u.String(), nil
	}
	// In a key=value DSN the last setting of a key wins.
	return strings.TrimSpace(dsn) + " dbname=" + quoteKeywordValue(db), nil
}
