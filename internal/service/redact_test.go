package service

import (
	"bytes"
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet/internal/pgtest"
)

func TestRedactDSN(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"postgres://pgjet@db:5432/pgjet?sslmode=verify-full&sslrootcert=/etc/ca.pem",
			"postgres://pgjet@db:5432/pgjet?sslmode=verify-full&sslrootcert=/etc/ca.pem"},
		{"postgres://pgjet:s3cret@db:5432/pgjet?sslmode=require", "postgres://pgjet:xxxxx@db:5432/pgjet?sslmode=require"},
		{"postgresql://pgjet:p%40ss@db/pgjet", "postgresql://pgjet:xxxxx@db/pgjet"},
		{"postgres://pgjet@db/pgjet?password=s3cret&sslpassword=k3y&sslmode=verify-ca",
			"postgres://pgjet@db/pgjet?password=xxxxx&sslmode=verify-ca&sslpassword=xxxxx"},
		{"postgres://pgjet:s3cret@db:notaport/pgjet", "<unparsable database URL>"},
		{"host=db user=pgjet password=s3cret dbname=pgjet sslmode=verify-full sslrootcert=/etc/ca.pem",
			"host=db user=pgjet password=xxxxx dbname=pgjet sslmode=verify-full sslrootcert=/etc/ca.pem"},
		{"host=db password = 'two words\\' s3cret' sslpassword=k3y application_name='my app'",
			"host=db password=xxxxx sslpassword=xxxxx application_name='my app'"},
		{"host=db password='unterminated s3cret", "<unparsable connection string>"},
	} {
		got := RedactDSN(tc.in)
		require.Equal(t, tc.want, got, "RedactDSN(%q)", tc.in)
		require.NotContains(t, got, "s3cret")
		require.NotContains(t, got, "k3y")
	}
}

// RedactDSN keeps a key=value DSN meaning what it meant, minus the password.
func TestRedactDSNKeepsSettings(t *testing.T) {
	t.Parallel()
	in := `host=db port=5433 user=pgjet password='a b' dbname='my db' application_name=x\ y sslmode=disable`
	want, err := pgconn.ParseConfig(in)
	require.NoError(t, err)
	got, err := pgconn.ParseConfig(RedactDSN(in))
	require.NoError(t, err)
	require.Equal(t, "xxxxx", got.Password)
	require.Equal(t, want.Database, got.Database)
	require.Equal(t, "my db", got.Database)
	require.Equal(t, want.RuntimeParams, got.RuntimeParams)
	require.Equal(t, want.Port, got.Port)
}

func TestRedactNATSURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"nats://n1:4222,nats://n2:4222", "nats://n1:4222,nats://n2:4222"},
		{"nats://relay:s3cret@n1:4222, nats://relay:s3cret@n2:4222", "nats://relay:xxxxx@n1:4222,nats://relay:xxxxx@n2:4222"},
		{"tls://s3cret@n1:4222", "tls://xxxxx@n1:4222"},
		{"relay:s3cret@n1:4222", "nats://relay:xxxxx@n1:4222"},
		{"nats://relay:s3cret@n1:bad", "<unparsable NATS URL>"},
	} {
		got := RedactNATSURL(tc.in)
		require.Equal(t, tc.want, got, "RedactNATSURL(%q)", tc.in)
		require.NotContains(t, got, "s3cret")
	}
}

// -h shows neither secrets nor the password in a connection string from the environment.
func TestUsageHidesSecrets(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://pgjet:db-s3cret@db/pgjet")
	t.Setenv("NATS_URL", "nats://relay:nats-s3cret@n1:4222")
	t.Setenv("NATS_PASSWORD", "pw-s3cret")
	t.Setenv("NATS_TOKEN", "token-s3cret")
	var c Common
	f := NewFlags("test")
	c.Register(f)
	var out bytes.Buffer
	f.SetOutput(&out)
	require.ErrorContains(t, f.Parse([]string{"-no-such-flag"}), "no-such-flag") // prints the usage
	require.NotContains(t, out.String(), "s3cret")
	require.Contains(t, out.String(), "postgres://pgjet:xxxxx@db/pgjet")
	require.Contains(t, out.String(), "nats://relay:xxxxx@n1:4222")
	require.Contains(t, out.String(), "(env NATS_TOKEN)")

	// The values themselves are intact.
	require.Equal(t, "postgres://pgjet:db-s3cret@db/pgjet", c.DatabaseURL)
	require.Equal(t, "nats://relay:nats-s3cret@n1:4222", c.NATSURL)
	require.Equal(t, "pw-s3cret", c.NATSSecurity.Password)
	require.Equal(t, "token-s3cret", c.NATSSecurity.Token)

	// A flag on the command line still wins over the environment.
	f = NewFlags("test")
	c = Common{}
	c.Register(f)
	require.NoError(t, f.Parse([]string{"-nats-token", "from-flag"}))
	require.Equal(t, "from-flag", c.NATSSecurity.Token)
}

