package pgjet_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/pgtest"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// newStore returns a store on a fresh, migrated database with the demo schemas registered.
func newStore(t *testing.T) (*pgjet.Store, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	require.NoError(t, pgjet.Migrate(ctx, pool))
	s, err := pgjet.New(pgjet.Config{Pool: pool})
	require.NoError(t, err)
	_, err = s.Registry().RegisterFS(ctx, demoschemas.Files)
	require.NoError(t, err)
	return s, pool
}

// oneConnPool returns a pool of a single connection on a fresh database, migrated and with
// the demo schemas registered through a pool of its own: a store on it starts with a cold
// registry cache, and a caller's transaction holds the only connection.
func oneConnPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	url := pgtest.DB(t)
	warm := pgtest.PoolOn(t, url)
	require.NoError(t, pgjet.Migrate(ctx, warm))
	w, err := pgjet.New(pgjet.Config{Pool: warm})
	require.NoError(t, err)
	_, err = w.Registry().RegisterFS(ctx, demoschemas.Files)
	require.NoError(t, err)
	return pgtest.PoolOn(t, url, func(c *pgxpool.Config) { c.MaxConns = 1 })
}
