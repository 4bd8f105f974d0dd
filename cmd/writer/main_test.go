package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/pgtest"
)

// runMainEnv makes the test binary run the writer's main instead of its tests, so the
// tests can start the real binary without building it.
const runMainEnv = "PGJET_WRITER_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	pgtest.Main(m)
}

// syncBuffer collects a child's output while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// writerProcess starts the writer with env and args; its output collects in the buffer.
func writerProcess(t *testing.T, env []string, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), append([]string{runMainEnv + "=1"}, env...)...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, out
}

func waitExit(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		return cmd.ProcessState.ExitCode()
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatal("the writer did not exit")
		return -1
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// The writer starts with a secret in every input (the database password and
// sslpassword, the NATS password in the URL, a NATS token, the API token); none of them
// shows up in its logs (at debug level), in /metrics, in its HTTP answers, in -h, or in the
// error of a failed start. Writes need the API token; reads and /metrics do not.
func TestSecretsStayOutOfLogsAndMetrics(t *testing.T) {
	t.Parallel()
	const (
		dbPassword    = "db-pw-S3CRET-1"
		dbSSLPassword = "db-sslpw-S3CRET-2"
		natsPassword  = "nats-pw-S3CRET-3"
		natsToken     = "nats-token-S3CRET-4"
		apiToken      = "api-token-S3CRET-5"
	)
	secrets := []string{dbPassword, dbSSLPassword, natsPassword, natsToken, apiToken}

	u, err := url.Parse(pgtest.DB(t))
	if err != nil || !strings.HasPrefix(u.Scheme, "postgres") {
		t.Skip("the test server's URL is a key=value DSN")
	}
	u.User = url.UserPassword(u.User.Username(), dbPassword) // trust auth ignores it
	q := u.Query()
	q.Set("sslpassword", dbSSLPassword)
	u.RawQuery = q.Encode()

	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: t.TempDir(), Username: "writer", Password: natsPassword})
	require.NoError(t, err)
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	require.True(t, ns.ReadyForConnections(10*time.Second))
	natsURL := "nats://writer:" + natsPassword + "@" + strings.TrimPrefix(ns.ClientURL(), "nats://")

	addr := freeAddr(t)
	env := []string{
		"DATABASE_URL=" + u.String(),
		"NATS_URL=" + natsURL,
		"NATS_TOKEN=" + natsToken, // ignored: the URL's user info wins, as in nats.go
		"WRITER_API_TOKEN=" + apiToken,
		"WRITER_HTTP_ADDR=" + addr,
		"PGJET_DATA_DIR=" + t.TempDir(),
		"LOG_FORMAT=json",
		"LOG_LEVEL=debug",
	}
	cmd, logs := writerProcess(t, env)

	base := "http://" + addr
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 50*time.Millisecond, "the writer never got ready; output:\n%s", logs)

	do := func(method, path, token, body string) (int, string, http.Header) {
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b), resp.Header
	}
	var answers strings.Builder
	check := func(method, path, token, body string, want int) string {
		t.Helper()
		code, b, h := do(method, path, token, body)
		require.Equal(t, want, code, "%s %s: %s", method, path, b)
		answers.WriteString(b)
		if want == http.StatusUnauthorized {
			require.Contains(t, h.Get("WWW-Authenticate"), "Bearer")
		}
		return b
	}
	// Writes: refused without the token or with a wrong one, in each API's error shape.
	require.Contains(t, check("POST", "/streams/order-1", "", `{"events":[]}`, 401), `"code":"unauthorized"`)
	require.Contains(t, check("POST", "/streams/order-1", "wrong", `{"events":[]}`, 401), `"code":"unauthorized"`)
	require.Contains(t, check("POST", "/subjects/x/versions", "", `{"schema":"\"string\""}`, 401), `"error_code":401`)
	require.Contains(t, check("PUT", "/config", "", `{"compatibility":"NONE"}`, 401), `"error_code":401`)
	// With the token they reach the APIs (which reject this empty append on its merits).
	check("POST", "/streams/order-1", apiToken, `{"events":[]}`, http.StatusBadRequest)
	check("PUT", "/config", apiToken, `{"compatibility":"FULL"}`, http.StatusOK)
	// Reads and operations stay open.
	check("GET", "/subjects", "", "", http.StatusOK)
	check("GET", "/config", "", "", http.StatusOK)
	check("GET", "/healthz", "", "", http.StatusOK)
	metrics := check("GET", "/metrics", "", "", http.StatusOK)
	require.Contains(t, metrics, `pgjet_http_requests_total{api="append",code="401",method="post"} 2`)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, waitExit(t, cmd), "output:\n%s", logs)
	out := logs.String()
	require.Contains(t, out, `"msg":"serving HTTP"`)
	require.Contains(t, out, `"msg":"connected to NATS"`)
	require.Contains(t, out, "writer:xxxxx@127.0.0.1")

	// -h, and a start that fails on a bad NATS password and on a malformed database URL.
	help, helpOut := writerProcess(t, env, "-h")
	require.Equal(t, 0, waitExit(t, help))
	require.Contains(t, helpOut.String(), "-api-token")
	wrongNATS := append(append([]string(nil), env...), "NATS_URL=nats://writer:wrong-"+natsPassword+"@"+strings.TrimPrefix(ns.ClientURL(), "nats://"))
	failed, failedOut := writerProcess(t, wrongNATS)
	require.Equal(t, 1, waitExit(t, failed))
	require.Contains(t, failedOut.String(), "Authorization Violation")
	badDB := append(append([]string(nil), env...), "DATABASE_URL=postgres://u:"+dbPassword+"@127.0.0.1:notaport/db?sslpassword="+dbSSLPassword)
	failedDB, failedDBOut := writerProcess(t, badDB)
	require.Equal(t, 1, waitExit(t, failedDB))
	require.Contains(t, failedDBOut.String(), "database URL")

	for _, s := range secrets {
		require.NotContains(t, out, s, "a secret in the writer's log")
		require.NotContains(t, metrics, s, "a secret in /metrics")
		require.NotContains(t, answers.String(), s, "a secret in an HTTP answer")
		require.NotContains(t, helpOut.String(), s, "a secret in -h")
		require.NotContains(t, failedOut.String(), s, "a secret in a failed start's log")
		require.NotContains(t, failedDBOut.String(), s, "a secret in a failed start's log")
	}
}

