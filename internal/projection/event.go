package projection

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

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

// parseHeaders reads the NATS contract headers of msg.
func parseHeaders(msg jetstream.Msg) (Event, error) {
	h := msg.Headers()
	md, err := msg.Metadata()
	if err != nil {
		return Event{}, fmt.Errorf("reading message metadata: %w", err)
	}
	e := Event{
		ID: h.Get("ce-id"), StreamID: h.Get("ce-subject"), Type: h.Get("ce-type"),
		Sequence: md.Sequence.Stream, Raw: msg.Data(),
	}
	if e.ID == "" || e.StreamID == "" || e.Type == "" {
		return Event{}, errors.New("message lacks ce-id, ce-subject or ce-type")
	}
	if e.Version, err = strconv.ParseInt(h.Get("ce-streamversion"), 10, 64); err != nil {
		return Event{}, fmt.Errorf("bad ce-streamversion: %w", err)
	}
	if e.Position, err = strconv.ParseInt(h.Get("ce-position"), 10, 64); err != nil {
		return Event{}, fmt.Errorf("bad ce-position: %w", err)
	}
	if e.Time, err = time.Parse(time.RFC3339Nano, h.Get("ce-time")); err != nil {
		return Event{}, fmt.Errorf("bad ce-time: %w", err)
	}
	return e, nil
}
