package pgjet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/propagation"

	"github.com/pgjet/pgjet/internal/avro"
	"github.com/pgjet/pgjet/internal/outbox"
	"github.com/pgjet/pgjet/internal/registry"
)

// MaxStreamIDLength is the longest stream id, in bytes.
const MaxStreamIDLength = 256

// Append appends events to a stream in one transaction, with their outbox rows, if the
// stream's version matches expected. On a conflict it returns a *WrongExpectedVersionError
// and writes nothing. Every event is validated and encoded before the transaction starts; an
// invalid event fails the whole append with a *ValidationError.
//
// Appending events whose ids are all stored already, in the same order in this stream and
// with the same type and data, returns the original result with Duplicate set and writes
// nothing; an id stored with other content fails with ErrEventIDReused.
func (s *Store) Append(ctx context.Context, streamID string, expected ExpectedVersion, events ...EventData) (res AppendResult, err error) {
	defer func(start time.Time) { s.metrics.observe(start, res, err) }(time.Now())
	p, err := s.prepare(ctx, streamID, expected, events)
	if err != nil {
		return AppendResult{}, err
	}
	for attempt := 0; ; attempt++ {
		var res AppendResult
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			var err error
			res, err = p.run(ctx, tx)
			return err
		})
		// Two retries of one append racing: the loser hits the unique event id. Once the
		// winner has committed, running again finds its result.
		if errors.Is(err, errRaceOnEventID) && attempt == 0 {
			continue
		}
		return res, err
	}
}

// AppendTx is Append inside the caller's transaction: the events and outbox rows commit or
// roll back with the caller's own changes. The stream's row stays locked until tx ends, so
// keep the transaction short. If tx rolls back, nothing is ever published.
func (s *Store) AppendTx(ctx context.Context, tx pgx.Tx, streamID string, expected ExpectedVersion, events ...EventData) (res AppendResult, err error) {
	defer func(start time.Time) { s.metrics.observe(start, res, err) }(time.Now())
	p, err := s.prepare(ctx, streamID, expected, events)
	if err != nil {
		return AppendResult{}, err
	}
	return p.run(ctx, tx)
}

// prepared is an append validated and encoded, ready to run in a transaction.
type prepared struct {
	registry    *registry.Registry
	stream      string
	expected    ExpectedVersion
	partition   int16
	traceparent *string
	clientIDs   bool // some ids came from the caller: the append may be a retry
	ids         []uuid.UUID
	types       []string
	schemaIDs   []int32
	data        [][]byte
	metadata    [][]byte
}

