package pgjet

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// Direction is the order of a stream read.
type Direction int

const (
	// Forward reads from a version upwards.
	Forward Direction = iota
	// Backward reads from a version downwards.
	Backward
)

// End, as the start of a backward read, means the stream's last event.
const End int64 = -1

const eventColumns = `position, tx_id::text, event_id, stream_id, version, type, schema_id, data, metadata, created_at`

// ReadStream reads up to limit events of a stream starting at version from (inclusive), in
// direction. A backward read from End starts at the last event. It returns ErrStreamNotFound
// when the stream has no events.
func (s *Store) ReadStream(ctx context.Context, streamID string, dir Direction, from int64, limit int) ([]RecordedEvent, error) {
	if err := ValidateStreamID(streamID); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, fmt.Errorf("%w: limit must be positive", ErrInvalidRead)
	}
	var q string
	switch dir {
	case Forward:
		q = `SELECT ` + eventColumns + ` FROM pgjet.events WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3`
	case Backward:
		if from == End {
			from = 1<<63 - 1
		}
		q = `SELECT ` + eventColumns + ` FROM pgjet.events WHERE stream_id = $1 AND version <= $2 ORDER BY version DESC LIMIT $3`
	default:
		return nil, fmt.Errorf("%w: unknown direction %d", ErrInvalidRead, dir)
	}
	events, err := queryEvents(ctx, s.pool, q, streamID, from, limit)
	if err != nil {
		return nil, fmt.Errorf("reading stream %q: %w", streamID, err)
	}
	if len(events) == 0 {
		v, err := streamVersion(ctx, s.pool, streamID)
		if err != nil {
			return nil, fmt.Errorf("reading stream %q: %w", streamID, err)
		}
		if v == 0 {
			return nil, fmt.Errorf("%w: %q", ErrStreamNotFound, streamID)
		}
	}
	return events, nil
}

// StreamVersion returns the stream's version (its number of events), or ErrStreamNotFound.
func (s *Store) StreamVersion(ctx context.Context, streamID string) (int64, error) {
	v, err := streamVersion(ctx, s.pool, streamID)
	if err != nil {
		return 0, fmt.Errorf("reading version of %q: %w", streamID, err)
	}
	if v == 0 {
		return 0, fmt.Errorf("%w: %q", ErrStreamNotFound, streamID)
	}
	return v, nil
}

// ReadAll reads up to limit events after the cursor, across all streams, and never skips an
// event whose transaction commits after the read: it returns only events written by
// transactions older than the oldest transaction still running (the snapshot's xmin), in
// (transaction id, position) order. A transaction that is still open holds the read back
// until it ends, so a long-running writing transaction delays readers of all events, but
// never makes them miss anything. Pass the last returned event's Next() as the next cursor.
func (s *Store) ReadAll(ctx context.Context, after AllPosition, limit int) ([]RecordedEvent, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: limit must be positive", ErrInvalidRead)
	}
	events, err := queryEvents(ctx, s.pool, `
		SELECT `+eventColumns+` FROM pgjet.events
		WHERE (tx_id, position) > ($1::text::xid8, $2)
		  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
		ORDER BY tx_id, position LIMIT $3`,
		strconv.FormatUint(after.TxID, 10), after.Position, limit)
	if err != nil {
		return nil, fmt.Errorf("reading all events: %w", err)
	}
	return events, nil
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func queryEvents(ctx context.Context, db querier, q string, args ...any) ([]RecordedEvent, error) {
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	var out []RecordedEvent
	for rows.Next() {
		var (
			e    RecordedEvent
			txid string
			md   []byte
		)
		if err := rows.Scan(&e.Position, &txid, &e.ID, &e.StreamID, &e.Version, &e.Type, &e.SchemaID, &e.Data, &md, &e.CreatedAt); err != nil {
			return nil, translate(err)
		}
		if e.TxID, err = strconv.ParseUint(txid, 10, 64); err != nil {
			return nil, fmt.Errorf("reading tx id %q: %w", txid, err)
		}
		if len(md) > 2 {
			if err := json.Unmarshal(md, &e.Metadata); err != nil {
				return nil, fmt.Errorf("reading metadata of event %s: %w", e.ID, err)
			}
		}
		out = append(out, e)
	}
	return out, translate(rows.Err())
}
