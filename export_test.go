package pgjet_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/migrate"
	"github.com/pgjet/pgjet/internal/pgtest"
)

func pgtestDB(t *testing.T) string { return pgtest.DB(t) }

func poolFor(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

func latestMigration() int { return migrate.Latest() }
