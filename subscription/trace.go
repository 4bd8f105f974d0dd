package subscription

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/pgjet/pgjet/internal/telemetry"
)

// traced runs the handler on events inside a consumer span. One event's span is a child
// of the trace context in its traceparent header (a root span without one); a batch's
// span is a root linked to the trace context of each of its events.
func (s *Subscriber) traced(ctx context.Context, events []Event) error {
	attrs := []attribute.KeyValue{
		attribute.String("messaging.system", "nats"),
		attribute.String("messaging.operation.type", "process"),
		attribute.String("messaging.consumer.group.name", s.cfg.Group),
		attribute.String("messaging.destination.name", s.cfg.Stream),
		attribute.Int("messaging.batch.message_count", len(events)),
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}
	if len(events) == 1 {
		ev := events[0]
		ctx = telemetry.Extract(ctx, traceHeader(ev))
		attrs = append(attrs,
			attribute.String("messaging.destination.subject", ev.Subject),
			attribute.String("messaging.message.id", ev.ID),
			attribute.String("pgjet.stream", ev.StreamID),
			attribute.String("pgjet.type", ev.Type),
			attribute.Int64("pgjet.version", ev.Version),
			attribute.Int64("pgjet.position", ev.Position),
			attribute.Int64("messaging.nats.sequence", int64(ev.Sequence)),
		)
	} else {
		links := make([]trace.Link, 0, len(events))
		for _, ev := range events {
			sc := trace.SpanContextFromContext(telemetry.Extract(ctx, traceHeader(ev)))
			if sc.IsValid() && sc.IsRemote() {
				links = append(links, trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{
					attribute.String("messaging.message.id", ev.ID)}})
			}
		}
		opts = append(opts, trace.WithNewRoot(), trace.WithLinks(links...))
	}
	opts = append(opts, trace.WithAttributes(attrs...))
	ctx, span := s.tracer.Start(ctx, "subscription "+s.name+" process", opts...)
	err := s.call(ctx, events)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
	return err
}

// traceHeader returns the headers carrying ev's trace context: its message's, or for an
// event replayed from Postgres one made of its Traceparent.
func traceHeader(ev Event) nats.Header {
	if ev.Header != nil || ev.Traceparent == "" {
		return ev.Header
	}
	return nats.Header{HeaderTraceparent: []string{ev.Traceparent}}
}
