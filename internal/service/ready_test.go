package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// newTestOps returns an Ops that logs to the returned observer.
func newTestOps(t *testing.T) (*Ops, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	return NewOps(zap.New(core)), logs
}

// readyAnswer is a decoded /readyz answer.
type readyAnswer struct {
	code   int
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

// askReadyz asks o's /readyz once with ctx; it does not touch t, so goroutines may call it.
func askReadyz(ctx context.Context, o *Ops) (readyAnswer, error) {
	rec := httptest.NewRecorder()
	o.Mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil).WithContext(ctx))
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		return readyAnswer{}, fmt.Errorf("content type %q", ct)
	}
	var a readyAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
		return readyAnswer{}, fmt.Errorf("body %s: %w", rec.Body, err)
	}
	a.code = rec.Code
	return a, nil
}

// probe asks o's /readyz once.
func probe(t *testing.T, o *Ops) readyAnswer {
	t.Helper()
	a, err := askReadyz(t.Context(), o)
	require.NoError(t, err)
	return a
}

// probeConcurrently asks o's /readyz n times at once, calling ready once all n are
// under way (if ready is not nil), and returns the answers.
func probeConcurrently(t *testing.T, o *Ops, n int, ready func()) []readyAnswer {
	t.Helper()
	answers := make([]readyAnswer, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { answers[i], errs[i] = askReadyz(t.Context(), o) })
	}
	if ready != nil {
		ready()
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	return answers
}

// /readyz answers 200 "ready" when every check passes and 503 "not ready" with each
// check's error when one fails.
func TestReadyzAnswers(t *testing.T) {
	t.Parallel()
	o, _ := newTestOps(t)
	o.AddCheck("a", func(context.Context) error { return nil })
	a := probe(t, o)
	require.Equal(t, readyAnswer{code: http.StatusOK, Status: "ready", Checks: map[string]string{"a": "ok"}}, a)

	o, _ = newTestOps(t)
	o.AddCheck("a", func(context.Context) error { return nil })
	o.AddCheck("b", func(context.Context) error { return errors.New("b is broken") })
	a = probe(t, o)
	require.Equal(t, readyAnswer{code: http.StatusServiceUnavailable, Status: "not ready",
		Checks: map[string]string{"a": "ok", "b": "b is broken"}}, a)
}

