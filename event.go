package pgjet

import (
	"time"

	"github.com/google/uuid"
)

// EventData is an event to append.
type EventData struct {
	// ID makes appends idempotent: retrying with the same ids returns the first result.
	// Zero means a new time-ordered UUID (v7) is generated, and a retry appends again.
	ID uuid.UUID
	// Type is the Avro full name of the event's schema, e.g. "pgjet.demo.order.OrderPlaced".
	Type string
	// Data is encoded with the newest registered schema of Type: either a json.RawMessage
	// holding natural JSON, or a Go value hamba/avro can marshal (a struct with avro tags or
	// a map[string]any). Go values are held to JSON's ranges: an int beyond 32 bits for an
	// Avro int, say, fails validation rather than being cut.
	Data any
	// Metadata is free-form string pairs stored and published with the event.
	Metadata map[string]string
}

// RecordedEvent is an event as stored.
type RecordedEvent struct {
	ID       uuid.UUID
	StreamID string
	// Version is the event's place in its stream: 1, 2, 3 ... without gaps.
	Version int64
	Type    string
	// SchemaID is the registry id of the schema the event was encoded with.
	SchemaID int
	// Data is the event in the Confluent wire format: 0x00, 4-byte big-endian schema id,
	// Avro binary.
	Data     []byte
	Metadata map[string]string
	// CreatedAt is the time the appending transaction started.
	CreatedAt time.Time
	// Position is the global position: unique and increasing per stream, but not gap-free
	// and, across streams, not commit order. Use AllPosition to follow all events.
	Position int64
	// TxID is the event's transaction stamp, by which ReadAll orders: the id of the
	// transaction that wrote it, or the stamp of the stream's previous event when that is
	// larger (a transaction that took its id before the one that wrote the previous
	// version), so that a stream's stamps never decrease with its versions.
	TxID uint64
}

// AllPosition is a cursor into all events, in the order ReadAll returns them: by writing
// transaction, then position. The zero value is the start.
type AllPosition struct {
	TxID     uint64 `json:"tx_id"`
	Position int64  `json:"position"`
}

// Next returns the cursor just after e.
func (e RecordedEvent) Next() AllPosition { return AllPosition{TxID: e.TxID, Position: e.Position} }

// AppendResult says where an append's events landed.
type AppendResult struct {
	StreamID string
	// FirstVersion and LastVersion are the versions of the first and last event appended;
	// LastVersion is the stream's version after the append.
	FirstVersion, LastVersion int64
	// Positions holds each event's global position, in append order.
	Positions []int64
	// EventIDs holds each event's id, in append order (generated ones included).
	EventIDs []uuid.UUID
	// Duplicate is true when the append was a retry of one already stored: nothing new was
	// written and the original result is returned.
	Duplicate bool
}
