package pgjet

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Callers branch on them with errors.Is; the typed errors below match them.
var (
	// ErrStreamNotFound: the stream has no events.
	ErrStreamNotFound = errors.New("pgjet: stream not found")
	// ErrWrongExpectedVersion is matched by *WrongExpectedVersionError.
	ErrWrongExpectedVersion = errors.New("pgjet: wrong expected version")
	// ErrUnknownEventType: no schema is registered for the event type.
	ErrUnknownEventType = errors.New("pgjet: unknown event type")
	// ErrInvalidStreamID: empty, too long, not UTF-8, with control characters, or starting
	// with '-'.
	ErrInvalidStreamID = errors.New("pgjet: invalid stream id")
	// ErrInvalidEventType: an event type that is not an Avro full name (dot-separated
	// names of [A-Za-z_][A-Za-z0-9_]*) or is longer than MaxEventTypeLength.
	ErrInvalidEventType = errors.New("pgjet: invalid event type")
	// ErrInvalidAppend: an append that is malformed as a whole (no events, a bad
	// expectation, an event without a type, repeated ids).
	ErrInvalidAppend = errors.New("pgjet: invalid append")
	// ErrInvalidRead: a read with a bad limit or direction.
	ErrInvalidRead = errors.New("pgjet: invalid read")
	// ErrTooLarge: too many events in one append, or an event or its metadata over the limit
	// (Config.MaxEventsPerAppend, MaxEventSize, MaxMetadataSize; see docs/errors.md).
	ErrTooLarge = errors.New("pgjet: too large")
	// ErrValidation is matched by *ValidationError.
	ErrValidation = errors.New("pgjet: invalid event data")
	// ErrEventIDReused: an event id already stored with different content or position.
	ErrEventIDReused = errors.New("pgjet: event id already used")
)

// WrongExpectedVersionError is an optimistic concurrency conflict. Actual is the stream's
// version when the append was checked: 0 when the stream does not exist.
type WrongExpectedVersionError struct {
	Stream   string
	Expected ExpectedVersion
	Actual   int64
}

// Error says which stream conflicted and its expected and actual versions.
func (e *WrongExpectedVersionError) Error() string {
	return fmt.Sprintf("pgjet: wrong expected version for stream %q: expected %s, actual %d", e.Stream, e.Expected, e.Actual)
}

// Is makes errors.Is(err, ErrWrongExpectedVersion) true.
func (e *WrongExpectedVersionError) Is(target error) bool { return target == ErrWrongExpectedVersion }

// FieldError is one failing field of an event's data.
type FieldError struct {
	// Path locates the field: events[1].data.items[2].quantity.
	Path string `json:"path"`
	// Rule is the broken rule in one word: type, required, enum, range, uuid, ...
	Rule string `json:"rule"`
	// Message says what is wrong in words.
	Message string `json:"message"`
	// Value is the offending value, shortened; empty where it is not safe to echo.
	Value string `json:"value,omitempty"`
}

// ValidationError lists every failing field of every event of an append. Nothing was
// written.
type ValidationError struct {
	Fields []FieldError
}

// Error lists every failing field with its path and rule.
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("pgjet: invalid event data:")
	for i, f := range e.Fields {
		if i > 0 {
			b.WriteByte(';')
		}
		fmt.Fprintf(&b, " %s: %s (%s)", f.Path, f.Message, f.Rule)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrValidation) true.
func (e *ValidationError) Is(target error) bool { return target == ErrValidation }
