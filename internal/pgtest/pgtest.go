package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgjet/pgjet/internal/pgcluster"
)

// EnvURL names the environment variable that selects the test server.
const EnvURL = "TEST_DATABASE_URL"

// Throwaway, as the value of EnvURL, skips the probe of LocalURL and starts a
// throwaway cluster: CI uses it so that tests never depend on, or load, a
// server that happens to run on the machine.
const Throwaway = "throwaway"

// LocalURL is the server tried when EnvURL is unset.
const LocalURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// DBPrefix starts the name of every database this package creates.
const DBPrefix = "pgjet_t_"

const (
	probeTimeout   = time.Second
	clusterTimeout = 2 * time.Minute
	opTimeout      = time.Minute
)

// server is the process-wide choice of Postgres server. It is the one
// package-level state: every test in a binary shares one server.
var server struct {
	once     sync.Once
	mu       sync.Mutex
	adminURL string
	cluster  *pgcluster.Cluster
	err      error
}

// Main runs the package's tests and then stops the throwaway cluster, if
// one was started. Call it from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// Main returns, and the testing package exits with the tests' result.
func Main(m *testing.M) {
	m.Run()
	server.mu.Lock()
	defer server.mu.Unlock()
	if c := server.cluster; c != nil {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stopping throwaway cluster: %v\n", err)
		}
		server.cluster = nil
	}
}

// AdminURL returns the URL of the chosen server's maintenance database
// (see the package doc). It fails the test when no server is available.
func AdminURL(t testing.TB) string {
	t.Helper()
	server.once.Do(chooseServer)
	server.mu.Lock()
	defer server.mu.Unlock()
	if server.err != nil {
		t.Fatalf("pgtest: no PostgreSQL server: %v", server.err)
	}
	return server.adminURL
}

// DB creates a new, empty database for this test and returns its URL. The
// database is dropped (WITH (FORCE), so open connections do not block it)
// when the test and its subtests have finished.
func DB(t testing.TB) string {
	t.Helper()
	return DBWith(t, "")
}

// DBWith is DB with more options of CREATE DATABASE, such as a locale:
// "LOCALE_PROVIDER icu ICU_LOCALE 'en-US'".
func DBWith(t testing.TB, options string) string {
	t.Helper()
	admin := AdminURL(t)
	name := DBPrefix + randomSuffix()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := adminExec(ctx, admin, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE template0 "+options); err != nil {
		t.Fatalf("pgtest: creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if err := adminExec(ctx, admin, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: dropping database %s: %v", name, err)
		}
	})
	u, err := withDatabase(admin, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return u
}

// Pool returns a pool connected to a new database from [DB]. The pool is
// closed, then the database dropped, when the test ends.
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return PoolOn(t, DB(t))
}

// PoolOn returns a pool connected to u, a database from [DB] or [DBWith], closed when
// the test ends. Each configure function may change the pool's config first (its size,
// say).
func PoolOn(t testing.TB, u string, configure ...func(*pgxpool.Config)) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		t.Fatalf("pgtest: pool: %v", err)
	}
	for _, f := range configure {
		f(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgtest: pool: %v", err)
	}
	t.Cleanup(pool.Close)
	if err := pool.Ping(ctx); err != nil {
		t.Fatalf("pgtest: pool: %v", err)
	}
	return pool
}

// chooseServer picks the server as the package doc describes.
func chooseServer() {
	server.mu.Lock()
	defer server.mu.Unlock()
	u := os.Getenv(EnvURL)
	if u != "" && u != Throwaway {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ping(ctx, u); err != nil {
			server.err = fmt.Errorf("%s is set but unusable: %w", EnvURL, err)
			return
		}
		server.adminURL = u
		return
	}
	why := EnvURL + "=" + Throwaway
	if u == "" {
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		err := ping(ctx, LocalURL)
		cancel()
		if err == nil {
			server.adminURL = LocalURL
			return
		}
		why = fmt.Sprintf("%s unset and %s unreachable (%v)", EnvURL, LocalURL, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	c, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		server.err = fmt.Errorf("%s, and no throwaway cluster: %w", why, err)
		return
	}
	server.cluster = c
	server.adminURL = c.URL("postgres")
}

func ping(ctx context.Context, u string) error {
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.Ping(ctx)
}

func adminExec(ctx context.Context, admin, sql string) error {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// withDatabase returns connection string u with its database replaced by
// db; u is a URL or a key=value DSN.
func withDatabase(u, db string) (string, error) {
	if strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://") {
		parsed, err := url.Parse(u)
		if err != nil {
			return "", fmt.Errorf("parsing server URL: %w", err)
		}
		parsed.Path = "/" + db
		parsed.RawPath = ""
		return parsed.String(), nil
	}
	// In a key=value DSN the last setting of a key wins.
	return strings.TrimSpace(u) + " dbname=" + db, nil
}

func randomSuffix() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
