package service

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// startServe runs serve with lim on a free loopback port until the test ends or stop is
// called, and returns its address, stop (which returns serve's result) and its logs.
func startServe(t *testing.T, h http.Handler, lim httpLimits) (addr string, stop func() error, logs *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, "127.0.0.1:0", h, zap.New(core), lim) }()
	stop = sync.OnceValue(func() error { cancel(); return <-done })
	t.Cleanup(func() { _ = stop() })
	require.Eventually(t, func() bool {
		for _, e := range logs.FilterMessage("serving HTTP").All() {
			addr = e.ContextMap()["addr"].(string)
			return true
		}
		return false
	}, 10*time.Second, 5*time.Millisecond)
	return addr, stop, logs
}

// closedWithin reports whether the server closes conn within d, reading and discarding
// whatever it sends first.
func closedWithin(conn net.Conn, d time.Duration) bool {
	_ = conn.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, conn)
	return err == nil // EOF: the server closed it; a timeout is an error
}

// The binaries' HTTP servers refuse huge headers (431) instead of reading a megabyte of
// them.
func TestServeRefusesHugeHeaders(t *testing.T) {
	t.Parallel()
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})
	addr, _, _ := startServe(t, ok, defaultHTTPLimits())
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	require.NoError(t, err)
	req.Header.Set("X-Filler", strings.Repeat("a", 200<<10))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)

	req.Header.Set("X-Filler", strings.Repeat("a", 8<<10))
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

// A client that sends its body too slowly, or keeps an idle connection open, is cut off
// once the limits pass; neither holds a connection for ever.
func TestServeCutsOffSlowAndIdleClients(t *testing.T) {
	t.Parallel()
	lim := defaultHTTPLimits()
	lim.read, lim.idle = 300*time.Millisecond, 300*time.Millisecond
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(w, r.Body) })
	addr, _, _ := startServe(t, echo, lim)

	slow, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer slow.Close()
	_, err = io.WriteString(slow, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part of it")
	require.NoError(t, err)
	require.True(t, closedWithin(slow, 5*time.Second), "a body that never arrives holds the connection")

	idle, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer idle.Close()
	_, err = io.WriteString(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, closedWithin(idle, 5*time.Second), "an idle keep-alive connection stays open")
}

// At shutdown the server waits for requests in flight up to its limit, then closes their
// connections and returns without an error: a stuck request neither holds the process nor
// turns a requested stop into a failure.
func TestServeShutdownIsBounded(t *testing.T) {
	t.Parallel()
	lim := defaultHTTPLimits()
	lim.shutdown = 300 * time.Millisecond
	started, release := make(chan struct{}), make(chan struct{})
	stuck := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
	})
	defer close(release)
	addr, stop, logs := startServe(t, stuck, lim)
	clientErr := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
		}
		clientErr <- err
	}()
	<-started
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	select {
	case err := <-stopped:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after its shutdown limit")
	}
	require.Error(t, <-clientErr, "the stuck request's connection is closed")
	require.Equal(t, 1, logs.FilterMessageSnippet("closing their connections").Len())
}
