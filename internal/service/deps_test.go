package service

import (
	"context"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet/internal/migrate"
	"github.com/pgjet/pgjet/internal/pgtest"
)

// OpenFresh (the demo's and the bench's start) gives an empty, migrated database each time,
// whatever the last run left there, and its Close also closes the connection it created
// the database on.
func TestOpenFreshStartsEmptyAndMigrated(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := pgtest.DB(t)
	// Named after the test's own database: a fixed name clashed with the same test of
	// another run on a shared server, whose OpenFresh dropped it WITH (FORCE) mid-test.
	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)
	name := cfg.Database + "_fresh"
	t.Cleanup(func() {
		admin, err := pgx.Connect(context.WithoutCancel(ctx), url)
		if err == nil {
			_, _ = admin.Exec(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
			_ = admin.Close(context.WithoutCancel(ctx))
		}
	})

	pg, err := OpenFresh(ctx, url, t.TempDir(), name, 3, zap.NewNop())
	require.NoError(t, err)
	require.Contains(t, pg.URL, "/"+name)
	require.EqualValues(t, 3, pg.Pool.Config().MaxConns)
	v, err := migrate.Version(ctx, pg.Pool)
	require.NoError(t, err)
	require.Equal(t, migrate.Latest(), v)
	_, err = pg.Pool.Exec(ctx, "CREATE TABLE left_behind (id int)")
	require.NoError(t, err)
	admin := pg.admin
	pg.Close(ctx)
	require.Error(t, admin.Pool.Ping(ctx), "Close must close the connection the database was created on")

	pg, err = OpenFresh(ctx, url, t.TempDir(), name, 3, zap.NewNop())
	require.NoError(t, err)
	defer pg.Close(ctx)
	var left bool
	require.NoError(t, pg.Pool.QueryRow(ctx, "SELECT to_regclass('left_behind') IS NOT NULL").Scan(&left))
	require.False(t, left, "a second OpenFresh must start from an empty database")
	v, err = migrate.Version(ctx, pg.Pool)
	require.NoError(t, err)
	require.Equal(t, migrate.Latest(), v)
}

// A binary without a database URL tells a Postgres that answers with an error (here: a
// database it does not have) from one that does not answer, and warns about the first
// when it starts a throwaway cluster instead: the user may have meant that server.
func TestRefusalIsToldFromSilence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u, err := url.Parse(pgtest.DB(t))
	if err != nil || !strings.HasPrefix(u.Scheme, "postgres") {
		t.Skip("the test server's URL is a key=value DSN")
	}
	u.Path = "/pgjet_no_such_database"
	err = ping(ctx, u.String())
	require.Error(t, err)
	require.True(t, answered(err), "%v", err)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	err = ping(ctx, "postgres://postgres@"+addr+"/postgres?sslmode=disable")
	require.Error(t, err)
	require.False(t, answered(err), "%v", err)
}

// A second process (here: a second connection) without a NATS URL on the same data
// directory does not start a second embedded server on the same store, which would leave
// each binary publishing and reading on a server of its own: it fails, naming the running
// server's URL. Once the first stops, the directory is free again.
func TestOneEmbeddedNATSPerDataDir(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	first, err := ConnectNATS(ctx, "", dir, "first", zap.NewNop())
	require.NoError(t, err)
	_, err = ConnectNATS(ctx, "", dir, "second", zap.NewNop())
	require.ErrorContains(t, err, "another process runs the embedded NATS server of "+dir+" (at "+first.URL+"): set NATS_URL to use it")

	other, err := ConnectNATS(ctx, "", t.TempDir(), "other", zap.NewNop())
	require.NoError(t, err, "another data directory has a server of its own")
	other.Close()

	first.Close()
	third, err := ConnectNATS(ctx, "", dir, "third", zap.NewNop())
	require.NoError(t, err)
	third.Close()
}
