package pgjet

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/pgjet/pgjet/internal/avro"
)

// Decode returns an event's data in the newest registered shape of its type: decoded with
// the schema it was written with (its id is in the payload), resolved to the newest
// version of the type with Avro schema resolution (defaults for added fields, aliases for
// renamed ones, promotions), with the registered upcasters applied on the way (see
// Upcaster). Records are map[string]any of native Go values: int and long as int and
// int64, timestamps as time.Time, nullable fields as nil or the value.
//
// Only Type and Data of e are used, so a consumer of JetStream messages can decode one with
// RecordedEvent{Type: <the ce-type header>, Data: <the message data>}.
func (s *Store) Decode(ctx context.Context, e RecordedEvent) (map[string]any, error) {
	v, err := s.decoder.Decode(ctx, e.Type, e.Data)
	if err != nil {
		return nil, fmt.Errorf("decoding event %s: %w", e.ID, err)
	}
	return v, nil
}

// DecodeJSON renders an event's data as natural JSON in the newest registered shape of
// its type (see Decode).
func (s *Store) DecodeJSON(ctx context.Context, e RecordedEvent) (json.RawMessage, error) {
	js, err := s.decoder.DecodeJSON(ctx, e.Type, e.Data)
	if err != nil {
		return nil, fmt.Errorf("decoding event %s: %w", e.ID, err)
	}
	return js, nil
}

// DecodeJSONAsWritten renders an event's data as natural JSON in the shape of the schema
// it was written with, without resolution or upcasting.
func (s *Store) DecodeJSONAsWritten(ctx context.Context, e RecordedEvent) (json.RawMessage, error) {
	id, payload, err := avro.SplitWire(e.Data)
	if err != nil {
		return nil, fmt.Errorf("decoding event %s: %w", e.ID, err)
	}
	schema, err := s.registry.SchemaByID(ctx, int(id))
	if err != nil {
		return nil, fmt.Errorf("decoding event %s: %w", e.ID, err)
	}
	js, err := schema.DecodeJSON(payload)
	if err != nil {
		return nil, fmt.Errorf("decoding event %s: %w", e.ID, err)
	}
	return js, nil
}
