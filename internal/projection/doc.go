// Package projection keeps read models in Postgres up to date from the JetStream events.
//
// A Projector pulls batches from a durable JetStream consumer and applies each batch in one
// Postgres transaction that also moves the projection's checkpoint (the JetStream stream
// sequence of the last applied event). A message redelivered after a crash carries a
// sequence at or below the checkpoint and is acknowledged without being applied again: the
// effect of every event is applied exactly once.
//
// Order: a batch is fetched only after the previous one is committed and acknowledged, and a
// failed batch is negatively acknowledged as a whole, so redeliveries come first and in
// order; events are applied in stream-sequence order.
//
// One projector per projection is active at a time: it holds a Postgres advisory lock, and
// other instances stand by until its session ends. The active one re-creates its consumer at
// the checkpoint when it starts, so a restart after a crash resumes at once.
//
// Apply sees every event in the newest registered shape of its type: payloads are decoded
// through internal/evolve with Config.Upcasters, as pgjet.Store.Decode does.
//
// A projection that owns a Postgres schema (Projection.Schema) can be rebuilt from the
// first event beside the live one and swapped in atomically (Rebuild; docs/operations.md,
// "Rebuilding a projection").
package projection
