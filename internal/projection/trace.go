package projection

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/pgjet/pgjet/internal/telemetry"
	"github.com/pgjet/pgjet/subscription"
)

// startSpan starts the span of applying ev, a child of the append whose trace context the
// delivered event's traceparent header carries (a root span without one).
func (p *Projector) startSpan(ctx context.Context, d subscription.Event, ev Event) (context.Context, trace.Span) {
	ctx = telemetry.Extract(ctx, d.Header)
	return p.tracer.Start(ctx, "projection "+p.cfg.Projection.Name+" apply",
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", d.Subject),
			attribute.String("messaging.message.id", ev.ID),
			attribute.String("pgjet.projection", p.cfg.Projection.Name),
			attribute.String("pgjet.stream", ev.StreamID),
			attribute.String("pgjet.type", ev.Type),
			attribute.Int64("pgjet.version", ev.Version),
			attribute.Int64("pgjet.position", ev.Position),
		))
}

// endSpan ends span, recording err.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
