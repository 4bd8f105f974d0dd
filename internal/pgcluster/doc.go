// Package pgcluster starts a throwaway PostgreSQL server from the machine's
// PostgreSQL binaries (the Debian layout /usr/lib/postgresql/<version>/bin,
// or initdb and postgres on PATH), for tests and for a first run without a
// reachable Postgres.
//
// The cluster listens only on 127.0.0.1, trusts every local connection (no
// passwords), has the superuser "postgres" and no Unix socket. PostgreSQL
// refuses to run as root, so when the calling process is root the cluster
// runs as the "postgres" OS user and its directory is handed to that user.
//
// A cluster is a child process: it receives SIGQUIT (immediate shutdown)
// when the process that started it dies, so it does not outlive a crashed
// test binary. Stop it with [Cluster.Stop]; [Cluster.Kill] and
// [Cluster.Restart] exist for fault tests.
//
//	c, err := pgcluster.Start(ctx, pgcluster.Options{})
//	if err != nil { ... }
//	defer c.Stop(context.WithoutCancel(ctx))
//	pool, err := pgxpool.New(ctx, c.URL("postgres"))
package pgcluster
