package pgjet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
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
// invalid event fails the whole append with a *ValidationError, as does a failed domain
// check (see Hook).
//
// Appending events whose ids are all stored already, in the same order in this stream and
// with the same type and data, returns the original result with Duplicate set and writes
// nothing; an id stored with other content fails with ErrEventIDReused.
func (s *Store) Append(ctx context.Context, streamID string, expected ExpectedVersion, events ...EventData) (res AppendResult, err error) {
	defer func(start time.Time) { s.metrics.observe(start, res, err) }(time.Now())
	p, err := s.prepare(ctx, s.pool, streamID, expected, events)
	if err != nil {
		return AppendResult{}, err
	}
	if res, done, err := s.runHooks(ctx, s.pool, p, events); done || err != nil {
		return res, err
	}
	if s.group != nil {
		return s.group.append(ctx, p)
	}
	return s.runAlone(ctx, p)
}

// runAlone runs one append as its own transaction. One statement is its own transaction:
// no BEGIN and COMMIT round trips.
func (s *Store) runAlone(ctx context.Context, p *prepared) (AppendResult, error) {
	res, err := s.runWaking(ctx, p)
	if errors.Is(err, errRaceOnEventID) {
		// Another append stored some of the ids first and has committed: a retry of this
		// one that raced it (its result is this one's), or an append that reused them (an
		// error). The append statement looks up only one id (see lookups), so the second
		// case ends here too. existing tells them apart; when the other append rolled
		// back after all, running again stores the events.
		var found bool
		if res, found, err = p.existing(ctx, s.pool); err == nil && !found {
			res, err = s.runWaking(ctx, p)
		}
	}
	return res, err
}

// runWaking runs the append as its own transaction, then wakes the relays of its
// partition, in one round trip (see execWaking).
func (s *Store) runWaking(ctx context.Context, p *prepared) (AppendResult, error) {
	sql, args := p.statement(false)
	var o outcome
	err := execWaking(ctx, s.pool, []statement{{sql: genericPlans}, {sql: sql, args: args}}, []int16{p.partition},
		func(i int, rows pgx.Rows) error {
			if i == 1 {
				return scanOne(rows, &o.dup, &o.last, &o.positions)
			}
			return nil
		})
	if err != nil {
		return AppendResult{}, translate(err)
	}
	return p.result(ctx, s.pool, o)
}

// AppendTx is Append inside the caller's transaction: the events and outbox rows commit or
// roll back with the caller's own changes. The stream's row stays locked until tx ends, so
// keep the transaction short. If tx rolls back, nothing is ever published.
//
// AppendTx wakes the relays with a NOTIFY inside tx. Postgres serialises the commits of
// transactions that notify, so with many concurrent AppendTx callers prefer fewer, larger
// transactions, or Append with group commit.
func (s *Store) AppendTx(ctx context.Context, tx pgx.Tx, streamID string, expected ExpectedVersion, events ...EventData) (res AppendResult, err error) {
	defer func(start time.Time) { s.metrics.observe(start, res, err) }(time.Now())
	// Lookups go through tx: with every pooled connection inside a caller's transaction,
	// waiting for another one from the pool would never end.
	p, err := s.prepare(ctx, tx, streamID, expected, events)
	if err != nil {
		return AppendResult{}, err
	}
	if res, done, err := s.runHooks(ctx, tx, p, events); done || err != nil {
		return res, err
	}
	res, err = p.runInTx(ctx, tx)
	if err == nil && !res.Duplicate {
		if _, err := tx.Exec(ctx, notifySQL, strconv.Itoa(int(p.partition))); err != nil {
			return AppendResult{}, translate(err)
		}
	}
	return res, err
}

