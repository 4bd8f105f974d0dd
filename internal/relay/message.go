package relay

import (
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgjet/pgjet/internal/subject"
)

// Event is what a NATS message is built from: one row of pgjet.events and, while it is
// still in the outbox, the trace context of its append.
type Event struct {
	Position  int64
	ID        string
	Stream    string
	Version   int64
	Type      string
	SchemaID  int
	Data      []byte // Confluent wire format
	CreatedAt time.Time
	// Traceparent is the W3C trace context of the append; "" for none. It is kept only in
	// the outbox row, so events re-published from pgjet.events have none.
	Traceparent string
}

// MessageOptions are the parts of a message that come from the relay's configuration.
type MessageOptions struct {
	// Subjects is the subject scheme. Required.
	Subjects subject.Scheme
	// Source is the CloudEvents source (ce-source).
	Source string
	// RegistryURL is the schema registry's base URL without a trailing slash, for
	// ce-dataschema.
	RegistryURL string
}

// Message builds the NATS message of e per the NATS contract: Confluent wire-format
// payload, Nats-Msg-Id = event id, CloudEvents binary-mode headers and pgjet's extensions.
// The relay and the verify tool's repair build messages with it, so a re-published event
// is the same message.
func Message(e Event, o MessageOptions) *nats.Msg {
	subj, err := o.Subjects.For(e.Stream, e.Type)
	if err != nil {
		// Stream ids and types are validated before they are stored; a failure here means
		// a row written by something else. Publish it where it cannot be mistaken.
		subj = o.Subjects.Prefix + "._invalid"
	}
	h := nats.Header{}
	h.Set(jetstream.MsgIDHeader, e.ID)
	h.Set("ce-specversion", "1.0")
	h.Set("ce-id", e.ID)
	h.Set("ce-source", o.Source)
	h.Set("ce-type", e.Type)
	h.Set("ce-subject", e.Stream)
	h.Set("ce-time", e.CreatedAt.UTC().Format(time.RFC3339Nano))
	h.Set("ce-datacontenttype", "application/avro")
	h.Set("ce-dataschema", o.RegistryURL+"/schemas/ids/"+strconv.Itoa(e.SchemaID))
	h.Set(HeaderSchemaID, strconv.Itoa(e.SchemaID))
	h.Set(HeaderStreamVersion, strconv.FormatInt(e.Version, 10))
	h.Set(HeaderPosition, strconv.FormatInt(e.Position, 10))
	if e.Traceparent != "" {
		h.Set(HeaderTraceparent, e.Traceparent)
	}
	return &nats.Msg{Subject: subj, Header: h, Data: e.Data}
}
