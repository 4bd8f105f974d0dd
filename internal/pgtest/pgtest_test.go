package pgtest_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestDBIsFreshAndDropped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var name string
	t.Run("inner", func(t *testing.T) {
		u := pgtest.DB(t)
		conn, err := pgx.Connect(ctx, u)
		require.NoError(t, err)
		defer conn.Close(ctx)
		require.NoError(t, conn.QueryRow(ctx, "SELECT current_database()").Scan(&name))
		require.Regexp(t, `^pgjet_t_[0-9a-f]{16}$`, name)

		var tables int
		require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables))
		require.Zero(t, tables, "a new database is empty")
		_, err = conn.Exec(ctx, "CREATE TABLE t (id int)")
		require.NoError(t, err)
		// conn stays open: the drop at cleanup must not be blocked by it.
	})

	admin, err := pgx.Connect(ctx, pgtest.AdminURL(t))
	require.NoError(t, err)
	defer admin.Close(ctx)
	var exists bool
	require.NoError(t, admin.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&exists))
	require.False(t, exists, "database %s is dropped after the test", name)
}

func TestParallelDatabasesAreIsolated(t *testing.T) {
	t.Parallel()
	names := make(chan string, 4)
	t.Run("group", func(t *testing.T) {
		for range cap(names) {
			t.Run("db", func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				pool := pgtest.Pool(t)
				_, err := pool.Exec(ctx, "CREATE TABLE same_name (id int)")
				require.NoError(t, err, "each test has its own database")
				var name string
				require.NoError(t, pool.QueryRow(ctx, "SELECT current_database()").Scan(&name))
				names <- name
			})
		}
	})
	close(names)
	seen := map[string]bool{}
	for n := range names {
		require.False(t, seen[n], "database %s handed out twice", n)
		seen[n] = true
	}
	require.Len(t, seen, cap(names))
}

func TestThrowawayWhenAsked(t *testing.T) {
	t.Parallel()
	if os.Getenv(pgtest.EnvURL) != pgtest.Throwaway {
		t.Skipf("%s is not %q", pgtest.EnvURL, pgtest.Throwaway)
	}
	require.NotContains(t, pgtest.AdminURL(t), ":5432/", "a throwaway cluster, not the machine's server")
}
