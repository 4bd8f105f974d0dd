// Package subject owns the NATS subject scheme under which pgjet publishes
// events to JetStream, so that any NATS client, in any language, can select
// events with plain JetStream subject filters.
//
// # Scheme
//
// Every event is published on
//
//	<prefix>.<category>.<type>.<stream>
//
// where
//
//   - prefix is one or more tokens, "pgjet.events" by default;
//   - category is the part of the stream id before its first '-', or the
//     whole stream id when it has no '-' (stream "order-123" has category
//     "order");
//   - type is the event's Avro full name with every '.' replaced by ':'
//     ("shop.order.OrderPlaced" becomes "shop:order:OrderPlaced"); Avro name
//     components match [A-Za-z_][A-Za-z0-9_]*, so the mapping is reversible;
//   - stream is the stream id.
//
// Category and stream tokens are encoded reversibly, byte by byte: printable
// ASCII (0x21 to 0x7E) stands for itself, except '.', '*', '>' and '~'; every
// other byte, including those four, space, control characters and each byte
// of a multi-byte UTF-8 character, becomes '~' followed by two uppercase hex
// digits. The empty string, a possible category, encodes as the lone token
// "~". Examples:
//
//	stream id        subject (default prefix, type shop.order.OrderPlaced)
//	order-123        pgjet.events.order.shop:order:OrderPlaced.order-123
//	order-1.5        pgjet.events.order.shop:order:OrderPlaced.order-1~2E5
//	user-a b         pgjet.events.user.shop:order:OrderPlaced.user-a~20b
//	café-9           pgjet.events.caf~C3~A9.shop:order:OrderPlaced.caf~C3~A9-9
//	inventory        pgjet.events.inventory.shop:order:OrderPlaced.inventory
//	-x               pgjet.events.~.shop:order:OrderPlaced.-x
//
// # Filters
//
// Because each part is one token, wildcards select along every axis:
//
//	all events                  pgjet.events.>
//	one category                pgjet.events.order.*.*
//	one type                    pgjet.events.*.shop:order:OrderPlaced.*
//	one stream                  pgjet.events.order.*.order-123
//	one category and one type   pgjet.events.order.shop:order:OrderPlaced.*
//
// The JetStream stream that holds the events binds "<prefix>.>"
// ([Scheme.StreamSubjects]).
//
// Decoding is strict: a token is accepted only in the exact form that
// encoding produces, so every subject maps to at most one (stream id, type)
// pair and back. Validating stream ids (length, UTF-8, control characters) is
// the store's job, not this package's.
package subject