// The checks run concurrently: each of two checks waits until the other has started, and
// both pass. Run one after the other, the first would wait until its budget ran out.
func TestReadyzRunsChecksConcurrently(t *testing.T) {
	t.Parallel()
	o, _ := newTestOps(t)
	aStarted, bStarted := make(chan struct{}), make(chan struct{})
	meet := func(mine, other chan struct{}) Check {
		return func(ctx context.Context) error {
			close(mine)
			select {
			case <-other:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	o.AddCheck("a", meet(aStarted, bStarted))
	o.AddCheck("b", meet(bStarted, aStarted))
	require.Equal(t, map[string]string{"a": "ok", "b": "ok"}, probe(t, o).Checks)
}

// A check that outlasts its budget is reported as timed out after that budget; it does
// not spend the budget of the checks after it, which pass.
func TestReadyzSlowCheckTimesOutAlone(t *testing.T) {
	t.Parallel()
	o, logs := newTestOps(t)
	o.checkTimeout = 50 * time.Millisecond
	o.AddCheck("slow", func(ctx context.Context) error {
		<-ctx.Done() // a ping waiting for a pool connection
		return ctx.Err()
	})
	o.AddCheck("fast", func(ctx context.Context) error { return ctx.Err() })
	a := probe(t, o)
	require.Equal(t, http.StatusServiceUnavailable, a.code)
	require.Equal(t, map[string]string{
		"slow": "timed out after 50ms: context deadline exceeded",
		"fast": "ok",
	}, a.Checks)
	failing := logs.FilterMessage("readiness check failing").All()
	require.Len(t, failing, 1)
	require.Equal(t, "slow", failing[0].ContextMap()["check"])
}

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// countingCheck returns a check that counts its calls and, when release is not nil,
// waits for release to close (or for its context to end) before passing.
func countingCheck(calls *atomic.Int32, release <-chan struct{}) Check {
	return func(ctx context.Context) error {
		calls.Add(1)
		if release == nil {
			return nil
		}
		select {
		case <-release:
			return ctx.Err()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// waitForWaiters waits until n probes wait for the run in flight.
func waitForWaiters(t *testing.T, o *Ops, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.running != nil && o.running.waiters == n
	}, 10*time.Second, time.Millisecond, "%d probes waiting for one run", n)
}

// Probes that arrive while the checks run share that run: each check runs once for all
// of them, and all get its answer. The cache is off, so only the sharing can explain it.
func TestReadyzConcurrentProbesShareOneRun(t *testing.T) {
	t.Parallel()
	o, _ := newTestOps(t)
	o.maxAge = 0
	release := make(chan struct{})
	var aCalls, bCalls atomic.Int32
	o.AddCheck("a", countingCheck(&aCalls, release))
	o.AddCheck("b", countingCheck(&bCalls, nil))

	const probes = 8
	answers := probeConcurrently(t, o, probes, func() {
		waitForWaiters(t, o, probes)
		close(release)
	})
	for _, a := range answers {
		require.Equal(t, readyAnswer{code: http.StatusOK, Status: "ready",
			Checks: map[string]string{"a": "ok", "b": "ok"}}, a)
	}
	require.EqualValues(t, 1, aCalls.Load())
	require.EqualValues(t, 1, bCalls.Load())

	probe(t, o)
	require.EqualValues(t, 2, aCalls.Load(), "without a cache, a probe after the run runs the checks again")
}

// A prober that leaves does not cancel the run the others wait for.
func TestReadyzProberLeavingDoesNotCancelTheRun(t *testing.T) {
	t.Parallel()
	o, _ := newTestOps(t)
	release := make(chan struct{})
	var calls atomic.Int32
	o.AddCheck("a", countingCheck(&calls, release))

	ctx, cancel := context.WithCancel(t.Context())
	left := make(chan readyAnswer, 1)
	go func() {
		a, _ := askReadyz(ctx, o)
		left <- a
	}()
	waitForWaiters(t, o, 1)
	stayed := make(chan readyAnswer, 1)
	go func() {
		a, _ := askReadyz(t.Context(), o)
		stayed <- a
	}()
	waitForWaiters(t, o, 2)
	cancel()
	require.Equal(t, http.StatusServiceUnavailable, (<-left).code)
	close(release)
	require.Equal(t, map[string]string{"a": "ok"}, (<-stayed).Checks)
	require.EqualValues(t, 1, calls.Load())
}

// A result younger than readyMaxAge answers without running the checks; an older one does
// not. Failing results are kept as long as passing ones.
func TestReadyzServesAFreshResultFromMemory(t *testing.T) {
	t.Parallel()
	o, _ := newTestOps(t)
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	o.now = clock.Now
	var calls atomic.Int32
	var broken atomic.Bool
	o.AddCheck("a", func(context.Context) error {
		calls.Add(1)
		if broken.Load() {
			return errors.New("a is broken")
		}
		return nil
	})

	require.Equal(t, http.StatusOK, probe(t, o).code)
	broken.Store(true)
	clock.Advance(readyMaxAge - time.Nanosecond)
	require.Equal(t, http.StatusOK, probe(t, o).code, "served from memory")
	require.EqualValues(t, 1, calls.Load())

	clock.Advance(time.Nanosecond)
	require.Equal(t, http.StatusServiceUnavailable, probe(t, o).code, "expired: the checks ran again")
	require.EqualValues(t, 2, calls.Load())
	broken.Store(false)
	require.Equal(t, http.StatusServiceUnavailable, probe(t, o).code, "a failing result is served from memory too")
	require.EqualValues(t, 2, calls.Load())

	o.AddCheck("b", func(context.Context) error { return nil })
	require.Equal(t, map[string]string{"a": "ok", "b": "ok"}, probe(t, o).Checks, "a new check runs on the next probe")
	require.EqualValues(t, 3, calls.Load())
}

// A check that starts failing is logged once and once when it recovers, however many
// probes see it in between, concurrent or not.
func TestReadyzLogsTransitionsOnce(t *testing.T) {
	t.Parallel()
	o, logs := newTestOps(t)
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	o.now = clock.Now
	var broken atomic.Bool
	o.AddCheck("a", func(context.Context) error {
		if broken.Load() {
			return errors.New("a is broken")
		}
		return nil
	})
	o.AddCheck("b", func(context.Context) error { return nil })
	probeAll := func() {
		probeConcurrently(t, o, 4, nil)
		clock.Advance(readyMaxAge)
	}
	count := func(msg string) int {
		n := 0
		for _, e := range logs.FilterMessage(msg).All() {
			require.Equal(t, "a", e.ContextMap()["check"], "%s: %v", msg, e.ContextMap())
			n++
		}
		return n
	}

	probeAll()
	broken.Store(true)
	for range 3 {
		probeAll()
	}
	require.Equal(t, 1, count("readiness check failing"))
	require.Equal(t, 0, count("readiness check recovered"))
	failing := logs.FilterMessage("readiness check failing").All()[0]
	require.Equal(t, zap.WarnLevel, failing.Level)
	require.Equal(t, "a is broken", failing.ContextMap()["error"])

	broken.Store(false)
	for range 3 {
		probeAll()
	}
	require.Equal(t, 1, count("readiness check failing"))
	require.Equal(t, 1, count("readiness check recovered"))

	broken.Store(true)
	probeAll()
	require.Equal(t, 2, count("readiness check failing"), "each transition is logged")
}
