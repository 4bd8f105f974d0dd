package pgjet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// Aggregate defines how a stream folds into state S, and how often that state is
// snapshotted. An Aggregate is a definition: declare it once and use it from many
// goroutines with Load and Update.
//
// A snapshot is a cache, never the truth. Load uses one only when it was written with the
// same SchemaVersion, decodes with Unmarshal, and still matches the stream (the event it
// was taken at has the same id: a snapshot of a deleted and recreated stream does not);
// otherwise Load ignores it, counts it in pgjet_snapshot_ignored_total{reason}, and folds
// the stream from its first event. Loads with and without snapshots therefore return the
// same state, provided Marshal and Unmarshal round-trip S. Load checks the part of that it
// can: it writes a snapshot only when Marshal of what Unmarshal reads back from it gives the
// same bytes, so Marshal must be deterministic (encoding/json is).
type Aggregate[S any] struct {
	// Type names the kind of aggregate, e.g. "order". Snapshots are kept per stream and
	// Type, so several definitions may fold one stream. Required.
	Type string
	// SchemaVersion is the version of S's snapshot encoding. Change it whenever S, Apply or
	// the encoding change in a way that makes old snapshots wrong: snapshots of another
	// version are ignored and replaced.
	SchemaVersion int
	// Every is how many events a load may replay past the last snapshot (or from the
	// stream's start) before it writes a new snapshot. Writing is best-effort: a failed
	// write is logged and counted, never fails the load. 0 turns snapshots off: they are
	// neither read nor written.
	Every int
	// Initial returns the state of a stream without events. Default: the zero S.
	Initial func() S
	// Apply returns the state after event e; data is e's data decoded into the newest
	// shape of its type (see Store.Decode). It must be deterministic. An error fails the
	// load. Required.
	Apply func(state S, e RecordedEvent, data map[string]any) (S, error)
	// Marshal encodes a state into a snapshot. Default: encoding/json.
	Marshal func(S) ([]byte, error)
	// Unmarshal decodes a snapshot. Default: encoding/json into Initial(). A field tagged
	// omitempty whose Initial() value is not its zero value does not round-trip with the
	// defaults (the zero value is omitted and reads back as Initial's): Load then writes no
	// snapshots, and counts pgjet_snapshot_writes_total{result="lossy"}; so does a value
	// held in an interface (a map[string]any state) that reads back as another type, as
	// an int64 does (a float64).
	Unmarshal func([]byte) (S, error)
}

// Snapshot reasons, the values of the reason label of pgjet_snapshot_ignored_total.
const (
	snapshotSchema  = "schema"  // written with another SchemaVersion
	snapshotCorrupt = "corrupt" // Unmarshal failed
	snapshotStale   = "stale"   // the stream has no event at its version, or another one
)

// snapshotLossy is a result of pgjet_snapshot_writes_total besides ok and error: a snapshot
// not written because it would not load as the state it was taken of.
const snapshotLossy = "lossy"

// foldPageSize is how many events one read of a fold asks for.
const foldPageSize = 1000

func (a *Aggregate[S]) validate() error {
	switch {
	case a.Type == "":
		return errors.New("pgjet: Aggregate.Type is required")
	case a.Apply == nil:
		return errors.New("pgjet: Aggregate.Apply is required")
	case a.Every < 0:
		return errors.New("pgjet: Aggregate.Every must not be negative")
	}
	return nil
}

func (a *Aggregate[S]) initial() S {
	if a.Initial != nil {
		return a.Initial()
	}
	var zero S
	return zero
}

func (a *Aggregate[S]) marshal(state S) ([]byte, error) {
	if a.Marshal != nil {
		return a.Marshal(state)
	}
	return json.Marshal(state)
}

func (a *Aggregate[S]) unmarshal(b []byte) (S, error) {
	if a.Unmarshal != nil {
		return a.Unmarshal(b)
	}
	state := a.initial()
	err := json.Unmarshal(b, &state)
	return state, err
}

// Load returns the stream's state and version: the state of the newest usable snapshot
// with the events after it applied, or, without one, every event applied to Initial(). A
// stream without events loads as Initial() at version 0. When the load replayed Every
// events or more, it writes a snapshot of the state it returns (best-effort, and only
// over an older or unusable snapshot).
func (a *Aggregate[S]) Load(ctx context.Context, s *Store, streamID string) (S, int64, error) {
	var zero S
	if err := a.validate(); err != nil {
		return zero, 0, err
	}
	if err := ValidateStreamID(streamID); err != nil {
		return zero, 0, err
	}
	state, version, err := a.load(ctx, s, streamID)
	if err != nil {
		return zero, 0, fmt.Errorf("loading %s %q: %w", a.Type, streamID, err)
	}
	return state, version, nil
}

