package subscription

import (
	"context"
	"errors"
	"fmt"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/avro"
	"github.com/pgjet/pgjet/internal/evolve"
	"github.com/pgjet/pgjet/internal/registry"
)

// Decoder decodes an event payload in the Confluent wire format into natural Go values
// (the shape of internal/avro's FromJSON: map[string]any for records).
type Decoder interface {
	Decode(ctx context.Context, wire []byte, eventType string) (map[string]any, error)
}

// RegistryDecoder decodes payloads with pgjet's schema registry into the newest registered
// version of their type, exactly as pgjet.Store.Decode does: the writer schema by the id
// in the payload, Avro schema resolution towards the newest version, and the upcasters on
// the way for the steps resolution cannot express. Every version of a type decodes into
// one shape. It is safe for concurrent use.
type RegistryDecoder struct {
	reg *registry.Registry
	dec *evolve.Decoder
}

// NewRegistryDecoder returns a decoder on reg (for instance pgjet.Store.Registry()) with
// the given upcasters (the ones given to pgjet.Config.Upcasters). It fails when two
// upcasters claim the same step or one is incomplete.
func NewRegistryDecoder(reg *registry.Registry, upcasters ...pgjet.Upcaster) (*RegistryDecoder, error) {
	dec, err := evolve.New(reg, upcasters...)
	if err != nil {
		return nil, fmt.Errorf("subscription: %w", err)
	}
	return &RegistryDecoder{reg: reg, dec: dec}, nil
}

// Decode implements [Decoder]. Schemas are cached; the newest version of a type is
// re-read at most once a second (the registry's LatestTTL). Data of a step that needs an
// upcaster none was given for fails with pgjet.ErrMissingUpcaster. A type registered under
// another subject than its name decodes with its own schema, provided the schema is a
// record of that name: data of another type is never passed off as the claimed one.
func (d *RegistryDecoder) Decode(ctx context.Context, wire []byte, eventType string) (map[string]any, error) {
	data, err := d.dec.Decode(ctx, eventType, wire)
	if !errors.Is(err, registry.ErrSubjectNotFound) {
		return data, err
	}
	id, payload, err := avro.SplitWire(wire)
	if err != nil {
		return nil, err
	}
	writer, err := d.reg.SchemaByID(ctx, int(id))
	if err != nil {
		return nil, err
	}
	if writer.FullName() != eventType {
		// Without a subject of the type there are no versions to check the id against:
		// the schema itself must be the type's.
		return nil, fmt.Errorf("schema id %d is %s, not %s", id, writer.FullName(), eventType)
	}
	v, err := avro.ResolveDecode(writer, writer, payload)
	if err != nil {
		return nil, err
	}
	rec, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("payload of %s is %T, not a record", eventType, v)
	}
	return rec, nil
}
