package main

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/pgtest"
)

const mainEnv = "PGJET_RELAY_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		os.Args = append([]string{"relay"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	pgtest.Main(m)
}

// Settings out of range stop the relay at start with exit code 2 and a message naming the
// flag and its variable: a non-positive poll interval used to panic in the first ticker,
// after the relay had connected and migrated; a non-positive outbox age kept it not ready
// while any row waited; a stray argument after the flags was ignored.
func TestSettingsAreChecked(t *testing.T) {
	t.Parallel()
	env := []string{mainEnv + "=1", "DATABASE_URL=" + pgtest.DB(t), "PGJET_DATA_DIR=" + t.TempDir(), "RELAY_HTTP_ADDR=127.0.0.1:0"}
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{env: "RELAY_POLL_INTERVAL=-1s", want: "-poll-interval (env RELAY_POLL_INTERVAL) must be more than zero, not -1s"},
		{args: []string{"-poll-interval", "0s"}, want: "-poll-interval (env RELAY_POLL_INTERVAL) must be more than zero, not 0s"},
		{env: "RELAY_OUTBOX_MAX_AGE=0s", want: "-outbox-max-age (env RELAY_OUTBOX_MAX_AGE) must be more than zero"},
		{args: []string{"-replicas", "-3"}, want: "-replicas (env PGJET_STREAM_REPLICAS) must not be negative"},
		{env: "PGJET_DUPLICATE_WINDOW=-2m", want: "-duplicate-window (env PGJET_DUPLICATE_WINDOW) must not be negative"},
		{args: []string{"-max-bytes", "-1"}, want: "-max-bytes (env PGJET_MAX_BYTES) must not be negative"},
		{args: []string{"-batch-size", "100", "migrate"}, want: `unexpected argument "migrate"`},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], tc.args...)
		cmd.Env = append(append(os.Environ(), env...), tc.env)
		out, _ := cmd.CombinedOutput()
		require.Equal(t, 2, cmd.ProcessState.ExitCode(), "%v %s: %s", tc.args, tc.env, out)
		require.Contains(t, string(out), tc.want)
		require.NotContains(t, string(out), "panic")
	}
}