func (s *Store) prepare(ctx context.Context, streamID string, expected ExpectedVersion, events []EventData) (*prepared, error) {
	if err := ValidateStreamID(streamID); err != nil {
		return nil, err
	}
	if !expected.valid() {
		return nil, fmt.Errorf("%w: expected version %d", ErrInvalidAppend, int64(expected))
	}
	if len(events) == 0 {
		return nil, fmt.Errorf("%w: no events", ErrInvalidAppend)
	}
	if len(events) > s.cfg.MaxEventsPerAppend {
		return nil, fmt.Errorf("%w: %d events in one append, limit %d", ErrTooLarge, len(events), s.cfg.MaxEventsPerAppend)
	}
	p := &prepared{
		registry: s.registry, stream: streamID, expected: expected, partition: outbox.PartitionOf(streamID),
		ids: make([]uuid.UUID, len(events)), types: make([]string, len(events)),
		schemaIDs: make([]int32, len(events)), data: make([][]byte, len(events)), metadata: make([][]byte, len(events)),
	}
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	if tp := carrier.Get("traceparent"); tp != "" {
		p.traceparent = &tp
	}
	seen := make(map[uuid.UUID]bool, len(events))
	var invalid ValidationError
	for i, ev := range events {
		at := fmt.Sprintf("events[%d]", i)
		p.ids[i] = ev.ID
		if ev.ID == uuid.Nil {
			id, err := uuid.NewV7()
			if err != nil {
				return nil, err
			}
			p.ids[i] = id
		} else {
			p.clientIDs = true
		}
		if seen[p.ids[i]] {
			return nil, fmt.Errorf("%w: %s: event id %s appears twice", ErrInvalidAppend, at, p.ids[i])
		}
		seen[p.ids[i]] = true
		if ev.Type == "" {
			return nil, fmt.Errorf("%w: %s: type is required", ErrInvalidAppend, at)
		}
		p.types[i] = ev.Type
		md, err := s.encodeMetadata(ev.Metadata)
		if err != nil {
			return nil, fmt.Errorf("%s.metadata: %w", at, err)
		}
		p.metadata[i] = md
		v, err := s.registry.LatestCached(ctx, ev.Type)
		if errors.Is(err, registry.ErrSubjectNotFound) {
			return nil, fmt.Errorf("%w: %s: %q has no registered schema", ErrUnknownEventType, at, ev.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("looking up schema of %q: %w", ev.Type, err)
		}
		payload, err := encode(v.Schema, ev.Data)
		var verr *avro.ValidationError
		if errors.As(err, &verr) {
			for _, f := range verr.Fields {
				invalid.Fields = append(invalid.Fields, FieldError{
					Path: joinPath(at+".data", f.Path), Rule: f.Rule, Message: f.Message, Value: f.Value,
				})
			}
			continue
		}
		if err != nil {
			invalid.Fields = append(invalid.Fields, FieldError{Path: at + ".data", Rule: "type", Message: err.Error()})
			continue
		}
		if len(payload) > s.cfg.MaxEventSize {
			return nil, fmt.Errorf("%w: %s: data is %d bytes encoded, limit %d", ErrTooLarge, at, len(payload), s.cfg.MaxEventSize)
		}
		p.schemaIDs[i] = int32(v.ID)
		p.data[i] = avro.AppendWire(make([]byte, 0, 5+len(payload)), uint32(v.ID), payload)
	}
	if len(invalid.Fields) > 0 {
		return nil, &invalid
	}
	return p, nil
}

func encode(s *avro.Schema, data any) ([]byte, error) {
	switch d := data.(type) {
	case json.RawMessage:
		return s.EncodeJSON(d)
	case nil:
		return s.EncodeJSON([]byte("null"))
	default:
		return s.Encode(d)
	}
}

func joinPath(prefix, path string) string {
	switch {
	case path == "":
		return prefix
	case strings.HasPrefix(path, "["):
		return prefix + path
	}
	return prefix + "." + path
}

func (s *Store) encodeMetadata(md map[string]string) ([]byte, error) {
	size := 0
	for k, v := range md {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fmt.Errorf("%w: metadata must be valid UTF-8", ErrInvalidAppend)
		}
		size += len(k) + len(v)
	}
	if size > s.cfg.MaxMetadataSize {
		return nil, fmt.Errorf("%w: metadata is %d bytes, limit %d", ErrTooLarge, size, s.cfg.MaxMetadataSize)
	}
	if md == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(md)
}

// ValidateStreamID reports whether id can name a stream: 1 to 256 bytes of UTF-8, no
// control characters, not starting with '-' (the text before the first '-' is the
// stream's category).
func ValidateStreamID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty", ErrInvalidStreamID)
	case len(id) > MaxStreamIDLength:
		return fmt.Errorf("%w: %d bytes, limit %d", ErrInvalidStreamID, len(id), MaxStreamIDLength)
	case !utf8.ValidString(id):
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidStreamID)
	case id[0] == '-':
		return fmt.Errorf("%w: %q starts with '-', so it has no category", ErrInvalidStreamID, id)
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: %q contains a control character", ErrInvalidStreamID, truncate(id, 64))
		}
	}
	return nil
}

// errRaceOnEventID: a concurrent append stored one of our event ids first.
var errRaceOnEventID = fmt.Errorf("%w: stored concurrently by another append; retry to get its result", ErrEventIDReused)

