// Package projection keeps read models in Postgres up to date from the JetStream events.
//
// A Projector pulls batches through a subscription.Cursor and applies each batch in one
// Postgres transaction that also moves the projection's checkpoint (the JetStream stream
// sequence of the last applied event). The checkpoint is the projection's position; the
// cursor's durable consumer is only a way to read on from it and takes no
// acknowledgements. An event at or below the checkpoint is skipped: the effect of every
// event is applied exactly once.
//
// Order: a batch is fetched only after the previous one is committed, and every delivery
// must follow the one before it (consumer sequences without a gap). After a failed batch,
// a message lost in flight (a dropped connection, a restarted server) or a lost consumer,
// the projector creates its cursor again at the checkpoint and reads on from there; events
// are applied in stream-sequence order, none skipped.
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
