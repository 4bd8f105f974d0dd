// Package pgjet is an event store on Postgres with NATS JetStream as its fan-out.
//
// A Store appends Avro-encoded events, validated against the schema registry, to a stream
// with an optimistic concurrency check, and writes an outbox row for each event in the same
// transaction. AppendTx does the same inside the caller's own pgx transaction, so a service's
// state change and its events commit together. A relay (cmd/relay) then publishes the outbox
// to JetStream, where any NATS client can consume the events.
//
// Streams are read forward or backward by version; all events are read in commit-safe order
// with ReadAll, which never skips an event whose transaction committed late.
package pgjet
