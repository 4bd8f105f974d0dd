package registry

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors callers branch on. The HTTP API maps them to Confluent error codes.
var (
	// ErrSubjectNotFound: the subject has no versions (Confluent 40401).
	ErrSubjectNotFound = errors.New("subject not found")
	// ErrVersionNotFound: the subject exists but not that version (Confluent 40402).
	ErrVersionNotFound = errors.New("version not found")
	// ErrSchemaNotFound: no schema has that id, or the schema is not under the subject (40403).
	ErrSchemaNotFound = errors.New("schema not found")
	// ErrInvalidSchema: the text is not a valid Avro record schema (42201).
	ErrInvalidSchema = errors.New("invalid schema")
	// ErrInvalidVersion: a version that is not a positive number or "latest" (42202).
	ErrInvalidVersion = errors.New("invalid version")
	// ErrInvalidCompatibility: an unknown compatibility level (42203).
	ErrInvalidCompatibility = errors.New("invalid compatibility level")
	// ErrIncompatible is matched by *IncompatibleError (409).
	ErrIncompatible = errors.New("schema is incompatible")
)

// IncompatibleError says which registered versions a rejected schema breaks, and why.
type IncompatibleError struct {
	// Subject is the subject the schema was checked under.
	Subject string
	// Level is the compatibility level in force for Subject.
	Level Compatibility
	// Breaks lists each earlier version the schema is incompatible with.
	Breaks []Break
}

// Break is one failed check of a candidate schema against a registered version.
type Break struct {
	// Version is the registered version the candidate breaks.
	Version int
	// Direction is "backward" (the new schema cannot read data written with Version) or
	// "forward" (Version cannot read data written with the new schema).
	Direction string
	// Reason is why the data would not decode, or would mean something else: the
	// schema-resolution failure as hamba/avro reports it, or a check of Readable's.
	Reason string
}

// Error lists every break in one line.
func (e *IncompatibleError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "schema for subject %q is incompatible under %s:", e.Subject, e.Level)
	for _, br := range e.Breaks {
		fmt.Fprintf(&b, " version %d (%s): %s;", br.Version, br.Direction, br.Reason)
	}
	return strings.TrimSuffix(b.String(), ";")
}

// String says in words which way the break goes: for "backward", that the new schema
// cannot read data written with the version; for "forward", that the version cannot read
// data written with the new schema.
func (b Break) String() string {
	if b.Direction == "forward" {
		return fmt.Sprintf("version %d cannot read data written with the new schema: %s", b.Version, b.Reason)
	}
	return fmt.Sprintf("the new schema cannot read data written with version %d: %s", b.Version, b.Reason)
}

// Is makes errors.Is(err, ErrIncompatible) true.
func (e *IncompatibleError) Is(target error) bool { return target == ErrIncompatible }
