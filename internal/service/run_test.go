package service

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet/internal/pgtest"
)

// mainModeEnv makes the test binary run Main instead of its tests: "hang" runs a binary
// whose shutdown never ends, "ok" one that returns at once.
const mainModeEnv = "PGJET_SERVICE_TEST_MAIN"

func TestMain(m *testing.M) {
	if mode := os.Getenv(mainModeEnv); mode != "" {
		var c Common
		f := NewFlags("svctest")
		c.Register(f)
		f.NoArgs("svctest [flags]")
		Main("svctest", &c, f, os.Args[1:], func(ctx context.Context, log *zap.Logger) error {
			if mode == "hang" {
				fmt.Println("running")
				time.Sleep(time.Hour) // ignores ctx, like a shutdown stuck on a dead peer
			}
			return nil
		})
		os.Exit(0)
	}
	pgtest.Main(m)
}

// mainProcess starts the test binary as a Main in mode with args; stdout and stderr go to
// the returned reader.
func mainProcess(t *testing.T, mode string, args ...string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), mainModeEnv+"="+mode, "LOG_FORMAT=json")
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	require.NoError(t, cmd.Start())
	go func() { _ = cmd.Wait(); w.Close() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd, bufio.NewReader(r)
}

// readUntil reads lines from r until one contains want, failing after a deadline; it
// returns everything read.
func readUntil(t *testing.T, r *bufio.Reader, want string) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		var b strings.Builder
		for {
			line, err := r.ReadString('\n')
			b.WriteString(line)
			if strings.Contains(line, want) || err != nil {
				got <- b.String()
				return
			}
		}
	}()
	select {
	case s := <-got:
		require.Contains(t, s, want)
		return s
	case <-time.After(30 * time.Second):
		t.Fatalf("no %q within 30s", want)
		return ""
	}
}

// A second SIGTERM ends a binary whose graceful shutdown hangs; the first one only asks
// for the shutdown.
func TestSecondSignalStopsAtOnce(t *testing.T) {
	t.Parallel()
	cmd, out := mainProcess(t, "hang")
	readUntil(t, out, "running")
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	readUntil(t, out, "a second signal stops at once")
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	exited := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, out); close(exited) }()
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatal("the second SIGTERM did not end the process")
	}
}

// -h prints the usage and exits 0; a bad flag, a bad environment value or a stray
// argument exits 2 and says what is wrong.
func TestMainExitCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		env  string
		code int
		want string
	}{
		{args: []string{"-h"}, code: 0, want: "-db-max-conns"},
		{args: []string{"-nosuch"}, code: 2, want: "flag provided but not defined"},
		{args: []string{"-db-max-conns", "-1"}, code: 2, want: "-db-max-conns (env DB_MAX_CONNS) must not be negative, not -1"},
		{args: []string{"-db-max-conns", "3000000000"}, code: 2, want: "-db-max-conns (env DB_MAX_CONNS) is too large"},
		{env: "DB_MAX_CONNS=many", code: 2, want: `env DB_MAX_CONNS: "many" is not an integer`},
		{args: []string{"-log-level", "debug", "migrate"}, code: 2, want: `unexpected argument "migrate"`},
		{code: 0, want: `"msg":"stopped"`},
	} {
		t.Run(strings.Join(append(tc.args, tc.env), " "), func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], tc.args...)
			cmd.Env = append(os.Environ(), mainModeEnv+"=ok", "LOG_FORMAT=json", tc.env)
			out, _ := cmd.CombinedOutput()
			require.Equal(t, tc.code, cmd.ProcessState.ExitCode(), "%s", out)
			require.Contains(t, string(out), tc.want)
		})
	}
}