func (a *Aggregate[S]) load(ctx context.Context, s *Store, streamID string) (S, int64, error) {
	state, base, baseID, replace, err := a.readSnapshot(ctx, s, streamID)
	if err != nil {
		return state, 0, err
	}
	version, lastID := base, baseID
	apply := func(e RecordedEvent) error {
		if e.Version != version+1 {
			return fmt.Errorf("event at version %d follows version %d", e.Version, version) // versions are gap-free
		}
		data, err := s.Decode(ctx, e)
		if err != nil {
			return err
		}
		if state, err = a.Apply(state, e, data); err != nil {
			return fmt.Errorf("applying event %s (version %d, %s): %w", e.ID, e.Version, e.Type, err)
		}
		version, lastID = e.Version, e.ID
		return nil
	}
	from, sawBase := int64(1), false
	if base > 0 {
		// Read from the snapshot's own event, to check that the stream still has it.
		from = base
	}
	err = s.eachStreamEvent(ctx, streamID, from, func(e RecordedEvent) error {
		if e.Version == base {
			sawBase = e.ID == baseID
			if !sawBase {
				return errStaleSnapshot
			}
			return nil
		}
		return apply(e)
	})
	if base > 0 && (errors.Is(err, errStaleSnapshot) || (err == nil && !sawBase)) {
		s.aggs.ignored.WithLabelValues(snapshotStale).Inc()
		s.log.Warn("ignoring a snapshot that does not match its stream", zap.String("aggregate", a.Type),
			zap.String("stream", streamID), zap.Int64("version", base))
		state, base, version, replace = a.initial(), 0, 0, true
		err = s.eachStreamEvent(ctx, streamID, 1, apply)
	}
	if err != nil {
		return state, 0, err
	}
	replayed := version - base
	s.aggs.replayed.Observe(float64(replayed))
	if a.Every > 0 && version > 0 && replayed >= int64(a.Every) {
		a.writeSnapshot(ctx, s, streamID, state, version, lastID, replace)
	}
	return state, version, nil
}

var errStaleSnapshot = errors.New("snapshot does not match the stream")

// readSnapshot returns the stream's usable snapshot: its state, version and event id, or
// Initial() at version 0 when there is none. replace is true when a stored snapshot was
// found unusable, so a new one must overwrite it even if it is older.
func (a *Aggregate[S]) readSnapshot(ctx context.Context, s *Store, streamID string) (state S, version int64, eventID uuid.UUID, replace bool, err error) {
	if a.Every == 0 {
		return a.initial(), 0, uuid.Nil, false, nil
	}
	var (
		schema int
		data   []byte
	)
	err = s.pool.QueryRow(ctx, `SELECT schema_version, version, event_id, data FROM pgjet.snapshots
		WHERE stream_id = $1 AND aggregate_type = $2`, streamID, a.Type).Scan(&schema, &version, &eventID, &data)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return a.initial(), 0, uuid.Nil, false, nil
	case err != nil:
		return state, 0, uuid.Nil, false, fmt.Errorf("reading snapshot: %w", translate(err))
	case schema != a.SchemaVersion:
		s.aggs.ignored.WithLabelValues(snapshotSchema).Inc()
		return a.initial(), 0, uuid.Nil, false, nil
	}
	state, err = a.unmarshal(data)
	if err != nil {
		s.aggs.ignored.WithLabelValues(snapshotCorrupt).Inc()
		s.log.Warn("ignoring a snapshot that does not decode", zap.String("aggregate", a.Type),
			zap.String("stream", streamID), zap.Int64("version", version), zap.Error(err))
		return a.initial(), 0, uuid.Nil, true, nil
	}
	return state, version, eventID, false, nil
}

// writeSnapshot stores state as the stream's snapshot at version, over an older one, one of
// another schema version, or (replace) an unusable one. Failures are logged and counted.
// A snapshot that Unmarshal does not read back as it was written is not stored (see
// lossless).
func (a *Aggregate[S]) writeSnapshot(ctx context.Context, s *Store, streamID string, state S, version int64, eventID uuid.UUID, replace bool) {
	data, err := a.marshal(state)
	if err == nil {
		if err = a.lossless(state, data); err != nil {
			s.aggs.writes.WithLabelValues(snapshotLossy).Inc()
			s.log.Warn("not writing a snapshot that does not load as the state it was taken of; loads replay the whole stream",
				zap.String("aggregate", a.Type), zap.String("stream", streamID), zap.Int64("version", version), zap.Error(err))
			return
		}
		_, err = s.pool.Exec(ctx, `
			INSERT INTO pgjet.snapshots AS s (stream_id, aggregate_type, schema_version, version, event_id, data)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (stream_id, aggregate_type) DO UPDATE SET schema_version = EXCLUDED.schema_version,
				version = EXCLUDED.version, event_id = EXCLUDED.event_id, data = EXCLUDED.data, created_at = now()
			WHERE $7 OR s.version < EXCLUDED.version OR s.schema_version <> EXCLUDED.schema_version`,
			streamID, a.Type, a.SchemaVersion, version, eventID, data, replace)
		err = translate(err)
	}
	if err != nil {
		s.aggs.writes.WithLabelValues("error").Inc()
		s.log.Warn("writing a snapshot failed; loads replay more events until one is written",
			zap.String("aggregate", a.Type), zap.String("stream", streamID), zap.Int64("version", version), zap.Error(err))
		return
	}
	s.aggs.writes.WithLabelValues("ok").Inc()
}