// prepared is an append validated and encoded, ready to run in a transaction.
type prepared struct {
	registry    *registry.Registry
	stream      string
	expected    ExpectedVersion
	partition   int16
	traceparent *string
	clientIDs   bool      // some ids came from the caller: the append may be a retry
	mayBeStored bool      // a run of this very append failed after it was sent: it may have committed
	clientID    uuid.UUID // the first of them
	ids         []uuid.UUID
	types       []string
	schemaIDs   []int32
	data        [][]byte
	metadata    [][]byte // nil for none, stored as '{}'
}

func (s *Store) prepare(ctx context.Context, db registry.Querier, streamID string, expected ExpectedVersion, events []EventData) (*prepared, error) {
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
		p.ids[i] = ev.ID
		if ev.ID == uuid.Nil {
			id, err := uuid.NewV7()
			if err != nil {
				return nil, err
			}
			p.ids[i] = id
		} else if !p.clientIDs {
			p.clientIDs, p.clientID = true, ev.ID
		}
		if seen[p.ids[i]] {
			return nil, fmt.Errorf("%w: %s: event id %s appears twice", ErrInvalidAppend, eventPath(i), p.ids[i])
		}
		seen[p.ids[i]] = true
		if ev.Type == "" {
			return nil, fmt.Errorf("%w: %s: type is required", ErrInvalidAppend, eventPath(i))
		}
		if err := ValidateEventType(ev.Type); err != nil {
			return nil, fmt.Errorf("%s.type: %w", eventPath(i), err)
		}
		p.types[i] = ev.Type
		md, err := s.encodeMetadata(ev.Metadata)
		if err != nil {
			return nil, fmt.Errorf("%s.metadata: %w", eventPath(i), err)
		}
		p.metadata[i] = md
		v, err := s.registry.LatestCachedTx(ctx, db, ev.Type)
		if errors.Is(err, registry.ErrSubjectNotFound) {
			return nil, fmt.Errorf("%w: %s: %q has no registered schema", ErrUnknownEventType, eventPath(i), ev.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("looking up schema of %q: %w", ev.Type, err)
		}
		if name := v.Schema.FullName(); name != ev.Type {
			// A subject registered by hand with another record's schema: encoding with it
			// would publish ce-type ev.Type over data that is not of that type.
			return nil, fmt.Errorf("%w: %s: subject %q holds a schema of record %q, not of %q", ErrUnknownEventType, eventPath(i), ev.Type, name, ev.Type)
		}
		data, err := encodeWire(v.Schema, uint32(v.ID), ev.Data)
		var verr *avro.ValidationError
		if errors.As(err, &verr) {
			for _, f := range verr.Fields {
				invalid.Fields = append(invalid.Fields, FieldError{
					Path: joinPath(eventPath(i)+".data", f.Path), Rule: f.Rule, Message: f.Message, Value: f.Value,
				})
			}
			continue
		}
		if err != nil {
			invalid.Fields = append(invalid.Fields, FieldError{Path: eventPath(i) + ".data", Rule: "type", Message: err.Error()})
			continue
		}
		if size := len(data) - avro.WireHeaderSize; size > s.cfg.MaxEventSize {
			return nil, fmt.Errorf("%w: %s: data is %d bytes encoded, limit %d", ErrTooLarge, eventPath(i), size, s.cfg.MaxEventSize)
		}
		p.schemaIDs[i] = int32(v.ID)
		p.data[i] = data
	}
	if len(invalid.Fields) > 0 {
		return nil, &invalid
	}
	return p, nil
}

// eventPath names the append's event i in errors. It is built only for errors, not as one
// more allocation for each event of every append.
func eventPath(i int) string { return "events[" + strconv.Itoa(i) + "]" }

