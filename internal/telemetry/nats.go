package telemetry

import (
	"context"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
)

// propagator is W3C trace context: the traceparent and tracestate headers.
var propagator = propagation.TraceContext{}

// HeaderCarrier adapts NATS headers to OpenTelemetry propagation. NATS keeps header names
// as sent, so Get matches names without regard to case; Set writes lower-case names
// (traceparent), as the NATS contract documents.
type HeaderCarrier nats.Header

// Get returns the first value of key, matched without case.
func (c HeaderCarrier) Get(key string) string {
	if v := nats.Header(c).Get(key); v != "" {
		return v
	}
	for k, vs := range c {
		if strings.EqualFold(k, key) && len(vs) > 0 {
			return vs[0]
		}
	}
	return ""
}

// Set sets key to value.
func (c HeaderCarrier) Set(key, value string) { c[strings.ToLower(key)] = []string{value} }

// Keys lists the header names.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// Extract returns ctx with the remote span context of h's traceparent, if any.
func Extract(ctx context.Context, h nats.Header) context.Context {
	if len(h) == 0 {
		return ctx
	}
	return propagator.Extract(ctx, HeaderCarrier(h))
}

// Inject writes ctx's span context into h as traceparent (and tracestate). h must not be
// nil.
func Inject(ctx context.Context, h nats.Header) { propagator.Inject(ctx, HeaderCarrier(h)) }
