package opstest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/pgtest"
	"github.com/pgjet/pgjet/internal/projection"
	"github.com/pgjet/pgjet/internal/registry"
	"github.com/pgjet/pgjet/internal/relay"
	"github.com/pgjet/pgjet/internal/writer"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

// One trace shows the whole life of an event: an append over HTTP (continuing the caller's
// traceparent) or over NATS (starting a trace) gets an "append" span; its context goes
// into the outbox row and the relay's traceparent header; the projector's span for the
// event is the append span's child, and the projection's Apply runs inside it.
func TestTraceFlowsFromAppendToProjector(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	require.NoError(t, pgjet.Migrate(ctx, pool))
	store, err := pgjet.New(pgjet.Config{Pool: pool})
	require.NoError(t, err)
	_, err = store.Registry().RegisterFS(ctx, demoschemas.Files)
	require.NoError(t, err)
	srv := natstest.Server(t)
	nc, _ := natstest.Connect(t, srv)

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	h, err := writer.NewHandler(writer.HandlerConfig{Store: store, TracerProvider: tp})
	require.NoError(t, err)
	api := httptest.NewServer(h)
	t.Cleanup(api.Close)
	natsAPI, err := writer.NewNATSService(writer.NATSConfig{Store: store, Conn: nc, Subject: "test.append", TracerProvider: tp})
	require.NoError(t, err)

	r, err := relay.New(relay.Config{Pool: pool, Conn: nc, PollInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	reg, err := registry.New(registry.Config{Pool: pool})
	require.NoError(t, err)
	var (
		mu       sync.Mutex
		applyCtx = map[string]trace.SpanContext{} // stream -> span context Apply ran in
	)
	p, err := projection.New(projection.Config{
		Pool: pool, Conn: nc, Registry: reg, IdleWait: 100 * time.Millisecond, TracerProvider: tp,
		Projection: projection.Projection{Name: "traced", Apply: func(ctx context.Context, _ pgx.Tx, ev projection.Event) error {
			mu.Lock()
			defer mu.Unlock()
			applyCtx[ev.StreamID] = trace.SpanContextFromContext(ctx)
			return nil
		}},
	})
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{natsAPI.Run, r.Run, p.Run} {
		wg.Go(func() { require.NoError(t, run(runCtx)) })
	}
	t.Cleanup(func() { stop(); wg.Wait() })

	// Over HTTP, continuing the caller's trace.
	const callerTrace, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req, err := http.NewRequest(http.MethodPost, api.URL+"/streams/order-http", bytes.NewBufferString(
		fmt.Sprintf(`{"expected_version":"no_stream","events":[%s]}`, cancelledEvent("http"))))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// Over NATS, without a trace: the append starts one.
	eventually(t, 10*time.Second, "the NATS append endpoint answers", func() bool {
		msg, err := nc.Request("test.append", []byte(fmt.Sprintf(`{"stream":"order-nats","expected_version":"any","events":[%s]}`, cancelledEvent("nats"))), 5*time.Second)
		return err == nil && msg.Header.Get(writer.StatusHeader) == "200"
	})

	spans := func(name string) []sdktrace.ReadOnlySpan {
		var out []sdktrace.ReadOnlySpan
		for _, s := range rec.Ended() {
			if s.Name() == name {
				out = append(out, s)
			}
		}
		return out
	}
	eventually(t, 30*time.Second, "both events are applied", func() bool {
		return len(spans("projection traced apply")) >= 2
	})

	appends := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans("append") {
		for _, a := range s.Attributes() {
			if a.Key == "pgjet.stream" {
				appends[a.Value.AsString()] = s
			}
		}
	}
	require.Len(t, appends, 2)
	httpAppend := appends["order-http"]
	require.Equal(t, callerTrace, httpAppend.SpanContext().TraceID().String(), "the HTTP append continues the caller's trace")
	require.Equal(t, callerSpan, httpAppend.Parent().SpanID().String())
	require.True(t, httpAppend.Parent().IsRemote())
	natsAppend := appends["order-nats"]
	require.False(t, natsAppend.Parent().IsValid(), "the NATS append without traceparent starts a trace")

	for _, s := range spans("projection traced apply") {
		var stream string
		for _, a := range s.Attributes() {
			if a.Key == "pgjet.stream" {
				stream = a.Value.AsString()
			}
		}
		parent := appends[stream]
		require.NotNil(t, parent, "a projection span for stream %q", stream)
		require.Equal(t, parent.SpanContext().TraceID(), s.SpanContext().TraceID(), "%s: same trace", stream)
		require.Equal(t, parent.SpanContext().SpanID(), s.Parent().SpanID(), "%s: child of the append span", stream)
		require.Equal(t, trace.SpanKindConsumer, s.SpanKind())
		mu.Lock()
		require.Equal(t, s.SpanContext().SpanID(), applyCtx[stream].SpanID(), "%s: Apply runs inside the span", stream)
		mu.Unlock()
	}
}
