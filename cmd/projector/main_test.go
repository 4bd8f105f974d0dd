package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/demo"
	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/pgtest"
	"github.com/pgjet/pgjet/internal/projection"
)

const mainEnv = "PGJET_PROJECTOR_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		os.Args = append([]string{"projector"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	pgtest.Main(m)
}

// projector runs the command with args (after the test binary's own) and returns its
// stdout and exit error.
func projector(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), mainEnv+"=1", "LOG_LEVEL=warn"), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	err := cmd.Run()
	return out.String(), err
}

// projector rebuild orders rebuilds the demo read model beside the live one, swaps it in
// and exits 0; an unknown projection is an error.
func TestRebuildCommand(t *testing.T) {
	ctx := context.Background()
	url := pgtest.DB(t)
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, pgjet.Migrate(ctx, pool))
	srv := natstest.Server(t)
	nc, _ := natstest.Connect(t, srv)
	s, err := demo.Run(ctx, demo.Config{Pool: pool, Conn: nc, Orders: 40, Rate: 2000})
	require.NoError(t, err)
	var before int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM demo.orders`).Scan(&before))
	require.Equal(t, 40, before)
	// Mark the live model, to see it replaced.
	_, err = pool.Exec(ctx, `UPDATE demo.orders SET status = 'stale'`)
	require.NoError(t, err)

	env := []string{"DATABASE_URL=" + url, "NATS_URL=" + srv.ClientURL(), "PGJET_STREAM=" + demo.Stream}
	out, err := projector(t, env, "rebuild", "-batch-size", "16", "orders")
	require.NoError(t, err, out)
	t.Log("\n" + out)
	require.Contains(t, out, "rebuild orders: swapped")
	require.Contains(t, out, "done in")
	var stale, orders int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'stale'), count(*) FROM demo.orders`).Scan(&stale, &orders))
	require.Zero(t, stale)
	require.Equal(t, 40, orders)
	seq, err := projection.Checkpoint(ctx, pool, demo.ProjectionName)
	require.NoError(t, err)
	require.EqualValues(t, s.Appended, seq)

	out, err = projector(t, env, "rebuild", "nosuch")
	require.Error(t, err, out)
}

// Settings out of range stop the projector at start with exit code 2 and a message naming
// the flag: -stall-after 0 used to keep it not ready for ever; a negative
// -swap-lock-timeout failed a rebuild only at its swap; a stray argument was ignored.
func TestSettingsAreChecked(t *testing.T) {
	t.Parallel()
	env := []string{mainEnv + "=1", "DATABASE_URL=" + pgtest.DB(t), "PGJET_DATA_DIR=" + t.TempDir(), "PROJECTOR_HTTP_ADDR=127.0.0.1:0"}
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{env: "PROJECTOR_STALL_AFTER=0s", want: "-stall-after (env PROJECTOR_STALL_AFTER) must be more than zero, not 0s"},
		{args: []string{"rebuild", "-swap-lock-timeout", "-5s", "orders"}, want: "-swap-lock-timeout (env PROJECTOR_SWAP_LOCK_TIMEOUT) must not be negative"},
		{args: []string{"-batch-size", "-1"}, want: "-batch-size (env PROJECTOR_BATCH_SIZE) must not be negative"},
		{args: []string{"-batch-timeout", "0s"}, want: "-batch-timeout (env PROJECTOR_BATCH_TIMEOUT) must be more than zero"},
		{args: []string{"-batch-size", "10", "rebuild", "orders"}, want: `unexpected argument "rebuild"`},
		{args: []string{"rebuild", "-batch-size", "10"}, want: "usage: projector rebuild [flags] NAME"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], tc.args...)
		cmd.Env = append(append(os.Environ(), env...), tc.env)
		out, _ := cmd.CombinedOutput()
		require.Equal(t, 2, cmd.ProcessState.ExitCode(), "%v %s: %s", tc.args, tc.env, out)
		require.Contains(t, string(out), tc.want)
	}
}
