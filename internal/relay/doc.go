// Package relay moves events from the Postgres outbox to NATS JetStream.
//
// A Relay claims outbox partitions with session advisory locks (a fair share of them when
// several relays run), reads each claimed partition's rows in position order, publishes them
// asynchronously with Nats-Msg-Id set to the event id, and deletes a row only after JetStream
// acknowledged it ("duplicate" counts as success). Killed at any point, it leaves rows that a
// restarted relay publishes again; JetStream's duplicate window drops the repeats.
//
// Per-stream order: within a batch, a stream's next event is published only after the
// previous one was acknowledged, while different streams are pipelined up to Config.Window
// publishes in flight. A failed publish stops its stream for the batch, so a later event of
// that stream can never land in JetStream before an earlier one, and holds the stream back:
// its rows are left out of the reads until a retry time that backs off per stream, so a
// stream that keeps failing holds back only itself.
package relay
