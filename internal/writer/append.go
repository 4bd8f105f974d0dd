package writer

import (
	"context"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/pgjet/pgjet"
)

// appendResponse is the success body of an append, over HTTP and NATS.
type appendResponse struct {
	Stream       string      `json:"stream"`
	FirstVersion int64       `json:"first_version"`
	LastVersion  int64       `json:"last_version"`
	Positions    []int64     `json:"positions"`
	EventIDs     []uuid.UUID `json:"event_ids"`
	Duplicate    bool        `json:"duplicate"`
}

// tracerName names the writer's tracer.
const tracerName = "github.com/pgjet/pgjet/internal/writer"

// tracerOf returns tp's tracer, or a no-op one for a nil tp.
func tracerOf(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return tp.Tracer(tracerName)
}

// appendTo appends the request's events to stream inside an "append" span, a child of the
// trace context in ctx (the request's traceparent). The store writes the span's context to
// the outbox rows, so it travels on with the events.
func appendTo(ctx context.Context, tracer trace.Tracer, via string, store *pgjet.Store, stream string, req appendRequest) (appendResponse, error) {
	ctx, span := tracer.Start(ctx, "append", trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		attribute.String("pgjet.api", via),
		attribute.String("pgjet.stream", stream),
		attribute.Int("pgjet.events", len(req.Events)),
	))
	defer span.End()
	res, err := store.Append(ctx, stream, req.Expected, req.eventData()...)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return appendResponse{}, err
	}
	return appendResponse{
		Stream: res.StreamID, FirstVersion: res.FirstVersion, LastVersion: res.LastVersion,
		Positions: res.Positions, EventIDs: res.EventIDs, Duplicate: res.Duplicate,
	}, nil
}