// run performs the append in tx. Statement order matters for the outbox's no-skip
// argument: the stream row is locked before any position is taken.
func (p *prepared) run(ctx context.Context, tx pgx.Tx) (AppendResult, error) {
	if p.clientIDs {
		res, found, err := p.existing(ctx, tx)
		if err != nil || found {
			return res, err
		}
	}
	n := int64(len(p.ids))
	last, err := p.claimVersions(ctx, tx, n)
	if err != nil {
		return AppendResult{}, err
	}
	first := last - n + 1
	rows, err := tx.Query(ctx, `
		WITH ev AS (
			INSERT INTO pgjet.events (event_id, stream_id, version, type, schema_id, data, metadata)
			SELECT id, $1, $2 + ord - 1, type, schema_id, data, metadata
			FROM unnest($3::uuid[], $4::text[], $5::int[], $6::bytea[], $7::jsonb[])
				WITH ORDINALITY AS t (id, type, schema_id, data, metadata, ord)
			ORDER BY ord
			RETURNING position, version),
		ob AS (
			INSERT INTO pgjet.outbox (position, partition, traceparent)
			SELECT position, $8, $9 FROM ev)
		SELECT position FROM ev ORDER BY version`,
		p.stream, first, p.ids, p.types, p.schemaIDs, p.data, p.metadata, p.partition, p.traceparent)
	if err != nil {
		return AppendResult{}, translate(err)
	}
	positions, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return AppendResult{}, translate(err)
	}
	return AppendResult{
		StreamID: p.stream, FirstVersion: first, LastVersion: last,
		Positions: positions, EventIDs: p.ids,
	}, nil
}

// claimVersions checks the expectation and moves the stream's version forward by n,
// holding the stream row's lock until the transaction ends. It returns the new version.
func (p *prepared) claimVersions(ctx context.Context, tx pgx.Tx, n int64) (int64, error) {
	var (
		last int64
		err  error
	)
	switch e := p.expected; {
	case e == Any:
		err = tx.QueryRow(ctx, `
			INSERT INTO pgjet.streams AS s (stream_id, version) VALUES ($1, $2)
			ON CONFLICT (stream_id) DO UPDATE SET version = s.version + EXCLUDED.version, updated_at = now()
			RETURNING version`, p.stream, n).Scan(&last)
	case e == NoStream || e == 0:
		err = tx.QueryRow(ctx, `
			INSERT INTO pgjet.streams (stream_id, version) VALUES ($1, $2)
			ON CONFLICT (stream_id) DO NOTHING RETURNING version`, p.stream, n).Scan(&last)
	case e == StreamExists:
		err = tx.QueryRow(ctx, `
			UPDATE pgjet.streams SET version = version + $2, updated_at = now()
			WHERE stream_id = $1 RETURNING version`, p.stream, n).Scan(&last)
	default:
		err = tx.QueryRow(ctx, `
			UPDATE pgjet.streams SET version = version + $2, updated_at = now()
			WHERE stream_id = $1 AND version = $3 RETURNING version`, p.stream, n, int64(e)).Scan(&last)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		actual, err := streamVersion(ctx, tx, p.stream)
		if err != nil {
			return 0, err
		}
		return 0, &WrongExpectedVersionError{Stream: p.stream, Expected: p.expected, Actual: actual}
	}
	if err != nil {
		return 0, translate(err)
	}
	return last, nil
}

