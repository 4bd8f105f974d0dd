package avro

import (
	"fmt"
	"slices"

	havro "github.com/hamba/avro/v2"
)

// maxResolved bounds the per-reader cache of resolved schemas.
const maxResolved = 1024

// Decode unmarshals Avro binary written with this schema into native values,
// the shape FromJSON documents. The payload must hold exactly one record:
// truncated data, trailing bytes, out-of-range indexes and lengths or counts
// beyond the package limits wrap ErrInvalidPayload, and are rejected before
// anything large is allocated.
func (s *Schema) Decode(payload []byte) (any, error) {
	return s.decode(s.avro, resolution{s.hamba(), api}, payload)
}

// ResolveDecode decodes a payload written with writer into the shape of
// reader, using Avro schema resolution: fields the reader added take their
// defaults, fields it dropped are skipped, int/long/float promote, and reader
// field aliases match renamed writer fields. The two records must be versions
// of one type: the same full name, or the writer's full name among the
// reader's aliases. Other pairs, and incompatible schemas, wrap
// ErrIncompatibleSchema (so a payload whose schema id belongs to another type
// is an error, never a wrong decode); bad payloads wrap ErrInvalidPayload.
// Resolutions are cached on reader, so repeated calls are cheap.
func ResolveDecode(writer, reader *Schema, payload []byte) (any, error) {
	rs, err := reader.resolvedFrom(writer)
	if err != nil {
		return nil, err
	}
	return reader.decode(writer.avro, rs, payload)
}

// hamba returns the schema hamba decodes s's data with: s's own, or its copy without
// local-timestamp logical types (see wallclock.go).
func (s *Schema) hamba() havro.Schema {
	if s.wall != nil {
		return s.wall.plain
	}
	return s.avro
}

// resolvedFrom returns the resolution that reads writer's data into s.
func (s *Schema) resolvedFrom(writer *Schema) (resolution, error) {
	if writer.fingerprint == s.fingerprint {
		return resolution{s.hamba(), api}, nil
	}
	s.mu.Lock()
	res, ok := s.resolved[writer.fingerprint]
	s.mu.Unlock()
	if ok {
		return res, nil
	}
	// hamba compares short names only, so shop.a.Placed would resolve to shop.b.Placed.
	if writer.fullName != s.fullName && !slices.Contains(s.avro.(*havro.RecordSchema).Aliases(), writer.fullName) {
		return resolution{}, &IncompatibleError{Writer: writer.fullName, Reader: s.fullName,
			Reason: fmt.Sprintf("data written with %s is not of type %s (and %s has no such alias)", writer.fullName, s.fullName, s.fullName)}
	}
	rs, err := havro.NewSchemaCompatibility().Resolve(s.avro, writer.avro)
	if err == nil && (s.wall != nil || writer.wall != nil) {
		rs, err = havro.NewSchemaCompatibility().Resolve(s.hamba(), writer.hamba())
	}
	if err != nil {
		return resolution{}, &IncompatibleError{Writer: writer.fullName, Reader: s.fullName, Reason: err.Error()}
	}
	// hamba would decode these pairs into other values than were written (a decimal's
	// scale, a timestamp's unit) or fail on each payload; the registry refuses them, but a
	// pair registered before it did must not be read wrongly either.
	if err := CheckResolution(writer, s); err != nil {
		return resolution{}, err
	}
	res = resolution{schema: rs, api: apiConfig.Freeze()}
	s.mu.Lock()
	if s.resolved == nil || len(s.resolved) >= maxResolved {
		s.resolved = map[[32]byte]resolution{}
	}
	s.resolved[writer.fingerprint] = res
	s.mu.Unlock()
	return res, nil
}

// decode checks payload against the writer schema, then lets hamba decode it with read
// (the writer's hamba schema, or one resolved into s), and gives the result the native
// shape of s.
func (s *Schema) decode(writer havro.Schema, read resolution, payload []byte) (any, error) {
	if err := checkPayload(writer, payload); err != nil {
		return nil, err
	}
	r := havro.NewReader(nil, 0, havro.WithReaderConfig(read.api)).Reset(payload)
	var v any
	r.ReadVal(read.schema, &v)
	if r.Error != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPayload, r.Error)
	}
	// Unlike api.Unmarshal, insist that the record used every byte.
	if r.Peek(); r.Error == nil {
		return nil, fmt.Errorf("%w: bytes after the end of the record", ErrInvalidPayload)
	}
	if read.schema != s.hamba() {
		v = reshape(s.hamba(), read.schema, v)
	}
	if s.wall != nil {
		v = s.wall.native(s.avro, s.wall.plain, v)
	}
	return v, nil
}