// Flags end at the first argument that is not one, so "migrate" after a flag is not the
// subcommand: the writer refuses it (exit 2) rather than ignoring it and serving; a
// negative limit, or an API token no client could send (a secret file's newline), is
// refused the same way. A -schemas-dir without schemas stops the writer (exit 1) naming
// it. "migrate" first migrates and exits 0.
func TestArgumentsAndLimitsAreChecked(t *testing.T) {
	t.Parallel()
	env := []string{"DATABASE_URL=" + pgtest.DB(t), "WRITER_HTTP_ADDR=127.0.0.1:0", "PGJET_DATA_DIR=" + t.TempDir(), "LOG_FORMAT=json"}
	for _, tc := range []struct {
		args []string
		env  string
		code int
		want string
	}{
		{args: []string{"-log-level", "debug", "migrate"}, code: 2, want: `unexpected argument "migrate"`},
		{args: []string{"-max-body-bytes", "-1"}, code: 2, want: "-max-body-bytes (env WRITER_MAX_BODY_BYTES) must not be negative"},
		{env: "WRITER_READ_CACHE_BYTES=-1", code: 2, want: "-read-cache-bytes (env WRITER_READ_CACHE_BYTES) must not be negative"},
		{env: "WRITER_API_TOKEN=tok-S3CRET\n", code: 2, want: "-api-token (env WRITER_API_TOKEN) starts or ends with whitespace"},
		{args: []string{"-schemas-dir", "nosuch"}, code: 1, want: "registering the schemas of -schemas-dir nosuch: "},
		{args: []string{"-schemas-dir", "."}, code: 1, want: "-schemas-dir . holds no .avsc files"},
		{args: []string{"migrate", "-log-level", "debug"}, code: 0, want: `"msg":"stopped"`},
	} {
		cmd, out := writerProcess(t, append(env, tc.env), tc.args...)
		require.Equal(t, tc.code, waitExit(t, cmd), "%v: %s", tc.args, out)
		require.Contains(t, out.String(), tc.want)
		require.NotContains(t, out.String(), "S3CRET")
	}
}

// The writer refuses to start when the largest event it would accept does not fit in the
// NATS server's max_payload: such an event would commit and never be published. With a
// limit that fits, it serves.
func TestMaxEventMustFitNATS(t *testing.T) {
	t.Parallel()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: t.TempDir(), MaxPayload: 64 << 10})
	require.NoError(t, err)
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	require.True(t, ns.ReadyForConnections(10*time.Second))
	addr := freeAddr(t)
	env := []string{"DATABASE_URL=" + pgtest.DB(t), "NATS_URL=" + ns.ClientURL(), "WRITER_HTTP_ADDR=" + addr,
		"PGJET_DATA_DIR=" + t.TempDir(), "LOG_FORMAT=json"}

	tooBig, out := writerProcess(t, env)
	require.Equal(t, 1, waitExit(t, tooBig), "output:\n%s", out)
	require.Contains(t, out.String(), "-max-event-bytes (env WRITER_MAX_EVENT_BYTES) is 1015808, but the NATS server's max_payload is 65536")

	fits, out := writerProcess(t, env, "-max-event-bytes", "60000")
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 50*time.Millisecond, "the writer never got ready; output:\n%s", out)
	require.NoError(t, fits.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, waitExit(t, fits), "output:\n%s", out)
}