// existing looks for the append's ids among stored events. found is true when all of them
// are stored as this append would store them: the append is a retry.
func (p *prepared) existing(ctx context.Context, tx pgx.Tx) (AppendResult, bool, error) {
	rows, err := tx.Query(ctx, `
		SELECT event_id, stream_id, version, type, data, metadata, position FROM pgjet.events
		WHERE event_id = ANY($1) ORDER BY position`, p.ids)
	if err != nil {
		return AppendResult{}, false, translate(err)
	}
	type stored struct {
		id       uuid.UUID
		stream   string
		version  int64
		typ      string
		data     []byte
		metadata []byte
		position int64
	}
	var got []stored
	for rows.Next() {
		var s stored
		if err := rows.Scan(&s.id, &s.stream, &s.version, &s.typ, &s.data, &s.metadata, &s.position); err != nil {
			rows.Close()
			return AppendResult{}, false, translate(err)
		}
		got = append(got, s)
	}
	if err := rows.Err(); err != nil {
		return AppendResult{}, false, translate(err)
	}
	if len(got) == 0 {
		return AppendResult{}, false, nil
	}
	reused := func(why string) error {
		return fmt.Errorf("%w: %s", ErrEventIDReused, why)
	}
	if len(got) != len(p.ids) {
		return AppendResult{}, false, reused(fmt.Sprintf("%d of the %d event ids are stored already, by another append", len(got), len(p.ids)))
	}
	res := AppendResult{StreamID: p.stream, EventIDs: p.ids, Duplicate: true}
	for i, s := range got {
		switch {
		case s.id != p.ids[i] || s.stream != p.stream || (i > 0 && s.version != got[i-1].version+1):
			return AppendResult{}, false, reused(fmt.Sprintf("event %s is stored at %q version %d, not as part of this append", s.id, s.stream, s.version))
		case s.typ != p.types[i] || !jsonEqual(s.metadata, p.metadata[i]):
			return AppendResult{}, false, reused(fmt.Sprintf("event %s is stored with a different type or metadata", s.id))
		}
		same, err := p.sameData(ctx, s.data, p.data[i])
		if err != nil {
			return AppendResult{}, false, err
		}
		if !same {
			return AppendResult{}, false, reused(fmt.Sprintf("event %s is stored with different data", s.id))
		}
		res.Positions = append(res.Positions, s.position)
	}
	res.FirstVersion, res.LastVersion = got[0].version, got[len(got)-1].version
	// The retry must carry the expectation the original append satisfied.
	switch e := p.expected; {
	case (e == NoStream || e == 0) && res.FirstVersion != 1,
		e >= 1 && res.FirstVersion != int64(e)+1:
		actual, err := streamVersion(ctx, tx, p.stream)
		if err != nil {
			return AppendResult{}, false, err
		}
		return AppendResult{}, false, &WrongExpectedVersionError{Stream: p.stream, Expected: e, Actual: actual}
	}
	return res, true, nil
}

// sameData reports whether two wire-format payloads carry the same data. Equal bytes are
// the same; otherwise both are decoded to natural JSON (Avro maps encode in no fixed
// order, and a retry may be encoded with a newer schema version) and compared.
func (p *prepared) sameData(ctx context.Context, a, b []byte) (bool, error) {
	if bytes.Equal(a, b) {
		return true, nil
	}
	render := func(wire []byte) (json.RawMessage, error) {
		id, payload, err := avro.SplitWire(wire)
		if err != nil {
			return nil, err
		}
		schema, err := p.registry.SchemaByID(ctx, int(id))
		if err != nil {
			return nil, err
		}
		return schema.DecodeJSON(payload)
	}
	ja, err := render(a)
	if err != nil {
		return false, fmt.Errorf("comparing with the stored event: %w", err)
	}
	jb, err := render(b)
	if err != nil {
		return false, fmt.Errorf("comparing with the stored event: %w", err)
	}
	return jsonEqual(ja, jb), nil
}

// jsonEqual compares two JSON documents by value.
func jsonEqual(a, b []byte) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(va, vb)
}

type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// streamVersion returns the stream's version, 0 when it does not exist.
func streamVersion(ctx context.Context, db rowQuerier, stream string) (int64, error) {
	var v int64
	err := db.QueryRow(ctx, `SELECT version FROM pgjet.streams WHERE stream_id = $1`, stream).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, translate(err)
	}
	return v, nil
}
