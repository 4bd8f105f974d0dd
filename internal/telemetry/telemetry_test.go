package telemetry

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"
)

func TestFromEnv(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		env     map[string]string
		enabled bool
		err     string
	}{
		{name: "nothing configured is off", env: nil},
		{name: "an endpoint turns it on", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, enabled: true},
		{name: "a traces endpoint turns it on", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, enabled: true},
		{name: "otlp exporter with the default endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, enabled: true},
		{name: "SDK disabled wins", env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}},
		{name: "exporter none wins", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}},
		{name: "unsupported exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, err: "zipkin"},
		{name: "unsupported protocol", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, err: "grpc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := fromLookup(ctx, "pgjet-test", func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.enabled, p.Enabled())
			_, span := p.Tracer("t").Start(ctx, "s")
			require.Equal(t, tc.enabled, span.SpanContext().IsValid(), "only a real provider mints span contexts")
			span.End()
			// Nothing listens at the endpoints: bound the flush, and expect no error only
			// from the no-op provider.
			sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
			if err := p.Shutdown(sctx); !tc.enabled {
				require.NoError(t, err)
			}
		})
	}
}

func TestNATSHeadersCarryTraceContext(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, key := range []string{"traceparent", "Traceparent", "TRACEPARENT"} {
		ctx := Extract(context.Background(), nats.Header{key: {tp}})
		sc := trace.SpanContextFromContext(ctx)
		require.True(t, sc.IsRemote(), key)
		require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", sc.TraceID().String(), key)

		h := nats.Header{}
		Inject(ctx, h)
		require.Equal(t, tp, h.Get("traceparent"), "written lower-case as the NATS contract says")
	}
	require.False(t, trace.SpanContextFromContext(Extract(context.Background(), nil)).IsValid())
	require.Empty(t, HeaderCarrier(nats.Header{}).Get("traceparent"))
}