// errLossySnapshot: Unmarshal does not read a snapshot back as Marshal wrote it.
var errLossySnapshot = errors.New("the state read back from the snapshot encodes differently")

// lossless checks that data, the snapshot Marshal wrote of state, reads back with Unmarshal
// as the same state: Marshal of what Unmarshal returns gives data again, and every value
// held in an interface (a map[string]any, say) comes back with its dynamic type. Default
// encoding/json into Initial() fails the first for a field tagged omitempty whose
// Initial() value is not zero (the zero value is omitted, and reading it back keeps
// Initial's), or for a map Initial() fills and Apply empties; and the second for an int64
// or a time.Time held in an interface, which reads back as a float64 or a string that a
// replay never gives Apply. Such a snapshot would load as another state than a full replay.
func (a *Aggregate[S]) lossless(state S, data []byte) error {
	back, err := a.unmarshal(data)
	if err != nil {
		return fmt.Errorf("reading the snapshot back: %w", err)
	}
	again, err := a.marshal(back)
	if err != nil {
		return fmt.Errorf("encoding the state read back: %w", err)
	}
	if !bytes.Equal(again, data) {
		return fmt.Errorf("%w: wrote %.200q, read back %.200q", errLossySnapshot, data, again)
	}
	if path, was, is := typeChange(reflect.ValueOf(&state).Elem(), reflect.ValueOf(&back).Elem(), "state", 0); path != "" {
		return fmt.Errorf("%w: %s was a %s, read back as a %s", errLossySnapshot, path, was, is)
	}
	return nil
}

// maxTypeDepth bounds typeChange's walk.
const maxTypeDepth = 1000

// typeChange walks a and b, a state and the state read back from its snapshot, in step, and
// returns the path of the first value held in an interface whose dynamic type differs, with
// both types; "" when none does. Values whose shapes differ otherwise (a map's keys, a
// slice's length) were caught by comparing the encodings. It gives up below maxTypeDepth
// levels, which a state with a pointer cycle would otherwise never leave.
func typeChange(a, b reflect.Value, path string, depth int) (at string, was, is reflect.Type) {
	if depth++; depth > maxTypeDepth {
		return "", nil, nil
	}
	switch a.Kind() {
	case reflect.Interface:
		if a.IsNil() || b.IsNil() {
			if a.IsNil() != b.IsNil() {
				return path, a.Type(), b.Type()
			}
			return "", nil, nil
		}
		if a.Elem().Type() != b.Elem().Type() {
			return path, a.Elem().Type(), b.Elem().Type()
		}
		return typeChange(a.Elem(), b.Elem(), path, depth)
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return "", nil, nil
		}
		return typeChange(a.Elem(), b.Elem(), path, depth)
	case reflect.Struct:
		for i := range a.NumField() {
			if at, was, is := typeChange(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name, depth); at != "" {
				return at, was, is
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range min(a.Len(), b.Len()) {
			if at, was, is := typeChange(a.Index(i), b.Index(i), fmt.Sprintf("%s[%d]", path, i), depth); at != "" {
				return at, was, is
			}
		}
	case reflect.Map:
		iter := a.MapRange()
		for iter.Next() {
			if bv := b.MapIndex(iter.Key()); bv.IsValid() {
				if at, was, is := typeChange(iter.Value(), bv, fmt.Sprintf("%s[%v]", path, iter.Key()), depth); at != "" {
					return at, was, is
				}
			}
		}
	}
	return "", nil, nil
}

// Update is Store.Update on the aggregate's state: each attempt loads the stream with Load
// (from its snapshot) and calls decide with the state and its version (0: no stream), then
// appends decide's events expecting that version, retrying on conflicts as
// Store.Update does.
func (a *Aggregate[S]) Update(ctx context.Context, s *Store, streamID string, opts UpdateOptions, decide func(ctx context.Context, state S, version int64) ([]EventData, error)) (AppendResult, error) {
	if err := a.validate(); err != nil {
		return AppendResult{}, err
	}
	return s.update(ctx, streamID, opts, func(ctx context.Context) ([]EventData, int64, error) {
		state, version, err := a.Load(ctx, s, streamID)
		if err != nil {
			return nil, 0, err
		}
		events, err := decide(ctx, state, version)
		return events, version, err
	})
}

// eachStreamEvent calls fn with the stream's events from version from on, in version order,
// reading them in pages. A stream without events is not an error.
func (s *Store) eachStreamEvent(ctx context.Context, streamID string, from int64, fn func(RecordedEvent) error) error {
	for {
		page, err := queryEvents(ctx, s.pool, `SELECT `+eventColumns+` FROM pgjet.events
			WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3`, streamID, from, foldPageSize)
		if err != nil {
			return fmt.Errorf("reading stream %q: %w", streamID, err)
		}
		for _, e := range page {
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(page) < foldPageSize {
			return nil
		}
		from = page[len(page)-1].Version + 1
	}
}
