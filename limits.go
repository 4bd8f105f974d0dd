package pgjet

import (
	"fmt"

	"github.com/pgjet/pgjet/internal/subject"
)

// MaxEventTypeLength is the longest event type, in bytes. With MaxStreamIDLength it
// bounds an event's NATS subject to about 1.8 KB under the default prefix (a stream id's
// category and id tokens each grow to at most three times their size when escaped), well
// inside NATS's 4 KB protocol line.
const MaxEventTypeLength = 256

// ValidateEventType reports whether typ can name an event type: an Avro full name (one
// or more dot-separated names, each matching [A-Za-z_][A-Za-z0-9_]*) of at most
// MaxEventTypeLength bytes. Such a name needs no escaping in a NATS subject token or a
// header. Errors wrap ErrInvalidEventType.
func ValidateEventType(typ string) error {
	if len(typ) > MaxEventTypeLength {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrInvalidEventType, len(typ), MaxEventTypeLength)
	}
	if err := subject.ValidateType(typ); err != nil {
		return fmt.Errorf("%w: %q is not an Avro full name", ErrInvalidEventType, truncate(typ, 64))
	}
	return nil
}
