package jssubscriber_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/pgtest"
	"github.com/pgjet/pgjet/internal/registry"
	"github.com/pgjet/pgjet/internal/relay"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// nodeReady skips the test unless node and the example's packages are available,
// installing them with npm ci when node_modules is missing and the registry is reachable.
// The check and the install run once per test binary: the tests are parallel, and two
// npm ci at once in one directory delete and write each other's node_modules.
func nodeReady(t *testing.T) string {
	t.Helper()
	nodeSetup.once.Do(func() { nodeSetup.path, nodeSetup.skip = findNode() })
	if nodeSetup.skip != "" {
		t.Skip(nodeSetup.skip)
	}
	return nodeSetup.path
}

// nodeSetup is nodeReady's outcome: node's path, or why the tests skip.
var nodeSetup struct {
	once       sync.Once
	path, skip string
}

func findNode() (path, skip string) {
	path, err := exec.LookPath("node")
	if err != nil {
		return "", "node is not installed: skipping the JavaScript subscriber example"
	}
	if _, err := os.Stat("node_modules/@nats-io/jetstream"); err == nil {
		return path, ""
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", "npm is not installed and node_modules is missing: skipping the JavaScript subscriber example"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts").CombinedOutput()
	if err != nil {
		return "", fmt.Sprintf("npm ci failed (offline?): skipping the JavaScript subscriber example: %v\n%s", err, out)
	}
	return path, ""
}

// pipeline is a store with the demo schemas, an in-process NATS server, a relay and the
// registry's HTTP API, served through wrap.
type pipeline struct {
	store       *pgjet.Store
	natsURL     string
	registryURL string
}

func newPipeline(t *testing.T, wrap func(http.Handler) http.Handler) *pipeline {
	t.Helper()
	ctx := t.Context()
	pool := pgtest.Pool(t)
	require.NoError(t, pgjet.Migrate(ctx, pool))
	store, err := pgjet.New(pgjet.Config{Pool: pool})
	require.NoError(t, err)
	_, err = store.Registry().RegisterFS(ctx, demoschemas.Files)
	require.NoError(t, err)
	srv := natstest.Server(t)
	nc, _ := natstest.Connect(t, srv)
	reg := httptest.NewServer(wrap(registry.NewHandler(store.Registry(), zap.NewNop())))
	t.Cleanup(reg.Close)

	r, err := relay.New(relay.Config{Pool: pool, Conn: nc, PollInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	rctx, stopRelay := context.WithCancel(context.Background())
	relayDone := make(chan error, 1)
	go func() { relayDone <- r.Run(rctx) }()
	t.Cleanup(func() { stopRelay(); <-relayDone })
	return &pipeline{store: store, natsURL: srv.ClientURL(), registryURL: reg.URL}
}

func (p *pipeline) append(t *testing.T, stream string, expected pgjet.ExpectedVersion, typ, data string) {
	t.Helper()
	_, err := p.store.Append(t.Context(), stream, expected, pgjet.EventData{ID: uuid.New(), Type: typ, Data: json.RawMessage(data)})
	require.NoError(t, err)
}

// outputLine is one event as subscriber.mjs prints it.
type outputLine struct {
	ID      string         `json:"id"`
	Stream  string         `json:"stream"`
	Version int64          `json:"version"`
	Type    string         `json:"type"`
	Data    map[string]any `json:"data"`
}

// subscribe runs subscriber.mjs with env until it has printed count events.
func (p *pipeline) subscribe(t *testing.T, node string, count int, env ...string) []outputLine {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "subscriber.mjs")
	cmd.Env = append(append(os.Environ(), "NATS_URL="+p.natsURL, "REGISTRY_URL="+p.registryURL, fmt.Sprintf("COUNT=%d", count)), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "output:\n%s\nstderr:\n%s", out, stderr.String())
	var got []outputLine
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var l outputLine
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l), "line %q", sc.Text())
		got = append(got, l)
	}
	require.Len(t, got, count, "output:\n%s\nstderr:\n%s", out, stderr.String())
	return got
}

const (
	cancelledType = "pgjet.demo.order.OrderCancelled"
	capturedType  = "pgjet.demo.order.PaymentCaptured"
)

func cancelled(reason string) string {
	return fmt.Sprintf(`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","reason":%q,"cancelled_at":"2026-11-26T10:00:00Z"}`, reason)
}

// The JavaScript example consumes a filtered durable consumer and decodes events through
// the registry's Confluent-compatible HTTP API.
func TestJavaScriptSubscriber(t *testing.T) {
	t.Parallel()
	node := nodeReady(t)
	p := newPipeline(t, func(h http.Handler) http.Handler { return h })
	for i := range 3 {
		p.append(t, fmt.Sprintf("order-%d", i), pgjet.NoStream, cancelledType, cancelled(fmt.Sprintf("#%d", i)))
	}
	// Another category, which the filter leaves out.
	p.append(t, "audit-1", pgjet.NoStream, cancelledType, cancelled("#99"))

	got := p.subscribe(t, node, 3, "GROUP=js-test", "FILTERS=pgjet.events.order.>")
	for _, l := range got {
		require.True(t, strings.HasPrefix(l.Stream, "order-"))
		require.Equal(t, int64(1), l.Version)
		require.Equal(t, cancelledType, l.Type)
		require.Equal(t, "#"+strings.TrimPrefix(l.Stream, "order-"), l.Data["reason"])
	}
}

// An event whose schema the registry cannot serve for a while is decoded once it can, in
// its place: not overtaken by its stream's next event (of a type whose schema it serves)
// and then dropped as a duplicate of it.
func TestJavaScriptSubscriberKeepsStreamOrderWhenDecodingFails(t *testing.T) {
	t.Parallel()
	node := nodeReady(t)
	var (
		mu       sync.Mutex
		failPath string
		failures int
	)
	// The registry client retries a 5xx answer 3 times itself: fail 4 times, one whole
	// decode.
	p := newPipeline(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			fail := r.URL.Path == failPath && failures < 4
			if fail {
				failures++
			}
			mu.Unlock()
			if fail {
				http.Error(w, `{"error_code":50001,"message":"unavailable"}`, http.StatusInternalServerError)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	captured, err := p.store.Registry().Latest(t.Context(), capturedType)
	require.NoError(t, err)
	mu.Lock()
	failPath = fmt.Sprintf("/schemas/ids/%d", captured.ID)
	mu.Unlock()
	p.append(t, "order-1", pgjet.NoStream, capturedType,
		`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","amount_cents":1299,"method":"CARD","captured_at":"2026-11-26T10:00:00Z"}`)
	p.append(t, "order-1", pgjet.Exact(1), cancelledType, cancelled("changed their mind"))

	got := p.subscribe(t, node, 2, "GROUP=js-order")
	require.Equal(t, []int64{1, 2}, []int64{got[0].Version, got[1].Version})
	require.Equal(t, capturedType, got[0].Type)
	require.Equal(t, cancelledType, got[1].Type)
	mu.Lock()
	require.Equal(t, 4, failures, "the registry failed a whole decode")
	mu.Unlock()
}
