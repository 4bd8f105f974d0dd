package subscription_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/pgjet/pgjet/subscription"
)

// The trace context contractMsg's traceparent carries.
const (
	appendTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	appendSpanID  = "00f067aa0ba902b7"
)

// Each handled event gets a consumer span, a child of the append's span named by its
// traceparent header, that the handler's context carries; a failure marks it; a batch gets
// one span linked to each of its events' traces.
func TestSpansFollowTheTraceparent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	e.publish(t, "order-1", placed)
	e.publish(t, "order-2", placed)
	e.publish(t, "order-3", placed)

	var mu sync.Mutex
	var inHandler []trace.SpanContext
	failed := false
	run(t, newSub(t, e.js, subscription.Config{Group: "traced", TracerProvider: tp, MaxDeliver: -1,
		Handler: func(ctx context.Context, ev subscription.Event) error {
			mu.Lock()
			defer mu.Unlock()
			if ev.StreamID == "order-3" && !failed {
				failed = true
				return errors.New("once")
			}
			inHandler = append(inHandler, trace.SpanContextFromContext(ctx))
			return nil
		}}))
	run(t, newSub(t, e.js, subscription.Config{Group: "traced-batch", TracerProvider: tp, BatchSize: 3, BatchWait: time.Second,
		BatchHandler: func(context.Context, []subscription.Event) error { return nil }}))

	eventually(t, "5 spans", func() bool { return len(sr.Ended()) >= 5 })
	var single, errored, batch []sdktrace.ReadOnlySpan
	for _, s := range sr.Ended() {
		attrs := attribute.NewSet(s.Attributes()...)
		group, _ := attrs.Value("messaging.consumer.group.name")
		switch {
		case group.AsString() == "traced-batch":
			batch = append(batch, s)
		case s.Status().Code == codes.Error:
			errored = append(errored, s)
		default:
			single = append(single, s)
		}
	}
	require.Len(t, single, 3)
	require.Len(t, errored, 1)
	require.Len(t, batch, 1)
	for _, s := range append(single, errored...) {
		require.Equal(t, trace.SpanKindConsumer, s.SpanKind())
		require.Equal(t, appendTraceID, s.SpanContext().TraceID().String())
		require.Equal(t, appendSpanID, s.Parent().SpanID().String(), "a child of the append's span")
		require.True(t, s.Parent().IsRemote())
		attrs := attribute.NewSet(s.Attributes()...)
		stream, ok := attrs.Value("pgjet.stream")
		require.True(t, ok)
		require.Contains(t, []string{"order-1", "order-2", "order-3"}, stream.AsString())
	}
	require.Equal(t, "once", errored[0].Status().Description)
	mu.Lock()
	for _, sc := range inHandler {
		require.Equal(t, appendTraceID, sc.TraceID().String(), "the handler's context carries the span")
		require.NotEqual(t, appendSpanID, sc.SpanID().String())
	}
	mu.Unlock()
	b := batch[0]
	require.False(t, b.Parent().IsValid(), "a batch span is a root")
	require.Len(t, b.Links(), 3)
	for _, l := range b.Links() {
		require.Equal(t, appendTraceID, l.SpanContext.TraceID().String())
		require.Equal(t, appendSpanID, l.SpanContext.SpanID().String())
	}
}
