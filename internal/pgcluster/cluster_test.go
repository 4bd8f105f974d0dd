package pgcluster_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/pgcluster"
)

func TestFindBinaries(t *testing.T) {
	t.Parallel()
	dir, err := pgcluster.FindBinaries()
	if errors.Is(err, pgcluster.ErrNotInstalled) {
		require.ErrorContains(t, err, "install the postgresql package")
		t.Skip(err)
	}
	require.NoError(t, err)
	require.FileExists(t, dir+"/initdb")
	require.FileExists(t, dir+"/postgres")
}

func TestStartKillRestartStop(t *testing.T) {
	t.Parallel()
	if _, err := pgcluster.FindBinaries(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	c, err := pgcluster.Start(ctx, pgcluster.Options{Logf: t.Logf})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	dir, port := c.Dir(), c.Port()
	require.NotZero(t, port)
	require.Contains(t, c.URL("postgres"), "127.0.0.1:")

	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
	require.NoError(t, err)

	c.Kill()
	_, err = pgx.Connect(ctx, c.URL("postgres"))
	require.Error(t, err, "no new connections after Kill")
	_ = conn.Close(ctx)

	require.NoError(t, c.Restart(ctx))
	require.Equal(t, port, c.Port(), "restart keeps the port")
	conn, err = pgx.Connect(ctx, c.URL("postgres"))
	require.NoError(t, err)
	var v int
	require.NoError(t, conn.QueryRow(ctx, "SELECT v FROM kept").Scan(&v))
	require.Equal(t, 42, v, "committed data survives a crash")
	require.NoError(t, conn.Close(ctx))

	require.NoError(t, c.Stop(ctx))
	require.NoError(t, c.Stop(ctx), "Stop is idempotent")
	_, err = os.Stat(dir)
	require.True(t, os.IsNotExist(err), "Stop removes the temp dir it created")
	require.NoDirExists(t, filepath.Dir(dir), "and the directory holding it")
	_, err = pgx.Connect(ctx, c.URL("postgres"))
	require.Error(t, err)
}

func TestReuseDir(t *testing.T) {
	t.Parallel()
	if _, err := pgcluster.FindBinaries(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := t.TempDir()
	dir := base + "/nested/data" // parents Start creates must let the server's user through
	if os.Geteuid() == 0 {
		// As root the server runs as OS user postgres, which must reach dir.
		_, err := pgcluster.Start(ctx, pgcluster.Options{Dir: dir})
		require.ErrorContains(t, err, "cannot reach")
		for p := base; p != os.TempDir(); p = filepath.Dir(p) {
			require.NoError(t, os.Chmod(p, 0o711))
		}
	}

	c, err := pgcluster.Start(ctx, pgcluster.Options{Dir: dir})
	require.NoError(t, err)
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "CREATE DATABASE kept")
	require.NoError(t, err)
	require.NoError(t, conn.Close(ctx))
	require.NoError(t, c.Stop(ctx))
	require.DirExists(t, dir, "Stop keeps a directory it did not create")

	c, err = pgcluster.Start(ctx, pgcluster.Options{Dir: dir})
	require.NoError(t, err)
	defer func() { require.NoError(t, c.Stop(ctx)) }()
	conn, err = pgx.Connect(ctx, c.URL("kept"))
	require.NoError(t, err, "the database created before Stop is still there")
	require.NoError(t, conn.Close(ctx))
}

func TestStartOnBusyPortFails(t *testing.T) {
	t.Parallel()
	if _, err := pgcluster.FindBinaries(); err != nil {
		t.Skip(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err = pgcluster.Start(ctx, pgcluster.Options{Port: l.Addr().(*net.TCPAddr).Port})
	require.ErrorContains(t, err, "exited during startup")
	require.NoError(t, ctx.Err(), "fails fast instead of retrying")
}

// A port taken by another PostgreSQL server is not mistaken for ours: that server
// answers at once, while ours is still failing to bind.
func TestStartOnAnotherClustersPortFails(t *testing.T) {
	t.Parallel()
	if _, err := pgcluster.FindBinaries(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, err := pgcluster.Start(ctx, pgcluster.Options{})
	require.NoError(t, err)
	defer func() { require.NoError(t, a.Stop(ctx)) }()
	b, err := pgcluster.Start(ctx, pgcluster.Options{Port: a.Port()})
	if err == nil {
		_ = b.Stop(ctx)
	}
	require.ErrorContains(t, err, "exited during startup")
}
