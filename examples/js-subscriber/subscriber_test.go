package jssubscriber_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
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
func nodeReady(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: skipping the JavaScript subscriber example")
	}
	if _, err := os.Stat("node_modules/@nats-io/jetstream"); err == nil {
		return node
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("npm is not installed and node_modules is missing: skipping the JavaScript subscriber example")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts").CombinedOutput()
	if err != nil {
		t.Skipf("npm ci failed (offline?): skipping the JavaScript subscriber example: %v\n%s", err, out)
	}
	return node
}

// The JavaScript example consumes a filtered durable consumer and decodes events through
// the registry's Confluent-compatible HTTP API.
func TestJavaScriptSubscriber(t *testing.T) {
	t.Parallel()
	node := nodeReady(t)
	ctx := t.Context()
	pool := pgtest.Pool(t)
	require.NoError(t, pgjet.Migrate(ctx, pool))
	store, err := pgjet.New(pgjet.Config{Pool: pool})
	require.NoError(t, err)
	_, err = store.Registry().RegisterFS(ctx, demoschemas.Files)
	require.NoError(t, err)
	srv := natstest.Server(t)
	nc, _ := natstest.Connect(t, srv)
	reg := httptest.NewServer(registry.NewHandler(store.Registry(), zap.NewNop()))
	t.Cleanup(reg.Close)

	cancelled := func(i int) pgjet.EventData {
		return pgjet.EventData{ID: uuid.New(), Type: "pgjet.demo.order.OrderCancelled", Data: json.RawMessage(fmt.Sprintf(
			`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","reason":"#%d","cancelled_at":"2026-11-26T10:00:00Z"}`, i))}
	}
	for i := range 3 {
		_, err := store.Append(ctx, fmt.Sprintf("order-%d", i), pgjet.NoStream, cancelled(i))
		require.NoError(t, err)
	}
	// Another category, which the filter leaves out.
	_, err = store.Append(ctx, "audit-1", pgjet.NoStream, cancelled(99))
	require.NoError(t, err)

	r, err := relay.New(relay.Config{Pool: pool, Conn: nc, PollInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	rctx, stopRelay := context.WithCancel(context.Background())
	relayDone := make(chan error, 1)
	go func() { relayDone <- r.Run(rctx) }()
	t.Cleanup(func() { stopRelay(); <-relayDone })

	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, node, "subscriber.mjs")
	cmd.Env = append(os.Environ(),
		"NATS_URL="+srv.ClientURL(), "REGISTRY_URL="+reg.URL,
		"GROUP=js-test", "FILTERS=pgjet.events.order.>", "COUNT=3")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "stderr: %s", stderr.String())

	type line struct {
		ID      string         `json:"id"`
		Stream  string         `json:"stream"`
		Version int64          `json:"version"`
		Type    string         `json:"type"`
		Data    map[string]any `json:"data"`
	}
	var got []line
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var l line
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l), "line %q", sc.Text())
		got = append(got, l)
	}
	require.Len(t, got, 3, "output:\n%s\nstderr:\n%s", out, stderr.String())
	for _, l := range got {
		require.True(t, strings.HasPrefix(l.Stream, "order-"))
		require.Equal(t, int64(1), l.Version)
		require.Equal(t, "pgjet.demo.order.OrderCancelled", l.Type)
		require.Equal(t, "#"+strings.TrimPrefix(l.Stream, "order-"), l.Data["reason"])
	}
}
