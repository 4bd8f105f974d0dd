package projection

import (
	"errors"
	"fmt"

	"go.uber.org/zap"
)

// applyError is a projection's Apply failing on one event.
type applyError struct {
	ev  Event
	err error
}

func (e *applyError) Error() string {
	return fmt.Sprintf("applying %s (%s v%d, seq %d): %v", e.ev.Type, e.ev.StreamID, e.ev.Version, e.ev.Sequence, e.err)
}

func (e *applyError) Unwrap() error { return e.err }

// eventFields returns the log fields of the event an error is about, with the stable names
// of docs/operations.md; none when it is not about one event.
func eventFields(err error) []zap.Field {
	var ae *applyError
	if !errors.As(err, &ae) {
		return nil
	}
	return []zap.Field{
		zap.String("stream", ae.ev.StreamID), zap.String("type", ae.ev.Type), zap.String("event_id", ae.ev.ID),
		zap.Int64("version", ae.ev.Version), zap.Int64("position", ae.ev.Position), zap.Uint64("sequence", ae.ev.Sequence),
	}
}
