package pgjet

import "github.com/pgjet/pgjet/internal/registry"

// The schema registry lives in an internal package; these names let code outside this
// module name what Store.Registry returns and branch on its errors.
type (
	// Registry is the Postgres-backed schema registry behind Store.Registry and the
	// writer's Confluent-compatible HTTP API. It is safe for concurrent use.
	Registry = registry.Registry
	// SchemaVersion is one registered version of a subject (an event type): its subject,
	// version number, global schema id and parsed schema.
	SchemaVersion = registry.Version
	// Compatibility is a registry compatibility level, with Confluent's names and
	// meanings: BACKWARD (the default), BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE,
	// FULL, FULL_TRANSITIVE, NONE.
	Compatibility = registry.Compatibility
	// IncompatibleError says which registered versions a rejected schema breaks, and why;
	// it matches ErrIncompatible.
	IncompatibleError = registry.IncompatibleError
	// SchemaBreak is one failed check of a rejected schema against a registered version.
	SchemaBreak = registry.Break
)

// The registry's errors (see docs/errors.md), for errors.Is.
var (
	// ErrSubjectNotFound: the subject has no versions (Confluent 40401).
	ErrSubjectNotFound = registry.ErrSubjectNotFound
	// ErrVersionNotFound: the subject exists but not that version (40402).
	ErrVersionNotFound = registry.ErrVersionNotFound
	// ErrSchemaNotFound: no schema has that id, or it is not under the subject (40403).
	ErrSchemaNotFound = registry.ErrSchemaNotFound
	// ErrInvalidSchema: the text is not a valid Avro record schema (42201).
	ErrInvalidSchema = registry.ErrInvalidSchema
	// ErrInvalidVersion: a version that is not a positive number or "latest" (42202).
	ErrInvalidVersion = registry.ErrInvalidVersion
	// ErrInvalidCompatibility: an unknown compatibility level (42203).
	ErrInvalidCompatibility = registry.ErrInvalidCompatibility
	// ErrIncompatible is matched by *IncompatibleError (409).
	ErrIncompatible = registry.ErrIncompatible
)
