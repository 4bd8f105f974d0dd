// Package telemetry builds pgjet's OpenTelemetry tracer provider and carries W3C trace
// context across NATS messages.
//
// Tracing is off unless the standard OpenTelemetry environment variables ask for it
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or
// OTEL_TRACES_EXPORTER=otlp); then spans are exported over OTLP/HTTP, configured by the other
// OTEL_* variables (headers, sampler, resource attributes). Off, the provider is the no-op
// one: starting a span allocates nothing and records nothing, but an incoming trace context
// is still passed on, so a trace started upstream continues through pgjet to its consumers.
//
// The trace flows: writer request (HTTP header or NATS header traceparent) -> append span ->
// the traceparent column of the outbox row -> the relay's NATS "traceparent" header -> a
// projector or subscriber span that is a child of the append span.
package telemetry
