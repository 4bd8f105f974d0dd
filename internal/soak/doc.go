// Package soak is a Jepsen-style checker for pgjet: it runs concurrent writers with random
// expected versions, relays, consumers, a projector and a batch-handling subscription group
// against a real Postgres and an embedded nats-server while injecting faults (relays
// stopped and restarted, nats-server restarted, Postgres sessions terminated, the projector
// and group members killed in the middle of a batch), records the history, and then checks
// it:
//
//   - committed == published == consumed, by event id;
//   - no event of a rolled-back or conflicting append is visible anywhere;
//   - every acknowledged append is in Postgres (an append whose outcome was unknown is
//     resolved by reading Postgres);
//   - per-stream order without gaps, on JetStream and as each consumer saw it;
//   - no duplicates in JetStream, nor delivered to a consumer;
//   - the group got every committed event at least once, and deduplicated by (stream,
//     version) exactly the committed events;
//   - the projector's read model equals the same projection computed from Postgres alone
//     (Store.ReadAll), row by row;
//   - the run proved something: at least one append was acknowledged and Postgres holds
//     events (otherwise every check above holds vacuously), and, unless faults were
//     disabled, every kind of fault was injected at least once.
//
// cmd/soak (make soak) runs it for a bounded time and number of events.
package soak