// Errors from connecting never carry the password, even when a library quotes the whole
// connection string.
func TestConnectErrorsHideSecrets(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	for _, dsn := range []string{
		"postgres://pgjet:s3cret@127.0.0.1:notaport/pgjet",
		"postgres://pgjet:s3cret@127.0.0.1:1/pgjet?sslmode=disable&connect_timeout=2",
		"host=127.0.0.1 port=1 password='s3cret",
		"host=127.0.0.1 port=1 user=pgjet password=s3cret sslmode=disable connect_timeout=2",
		"postgres://pgjet@127.0.0.1:1/pgjet?sslpassword=s3cret&sslmode=nonsense",
	} {
		_, err := OpenPostgres(ctx, dsn, t.TempDir(), 0, zap.NewNop())
		require.Error(t, err, dsn)
		require.NotContains(t, err.Error(), "s3cret", dsn)
	}
	for _, u := range []string{
		"nats://relay:s3cret@127.0.0.1:notaport",
		"nats://s3cret@127.0.0.1:notaport",
		"nats://relay:s3cret@127.0.0.1:1",
		"nats://relay:s3cret@%zz",
	} {
		_, err := ConnectNATS(ctx, u, t.TempDir(), "test", zap.NewNop())
		require.Error(t, err, u)
		require.NotContains(t, err.Error(), "s3cret", u)
	}
}

// sslmode and sslrootcert in DATABASE_URL reach pgx untouched: sslmode=require gets an
// encrypted session, and verify-full with a CA that did not sign the server's certificate
// is refused.
func TestPostgresTLSFromDSN(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	base := pgtest.DB(t)
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Skip("the test server's URL is a key=value DSN")
	}
	with := func(kv ...string) string {
		v := *u
		q := v.Query()
		for i := 0; i < len(kv); i += 2 {
			q.Set(kv[i], kv[i+1])
		}
		v.RawQuery = q.Encode()
		return v.String()
	}
	{
		conn, err := pgx.Connect(ctx, base)
		require.NoError(t, err)
		var ssl string
		require.NoError(t, conn.QueryRow(ctx, "SHOW ssl").Scan(&ssl))
		require.NoError(t, conn.Close(ctx))
		if ssl != "on" {
			t.Skip("the test server has ssl = off")
		}
	}
	encrypted := func(dsn string) bool {
		pg, err := OpenPostgres(ctx, dsn, t.TempDir(), 1, zap.NewNop())
		require.NoError(t, err)
		defer pg.Close(context.WithoutCancel(ctx))
		var ssl bool
		require.NoError(t, pg.Pool.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl))
		return ssl
	}
	require.True(t, encrypted(with("sslmode", "require")))
	require.False(t, encrypted(with("sslmode", "disable")))

	pki := newTestPKI(t)
	_, err = OpenPostgres(ctx, with("sslmode", "verify-full", "sslrootcert", pki.CA), t.TempDir(), 1, zap.NewNop())
	require.ErrorContains(t, err, "certificate")
	missing := t.TempDir() + "/no-such-ca.pem"
	_, err = OpenPostgres(ctx, with("sslmode", "verify-ca", "sslrootcert", missing), t.TempDir(), 1, zap.NewNop())
	require.ErrorContains(t, err, "no-such-ca.pem")
}

// FreshDatabase (the demo's, the bench's and the soak's database) keeps the password and
// TLS settings of the connection string it derives from.
func TestFreshDatabaseKeepsTheDSN(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"postgres://pgjet:s3cret@db:5432/postgres?sslmode=verify-full&sslrootcert=/ca.pem",
			"postgres://pgjet:s3cret@db:5432/pgjet_demo?sslmode=verify-full&sslrootcert=/ca.pem"},
		{"host=db password=s3cret sslmode=require dbname=postgres",
			"host=db password=s3cret sslmode=require dbname=postgres dbname=pgjet_demo"},
	} {
		got, err := withDatabase(tc.in, "pgjet_demo")
		require.NoError(t, err)
		require.Equal(t, tc.want, got)
	}

	ctx := t.Context()
	u, err := url.Parse(pgtest.DB(t))
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Skip("the test server's URL is a key=value DSN")
	}
	u.User = url.UserPassword(u.User.Username(), "ignored-by-trust-auth")
	q := u.Query()
	q.Set("application_name", "pgjet-fresh")
	u.RawQuery = q.Encode()
	pg, err := OpenPostgres(ctx, u.String(), t.TempDir(), 1, zap.NewNop())
	require.NoError(t, err)
	t.Cleanup(func() { pg.Close(context.WithoutCancel(ctx)) })
	name := strings.TrimPrefix(u.Path, "/") + "_fresh" // unique per run, as the server may be shared
	fresh, err := pg.FreshDatabase(ctx, name)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = pg.Pool.Exec(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	})
	require.Contains(t, fresh, "ignored-by-trust-auth")
	require.Contains(t, fresh, "application_name=pgjet-fresh")
	require.Contains(t, fresh, "/"+name+"?")
}
