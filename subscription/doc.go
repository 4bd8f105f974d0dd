// Package subscription is the Go consumer API for pgjet's events on NATS JetStream.
//
// A [Subscriber] reads the events stream (PGJET_EVENTS by default) through a JetStream
// pull consumer and hands decoded [Event]s to a handler, one at a time or in batches:
//
//   - Group names a durable consumer; every Subscriber with the same Group shares its work
//     (competing consumers). Without a Group the consumer is ephemeral and the server
//     removes it after InactiveThreshold once the subscriber is gone.
//   - Filters select events by category, type and stream (and combinations) as JetStream
//     subject filters, so unwanted events never leave the server; Predicate filters further
//     in Go (skipped events are acknowledged and counted).
//   - Start chooses where a new consumer begins: the beginning, a JetStream sequence, a time
//     or new events only. An existing durable consumer resumes where its group left off.
//   - Acks are explicit. A handler error naks the event with exponential backoff; after
//     MaxDeliver deliveries the event is published to the dead-letter stream
//     (PGJET_DEADLETTERS, subject pgjet.deadletter.<group>) with the reason and then
//     terminated. [ListDeadLetters] and [Redrive] (and cmd/deadletters) inspect and
//     re-drive them.
//   - Ordered groups (Config.Ordered) give every event of one stream to the same member, one
//     at a time and in version order, while streams spread over the members: they read a
//     partitioned mirror of the events stream ([PartitionedStream]) through one
//     MaxAckPending-1 consumer per partition, and members share the partitions through
//     leases in the [PartitionBucket] key-value bucket, handing them over on join and leave
//     without losing or reordering events. A dead-lettered event parks its stream
//     ([ParkedBucket]): later events of the stream are held behind it in the dead-letter
//     stream while other streams flow, and [Redrive] replays them in order.
//   - [RegistryDecoder] decodes payloads into the newest shape of their type through the
//     registry and the upcasters, as pgjet.Store.Decode does.
//   - With Config.TracerProvider, each handled event (or batch) gets a consumer span, a
//     child of the event's traceparent (linked, for batches).
//   - Pulls carry idle heartbeats. Missed heartbeats, a deleted consumer and a server
//     restart are detected; the subscriber recreates its consumer and resumes where the
//     group's acknowledgements left off.
//   - Cancelling Run's context stops delivery, lets the in-flight handler finish (bounded by
//     DrainTimeout), acknowledges its work, returns unhandled prefetched events to the
//     server and releases everything Run started.
//
// Delivery is at least once. JetStream drops duplicate publishes within its duplicate
// window; beyond it, and after a redelivery whose acknowledgement was lost, a handler may
// see an event again: dedupe by (Event.StreamID, Event.Version).
//
// A [Cursor] is for a reader that keeps its position itself, in the same transaction as its
// effects (a projection and its checkpoint): it pulls events in stream order from the
// position given, takes no acknowledgements, and reports a lost delivery ([ErrGap]) instead
// of passing it over; after any failure the reader creates it again at its position. The
// projector (internal/projection, cmd/projector) reads through it.
package subscription
