package subscription

import (
	"context"
	"errors"
	"fmt"

	"github.com/pgjet/pgjet/internal/avro"
	"github.com/pgjet/pgjet/internal/registry"
)

// Decoder decodes an event payload in the Confluent wire format into natural Go values
// (the shape of internal/avro's FromJSON: map[string]any for records).
type Decoder interface {
	Decode(ctx context.Context, wire []byte, eventType string) (map[string]any, error)
}

// RegistryDecoder decodes payloads with pgjet's schema registry: the writer schema by the
// id in the payload, read into the newest registered version of the event type by Avro
// schema resolution, so every version of a type decodes into one shape.
type RegistryDecoder struct {
	reg *registry.Registry
}

// NewRegistryDecoder returns a decoder on reg (for instance pgjet.Store.Registry()).
func NewRegistryDecoder(reg *registry.Registry) *RegistryDecoder {
	return &RegistryDecoder{reg: reg}
}

// Decode implements [Decoder]. Writer schemas are cached for good; the newest version of
// a type is re-read at most once a second (the registry's LatestTTL).
func (d *RegistryDecoder) Decode(ctx context.Context, wire []byte, eventType string) (map[string]any, error) {
	id, payload, err := avro.SplitWire(wire)
	if err != nil {
		return nil, err
	}
	writer, err := d.reg.SchemaByID(ctx, int(id))
	if err != nil {
		return nil, err
	}
	reader := writer
	latest, err := d.reg.LatestCached(ctx, eventType)
	switch {
	case err == nil:
		reader = latest.Schema
	case errors.Is(err, registry.ErrSubjectNotFound):
		// A type registered under another subject: its own schema is the newest we know.
	default:
		return nil, err
	}
	v, err := avro.ResolveDecode(writer, reader, payload)
	if err != nil {
		return nil, err
	}
	data, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("payload of %s is %T, not a record", eventType, v)
	}
	return data, nil
}
