package pgjet

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
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

// The stream reads: $1 stream, $2 first version, $3 limit. docs/architecture.md lists
// their plans ("Access paths"); explain_test.go checks them.
const (
	readForwardSQL  = `SELECT ` + eventColumns + ` FROM pgjet.events WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3`
	readBackwardSQL = `SELECT ` + eventColumns + ` FROM pgjet.events WHERE stream_id = $1 AND version <= $2 ORDER BY version DESC LIMIT $3`
)

// ReadStream reads up to limit events of a stream starting at version from (inclusive), in
// direction. Versions start at 1; a backward read from End starts at the last event. It
// returns ErrStreamNotFound when the stream has no events, and ErrInvalidRead for a limit
// below 1 or a from below 1 (other than End, backward).
//
// With Config.ReadCacheBytes, recently read events of a stream are answered from memory;
// a read still sees every event committed before it started (see Config.ReadCacheBytes).
func (s *Store) ReadStream(ctx context.Context, streamID string, dir Direction, from int64, limit int) ([]RecordedEvent, error) {
	return s.readStream(ctx, nil, streamID, dir, from, limit)
}

// readStream is ReadStream through the pool and the read cache when tx is nil, else
// inside tx and past the cache, which must not hold what tx has not committed.
func (s *Store) readStream(ctx context.Context, tx querier, streamID string, dir Direction, from int64, limit int) ([]RecordedEvent, error) {
	if err := ValidateStreamID(streamID); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, fmt.Errorf("%w: limit must be positive", ErrInvalidRead)
	}
	// "Everything" (math.MaxInt) must not overflow the read cache's arithmetic (limit+1);
	// no stream read returns 2^31 events at once.
	limit = min(limit, math.MaxInt32)
	switch {
	case dir != Forward && dir != Backward:
		return nil, fmt.Errorf("%w: unknown direction %d", ErrInvalidRead, dir)
	case dir == Backward && from == End:
		from = 1<<63 - 1
	case from < 1:
		// Versions start at 1. A forward read from End read the whole stream, and a backward
		// read from another negative number nothing: neither what the caller meant.
		if dir == Backward {
			return nil, fmt.Errorf("%w: from must be a version (1 or more) or End, got %d", ErrInvalidRead, from)
		}
		return nil, fmt.Errorf("%w: from must be a version (1 or more), got %d", ErrInvalidRead, from)
	}
	var (
		db     querier = s.pool
		events []RecordedEvent
		err    error
	)
	if tx != nil {
		db = tx
		events, err = readStreamDB(ctx, tx, streamID, dir, from, limit)
	} else {
		events, err = s.reads.read(ctx, s.pool, streamID, dir, from, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("reading stream %q: %w", streamID, err)
	}
	if len(events) == 0 {
		v, err := streamVersion(ctx, db, streamID)
		if err != nil {
			return nil, fmt.Errorf("reading stream %q: %w", streamID, err)
		}
		if v == 0 {
			return nil, fmt.Errorf("%w: %q", ErrStreamNotFound, streamID)
		}
	}
	return events, nil
}

// readStreamDB reads a stream from Postgres; from is a version (End already replaced).
func readStreamDB(ctx context.Context, db querier, streamID string, dir Direction, from int64, limit int) ([]RecordedEvent, error) {
	q := readForwardSQL
	if dir == Backward {
		q = readBackwardSQL
	}
	return queryEvents(ctx, db, q, streamID, from, limit)
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

// readAllSQL reads events after the cursor ($1 tx id as text, $2 position), $3 at most.
// ORDER BY names the table's columns: a bare "tx_id" would mean the output column
// "tx_id::text" and order transaction ids as text ("10" before "9"), which skips events at
// every power of ten and cannot use the (tx_id, position) index.
const readAllSQL = `SELECT ` + eventColumns + ` FROM pgjet.events
	WHERE (tx_id, position) > ($1::text::xid8, $2)
	  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
	ORDER BY events.tx_id, events.position LIMIT $3`

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
	events, err := queryEvents(ctx, s.pool, readAllSQL, strconv.FormatUint(after.TxID, 10), after.Position, limit)
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
