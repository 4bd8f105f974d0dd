package avro

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrMalformedJSON is wrapped by FromJSON and EncodeJSON when the input is
// not a single well-formed JSON value: a syntax error, invalid UTF-8 or a
// lone surrogate escape, a duplicate object key, nesting deeper than the
// package limit, or trailing data. It is distinct from *ValidationError,
// which reports well-formed JSON that does not fit the schema.
var ErrMalformedJSON = errors.New("avro: malformed JSON")

// ErrNotWireFormat is returned by SplitWire when the input is shorter than
// the 5-byte Confluent header or does not start with the magic byte 0x00.
var ErrNotWireFormat = errors.New("avro: not Confluent wire format")

// ErrInvalidPayload is wrapped by Decode, DecodeJSON and ResolveDecode when
// the Avro binary does not match the writer schema: truncated data, trailing
// bytes after the record, an out-of-range union or enum index, a length or
// block count that exceeds the remaining input or the package limits, or
// nesting deeper than the package limit.
var ErrInvalidPayload = errors.New("avro: invalid payload")

// ErrIncompatibleSchema is wrapped by ResolveDecode when data written with
// the writer schema cannot be read with the reader schema.
var ErrIncompatibleSchema = errors.New("avro: incompatible schemas")

// IncompatibleError is the error of ResolveDecode, Resolvable and CheckResolution when
// data written with one schema cannot be read with another, or would mean something
// else there. It matches ErrIncompatibleSchema.
type IncompatibleError struct {
	// Writer and Reader are the full names of the two records.
	Writer, Reader string
	// Reason says why, naming the field where there is one.
	Reason string
}

// Error says which schemas and why.
func (e *IncompatibleError) Error() string {
	return fmt.Sprintf("%v: reading %s with %s: %s", ErrIncompatibleSchema, e.Writer, e.Reader, e.Reason)
}

// Is makes errors.Is(err, ErrIncompatibleSchema) true.
func (e *IncompatibleError) Is(target error) bool { return target == ErrIncompatibleSchema }

// Rules name the check a FieldError failed. They are stable machine words
// that callers may branch on or expose in API responses.
const (
	RuleType         = "type"          // wrong JSON kind, or an unsupported Go value
	RuleRequired     = "required"      // record field missing and without a default
	RuleUnknownField = "unknown_field" // object key that is not a field of the record
	RuleEnum         = "enum"          // string that is not a symbol of the enum
	RuleRange        = "range"         // number outside int/long/float range, or time of day outside a day
	RuleUnion        = "union"         // value matching no union branch, or several
	RuleUUID         = "uuid"          // string that is not an RFC 4122 UUID in 8-4-4-4-12 form
	RuleTimestamp    = "timestamp"     // neither an RFC 3339 string nor an integer epoch value
	RuleDate         = "date"          // neither YYYY-MM-DD nor an integer day count
	RuleTime         = "time"          // neither HH:MM:SS[.frac] nor an integer time of day
	RuleDecimal      = "decimal"       // not a decimal number, or exceeding precision or scale
	RuleFixedSize    = "fixed_size"    // fixed value of the wrong length
	RuleBase64       = "base64"        // bytes or fixed value that is not standard base64
)

// FieldError is one failed check of a value against a schema.
type FieldError struct {
	// Path locates the value in the input: record fields joined by ".",
	// array indexes as "[2]", map keys and union wrapper keys as `["key"]`
	// (JSON-quoted), for example `items[2].quantity` or `tags["env"]`.
	// The top-level record is "".
	Path string `json:"path"`
	// Rule is the failed check, one of the Rule constants.
	Rule string `json:"rule"`
	// Message explains the failure to a human.
	Message string `json:"message"`
	// Value is the offending input rendered as short JSON (truncated), or
	// empty for bytes and fixed values and for missing fields.
	Value string `json:"value,omitempty"`
}

// String renders the field error as "path (rule): message".
func (e FieldError) String() string {
	p := e.Path
	if p == "" {
		p = "(root)"
	}
	return p + " (" + e.Rule + "): " + e.Message
}

// ValidationError reports every field of a JSON value that does not fit the
// schema. FromJSON collects all failures before returning, so Fields is
// complete and deterministic: record fields in schema order followed by the
// record's unknown keys, array elements by index, map entries in input order.
type ValidationError struct {
	Fields []FieldError
}

// Error lists every failing field.
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("avro: invalid value: ")
	b.WriteString(strconv.Itoa(len(e.Fields)))
	if len(e.Fields) == 1 {
		b.WriteString(" error: ")
	} else {
		b.WriteString(" errors: ")
	}
	for i, f := range e.Fields {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(f.String())
	}
	return b.String()
}
