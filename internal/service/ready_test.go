package service

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
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

// probe asks o's /readyz once.
func probe(t *testing.T, o *Ops) readyAnswer {
	t.Helper()
	rec := httptest.NewRecorder()
	o.Mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var a readyAnswer
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &a), "body %s", rec.Body)
	a.code = rec.Code
	return a
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
