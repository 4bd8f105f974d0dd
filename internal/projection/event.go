package projection

import "time"

// Event is an event as a projection sees it: the contract headers, the payload and its
// decoded data.
type Event struct {
	ID       string
	StreamID string
	Version  int64
	Type     string
	Position int64
	Time     time.Time
	// SchemaID is the registry id of the schema the event was written with (Data is in the
	// newest shape regardless).
	SchemaID int
	// Sequence is the JetStream stream sequence.
	Sequence uint64
	// Data is the payload decoded into the newest registered shape of its type (Avro
	// resolution plus Config.Upcasters), as natural Go values.
	Data map[string]any
	// Raw is the payload in the Confluent wire format.
	Raw []byte
}
