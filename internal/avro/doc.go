// Package avro owns pgjet's event encoding: parsing event schemas, turning
// the natural JSON a client sends into Avro binary with field-by-field
// validation, turning stored Avro back into JSON, reading old events with a
// newer schema, and the Confluent wire format used on NATS.
//
// It wraps github.com/hamba/avro/v2 with three guarantees the rest of pgjet
// relies on:
//
//   - Isolation: Parse uses a fresh schema cache per call, never hamba's
//     global one, so every registered version of a record name coexists; all
//     encoding goes through one frozen hamba API configured here.
//   - Validation before commit: FromJSON and EncodeJSON reject every value
//     that does not fit the schema, and report all failing fields at once in
//     a *ValidationError with paths like items[2].quantity, rules and
//     messages fit for an API response.
//   - Safe decoding of outside input: Decode, DecodeJSON and ResolveDecode
//     check a payload's structure against the writer schema before decoding
//     it, so truncated, padded or hostile payloads (lengths claiming
//     gigabytes, huge block counts, deep nesting) fail with ErrInvalidPayload
//     without large allocations or panics.
//
// Values cross the package as "native" Go values, the shape hamba marshals
// and unmarshals generically (see Schema.FromJSON). DecodeJSON renders them
// as JSON that FromJSON accepts back, so JSON -> Avro -> JSON -> Avro
// reproduces the same Avro bytes for schemas without maps (hamba writes map
// entries in Go's random map order; the decoded values are still equal).
//
// Schema registration, compatibility levels and subjects live in
// internal/registry; this package only parses and applies schemas.
package avro
