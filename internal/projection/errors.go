package projection

import (
	"cmp"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
)

// applyError is a projection failing on one event: decoding it, or its Apply or Queue.
type applyError struct {
	op  string // what failed; "" for applying
	ev  Event
	err error
}

func (e *applyError) Error() string {
	return fmt.Sprintf("%s %s %s (%s v%d, seq %d): %v", cmp.Or(e.op, "applying"), e.ev.Type, e.ev.ID, e.ev.StreamID, e.ev.Version, e.ev.Sequence, e.err)
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

// ErrNoSchema: the projection has no Projection.Schema, so it cannot be rebuilt beside the
// live read model.
var ErrNoSchema = errors.New("projection: Projection.Schema is required to rebuild")

// ErrHistoryTruncated: the JetStream stream no longer holds the events a rebuild must
// replay (its retention removed the oldest), so the rebuilt model would miss them.
var ErrHistoryTruncated = errors.New("projection: the stream no longer holds the whole history")

// ErrCheckpointBeyondStream: the JetStream stream ends before the projection's checkpoint,
// so it was re-created or lost its newest messages, and its sequences no longer name the
// events the projection applied. The projector applies nothing until it is repaired
// (re-publish the events, then rebuild the projection, which sets the checkpoint).
var ErrCheckpointBeyondStream = errors.New("projection: the checkpoint is beyond the stream's last sequence")

// ErrCheckpointNotInStream: the JetStream stream holds another event at the sequence of
// the projection's checkpoint than the one the projection applied last, so it was
// re-created and re-published (verify -repair) up to or past the checkpoint, and its
// sequences no longer name the events the projection applied. As with
// ErrCheckpointBeyondStream, the projector applies nothing until the projection is rebuilt.
var ErrCheckpointNotInStream = errors.New("projection: the stream holds another event at the checkpoint's sequence")

// ErrRebuildRunning: another rebuild of the same projection holds its lock.
var ErrRebuildRunning = errors.New("projection: another rebuild of this projection is running")

// retryableLock reports whether err is Postgres giving up on a lock (lock_timeout, or a
// deadlock), after which the transaction can simply be tried again.
func retryableLock(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "55P03" || pgErr.Code == "40P01")
}
