// Package soak is a Jepsen-style checker for pgjet: it runs concurrent writers with random
// expected versions, relays, and consumers against a real Postgres and an embedded
// nats-server while injecting faults (relays stopped and restarted, nats-server restarted,
// Postgres sessions terminated), records the history, and then checks it:
//
//   - committed == published == consumed, by event id;
//   - no event of a rolled-back or conflicting append is visible anywhere;
//   - every acknowledged append is in Postgres (an append whose outcome was unknown is
//     resolved by reading Postgres);
//   - per-stream order without gaps, on JetStream and as each consumer saw it;
//   - no duplicates in JetStream, nor delivered to a consumer.
//
// cmd/soak (make soak) runs it for a bounded time and number of events.
package soak