// encodeWire encodes data, JSON or Go values, in the wire format with schemaID.
func encodeWire(s *avro.Schema, schemaID uint32, data any) ([]byte, error) {
	switch d := data.(type) {
	case json.RawMessage:
		return s.EncodeJSONWire(schemaID, d)
	case nil:
		return s.EncodeJSONWire(schemaID, []byte("null"))
	default:
		return s.EncodeWire(schemaID, d)
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
		if strings.IndexByte(k, 0) >= 0 || strings.IndexByte(v, 0) >= 0 {
			// Postgres jsonb cannot hold U+0000.
			return nil, fmt.Errorf("%w: metadata must not contain NUL (U+0000) characters", ErrInvalidAppend)
		}
		size += len(k) + len(v)
	}
	if size > s.cfg.MaxMetadataSize {
		return nil, fmt.Errorf("%w: metadata is %d bytes, limit %d", ErrTooLarge, size, s.cfg.MaxMetadataSize)
	}
	if len(md) == 0 {
		return nil, nil // stored as '{}' (see appendCTE); no JSON for Postgres to parse
	}
	return json.Marshal(md)
}

// ValidateStreamID reports whether id can name a stream: 1 to 256 bytes of UTF-8, no
// control characters, no white space at either end, not starting with '-' (the text
// before the first '-' is the stream's category). Every other character is allowed: the
// NATS subject encodes '.', '*', '>', spaces and non-ASCII bytes reversibly, and an id
// without control characters or outer white space travels unchanged in the ce-subject
// header (NATS clients trim a header value's leading blanks; many trim trailing ones).
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
	first, _ := utf8.DecodeRuneInString(id)
	last, _ := utf8.DecodeLastRuneInString(id)
	if unicode.IsSpace(first) || unicode.IsSpace(last) {
		return fmt.Errorf("%w: %q starts or ends with white space", ErrInvalidStreamID, truncate(id, 64))
	}
	return nil
}

// errRaceOnEventID: a concurrent append stored one of our event ids first.
var errRaceOnEventID = fmt.Errorf("%w: stored concurrently by another append; retry to get its result", ErrEventIDReused)

// runInTx performs the append in the caller's transaction, in one round trip: the
// settings that plan the statement once (genericPlans) with the caller's kept aside, the
// statement, the caller's settings back; then a second query only for a retry or a
// conflict.
func (p *prepared) runInTx(ctx context.Context, tx batcher) (AppendResult, error) {
	sql, args := p.statement(true)
	b := &pgx.Batch{}
	b.Queue(genericPlansSave)
	b.Queue(sql, args...)
	b.Queue(genericPlansRestore)
	var o outcome
	err := func() error {
		br := tx.SendBatch(ctx, b)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return err
		}
		if err := o.scan(br.QueryRow()); err != nil {
			return err
		}
		if _, err := br.Exec(); err != nil {
			return err
		}
		return br.Close()
	}()
	if err != nil {
		return AppendResult{}, translate(err)
	}
	return p.result(ctx, tx, o)
}

// batcher runs a pipelined batch and single queries: a pool or a transaction.
type batcher interface {
	querier
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// existing looks for the append's ids among stored events. found is true when all of them
// are stored as this append would store them: the append is a retry.
func (p *prepared) existing(ctx context.Context, db querier) (AppendResult, bool, error) {
	rows, err := db.Query(ctx, `
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
	// Ids pgjet generated can only have been stored by this append's own earlier run
	// (mayBeStored): that is the append's result, not a retry's.
	res := AppendResult{StreamID: p.stream, EventIDs: p.ids, Duplicate: p.clientIDs}
	for i, s := range got {
		switch {
		case s.id != p.ids[i] || s.stream != p.stream || (i > 0 && s.version != got[i-1].version+1):
			return AppendResult{}, false, reused(fmt.Sprintf("event %s is stored at %q version %d, not as part of this append", s.id, s.stream, s.version))
		case s.typ != p.types[i] || !jsonEqual(s.metadata, p.storedMetadata(i)):
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
		actual, err := streamVersion(ctx, db, p.stream)
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

// storedMetadata returns event i's metadata as stored: '{}' for none.
func (p *prepared) storedMetadata(i int) []byte {
	if p.metadata[i] == nil {
		return []byte("{}")
	}
	return p.metadata[i]
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
