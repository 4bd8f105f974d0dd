// Package opstest holds pgjet's operational tests: each binary (writer, relay, projector)
// built and run as a real process against a test database and an in-process NATS server,
// its /metrics, /healthz and /readyz checked against docs/operations.md; the trace of an
// append followed from the writer to the projector; the Grafana dashboards and Prometheus
// rules checked against the exported metrics, their labels and their types; and the
// compose deployment's files checked without a Docker engine, against the flags and
// environment variables the binaries read.
//
// The documented metric set lives in one place, the table between the metrics:begin and
// metrics:end markers of docs/operations.md; every test here reads it from there.
package opstest
