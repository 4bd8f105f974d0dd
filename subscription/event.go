package subscription

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers of the NATS contract that Event carries (see the README's NATS contract).
const (
	HeaderID            = "ce-id"
	HeaderType          = "ce-type"
	HeaderStream        = "ce-subject"
	HeaderTime          = "ce-time"
	HeaderStreamVersion = "ce-streamversion"
	HeaderPosition      = "ce-position"
	HeaderSchemaID      = "ce-schemaid"
	HeaderTraceparent   = "traceparent"
)

// Event is one delivered event: the contract headers, the JetStream delivery facts, the
// raw payload and, with a Decoder, its decoded data.
type Event struct {
	// ID is the event id (ce-id, also Nats-Msg-Id).
	ID string
	// StreamID is the event's stream (ce-subject), e.g. "order-123".
	StreamID string
	// Version is the event's version in its stream (ce-streamversion): 1, 2, 3 ...
	// (StreamID, Version) identifies an event for deduplication.
	Version int64
	// Type is the Avro full name of the event type (ce-type).
	Type string
	// Position is the event's global position in Postgres (ce-position).
	Position int64
	// Time is when the appending transaction started (ce-time).
	Time time.Time
	// SchemaID is the registry id of the writer schema (ce-schemaid), 0 if absent.
	SchemaID int
	// Traceparent is the W3C trace context of the append, "" if there was none.
	Traceparent string
	// Subject is the NATS subject the event was published to.
	Subject string
	// Sequence is the event's JetStream stream sequence.
	Sequence uint64
	// Delivered counts deliveries of this event to the group, 1 the first time.
	Delivered uint64
	// Header holds every header of the message.
	Header nats.Header
	// Raw is the payload in the Confluent wire format (0x00, schema id, Avro binary).
	Raw []byte
	// Data is the payload decoded by Config.Decoder into the newest shape of its type, nil
	// without a decoder.
	Data map[string]any
}

// eventFrom reads the contract headers and delivery metadata of msg.
func eventFrom(msg jetstream.Msg) (Event, error) {
	h := msg.Headers()
	md, err := msg.Metadata()
	if err != nil {
		return Event{}, fmt.Errorf("reading message metadata: %w", err)
	}
	e, err := parseHeaders(h)
	e.Subject, e.Sequence, e.Delivered, e.Raw = msg.Subject(), md.Sequence.Stream, md.NumDelivered, msg.Data()
	return e, err
}

// parseHeaders reads the contract headers h of an event message. It fails when a required
// header is missing or malformed.
func parseHeaders(h nats.Header) (Event, error) {
	var err error
	e := Event{
		ID: h.Get(HeaderID), StreamID: h.Get(HeaderStream), Type: h.Get(HeaderType),
		Traceparent: h.Get(HeaderTraceparent), Header: h,
	}
	if e.ID == "" || e.StreamID == "" || e.Type == "" {
		return e, errors.New("message lacks ce-id, ce-subject or ce-type")
	}
	if e.Version, err = strconv.ParseInt(h.Get(HeaderStreamVersion), 10, 64); err != nil {
		return e, fmt.Errorf("bad %s: %w", HeaderStreamVersion, err)
	}
	if e.Position, err = strconv.ParseInt(h.Get(HeaderPosition), 10, 64); err != nil {
		return e, fmt.Errorf("bad %s: %w", HeaderPosition, err)
	}
	if e.Time, err = time.Parse(time.RFC3339Nano, h.Get(HeaderTime)); err != nil {
		return e, fmt.Errorf("bad %s: %w", HeaderTime, err)
	}
	if s := h.Get(HeaderSchemaID); s != "" {
		if e.SchemaID, err = strconv.Atoi(s); err != nil {
			return e, fmt.Errorf("bad %s: %w", HeaderSchemaID, err)
		}
	}
	return e, nil
}
