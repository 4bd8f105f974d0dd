// Package bench measures pgjet on the machine it runs on, beside that machine's raw
// ceilings measured in the same run: plain pgx inserts of the same rows, plain JetStream
// async publishes of the same messages. cmd/bench prints the report; BENCHMARKS.md keeps
// a recorded run.
package bench
