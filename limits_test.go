package pgjet_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/avro"
	"github.com/pgjet/pgjet/internal/pgtest"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

// Limits of the store under test, small enough to break on purpose.
const (
	testMaxEvents   = 5
	testMaxEvent    = 2 << 10
	testMaxMetadata = 256
)

// snapshot is everything an append can change.
type snapshot struct{ events, outbox, streams int }

func take(t *testing.T, pool *pgxpool.Pool) snapshot {
	t.Helper()
	return snapshot{count(t, pool, "pgjet.events"), count(t, pool, "pgjet.outbox"), count(t, pool, "pgjet.streams")}
}

// badInputCase is an append that must fail with want and change nothing.
type badInputCase struct {
	name     string
	stream   string
	expected pgjet.ExpectedVersion
	events   []pgjet.EventData
	want     error
}

func badInputCases() []badInputCase {
	ok := cancelEvent("ok")
	with := func(mutate func(*pgjet.EventData)) []pgjet.EventData {
		e := cancelEvent("x")
		mutate(&e)
		return []pgjet.EventData{ok, e}
	}
	many := make([]pgjet.EventData, testMaxEvents+1)
	for i := range many {
		many[i] = cancelEvent("many")
	}
	bigMetadata := map[string]string{"k": strings.Repeat("m", testMaxMetadata)}
	goValue := func(reason string) any {
		return map[string]any{"order_id": uuid.NewString(), "reason": reason, "cancelled_at": time.Now()}
	}
	const stream = "order-seeded"
	return []badInputCase{
		// Stream ids.
		{"empty stream id", "", pgjet.Any, []pgjet.EventData{ok}, pgjet.ErrInvalidStreamID},
		{"stream id too long", "order-" + strings.Repeat("9", pgjet.MaxStreamIDLength), pgjet.Any, []pgjet.EventData{ok}, pgjet.ErrInvalidStreamID},
		{"stream id not UTF-8", "order-\xff", pgjet.Any, []pgjet.EventData{ok}, pgjet.ErrInvalidStreamID},
		{"stream id with NUL", "order-\x00", pgjet.Any, []pgjet.EventData{ok}, pgjet.ErrInvalidStreamID},
		{"stream id with CRLF header injection", "order-1\r\nNats-Msg-Id: x", pgjet.Any, []pgjet.EventData{ok}, pgjet.ErrInvalidStreamID},
		{"stream id with C1 control", "order-\u0085", pgjet.Any, []pgjet.EventData{ok}, pgjet.ErrInvalidStreamID},
		{"stream id with leading space", " order-1", pgjet.Any, []pgjet.EventData{ok}, pgjet.ErrInvalidStreamID},
		{"stream id with trailing space", "order-1 ", pgjet.Any, []pgjet.EventData{ok}, pgjet.ErrInvalidStreamID},
		{"stream id with trailing no-break space", "order-1\u00a0", pgjet.Any, []pgjet.EventData{ok}, pgjet.ErrInvalidStreamID},
		{"stream id without category", "-1", pgjet.Any, []pgjet.EventData{ok}, pgjet.ErrInvalidStreamID},
		// The append as a whole.
		{"no events", stream, pgjet.Any, nil, pgjet.ErrInvalidAppend},
		{"bad expected version", stream, pgjet.ExpectedVersion(-7), []pgjet.EventData{ok}, pgjet.ErrInvalidAppend},
		{"too many events", stream, pgjet.Any, many, pgjet.ErrTooLarge},
		{"repeated event id", stream, pgjet.Any, []pgjet.EventData{withID(ok, uuid.Max), withID(ok, uuid.Max)}, pgjet.ErrInvalidAppend},
		// Event types.
		{"no type", stream, pgjet.Any, with(func(e *pgjet.EventData) { e.Type = "" }), pgjet.ErrInvalidAppend},
		{"type with a space", stream, pgjet.Any, with(func(e *pgjet.EventData) { e.Type = "order placed" }), pgjet.ErrInvalidEventType},
		{"type with a wildcard", stream, pgjet.Any, with(func(e *pgjet.EventData) { e.Type = "order.>" }), pgjet.ErrInvalidEventType},
		{"type with an empty name", stream, pgjet.Any, with(func(e *pgjet.EventData) { e.Type = "order..Placed" }), pgjet.ErrInvalidEventType},
		{"type with CRLF", stream, pgjet.Any, with(func(e *pgjet.EventData) { e.Type = "a.B\r\nx: y" }), pgjet.ErrInvalidEventType},
		{"type too long", stream, pgjet.Any, with(func(e *pgjet.EventData) { e.Type = "a." + strings.Repeat("B", pgjet.MaxEventTypeLength) }), pgjet.ErrInvalidEventType},
		{"unknown type", stream, pgjet.Any, with(func(e *pgjet.EventData) { e.Type = "no.such.Type" }), pgjet.ErrUnknownEventType},
		{"type whose subject holds another record", stream, pgjet.Any, with(func(e *pgjet.EventData) { e.Type = "test.Impostor" }), pgjet.ErrUnknownEventType},
		// Data.
		{"data too large", stream, pgjet.Any, with(func(e *pgjet.EventData) {
			e.Type = placed
			e.Data = json.RawMessage(`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","customer_id":"` + strings.Repeat("c", testMaxEvent) +
				`","customer_email":"c@example.com","items":[{"sku":"A","quantity":1,"unit_price_cents":1}],"placed_at":0}`)
		}), pgjet.ErrTooLarge},
		{"data JSON not UTF-8", stream, pgjet.Any, with(func(e *pgjet.EventData) {
			e.Data = json.RawMessage("{\"order_id\":\"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10\",\"reason\":\"\xff\",\"cancelled_at\":0}")
		}), pgjet.ErrValidation},
		{"data JSON with lone surrogate", stream, pgjet.Any, with(func(e *pgjet.EventData) {
			e.Data = json.RawMessage(`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","reason":"\ud800","cancelled_at":0}`)
		}), pgjet.ErrValidation},
		{"data Go string not UTF-8", stream, pgjet.Any, with(func(e *pgjet.EventData) { e.Data = goValue("bad\xff") }), pgjet.ErrValidation},
		{"data truncated JSON", stream, pgjet.Any, with(func(e *pgjet.EventData) { e.Data = json.RawMessage(`{"order_id":`) }), pgjet.ErrValidation},
		// Metadata.
		{"metadata too large", stream, pgjet.Any, with(func(e *pgjet.EventData) { e.Metadata = bigMetadata }), pgjet.ErrTooLarge},
		{"metadata value not UTF-8", stream, pgjet.Any, with(func(e *pgjet.EventData) { e.Metadata = map[string]string{"k": "\xff"} }), pgjet.ErrInvalidAppend},
		{"metadata key not UTF-8", stream, pgjet.Any, with(func(e *pgjet.EventData) { e.Metadata = map[string]string{"\xc3": "v"} }), pgjet.ErrInvalidAppend},
		{"metadata with NUL", stream, pgjet.Any, with(func(e *pgjet.EventData) { e.Metadata = map[string]string{"k": "a\x00b"} }), pgjet.ErrInvalidAppend},
	}
}

// TestAppendBadInput sends every class of bad input through Append and AppendTx: each
// fails with its error and changes nothing (no events, no outbox rows, no stream, the
// seeded stream's version unchanged; AppendTx's transaction still commits).
func TestAppendBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	require.NoError(t, pgjet.Migrate(ctx, pool))
	s, err := pgjet.New(pgjet.Config{Pool: pool, MaxEventsPerAppend: testMaxEvents, MaxEventSize: testMaxEvent, MaxMetadataSize: testMaxMetadata})
	require.NoError(t, err)
	_, err = s.Registry().RegisterFS(ctx, demoschemas.Files)
	require.NoError(t, err)
	// A subject registered by hand with another record's schema.
	_, err = s.Registry().Register(ctx, "test.Impostor", `{"type":"record","name":"test.Other","fields":[
		{"name":"order_id","type":"string"},{"name":"reason","type":"string"},{"name":"cancelled_at","type":"long"}]}`)
	require.NoError(t, err)
	_, err = s.Append(ctx, "order-seeded", pgjet.NoStream, cancelEvent("seed"))
	require.NoError(t, err)
	before := take(t, pool)

	for _, c := range badInputCases() {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.Append(ctx, c.stream, c.expected, c.events...)
			require.ErrorIs(t, err, c.want)
			require.Equal(t, before, take(t, pool), "Append changed something")

			tx, err := pool.Begin(ctx)
			require.NoError(t, err)
			_, err = s.AppendTx(ctx, tx, c.stream, c.expected, c.events...)
			require.ErrorIs(t, err, c.want)
			require.NoError(t, tx.Commit(ctx), "AppendTx left the transaction usable")
			require.Equal(t, before, take(t, pool), "AppendTx changed something")
		})
	}
	v, err := s.StreamVersion(ctx, "order-seeded")
	require.NoError(t, err)
	require.Equal(t, int64(1), v)

	// The limits are inclusive, and every character a stream id may hold is accepted.
	atLimit := make([]pgjet.EventData, testMaxEvents)
	for i := range atLimit {
		atLimit[i] = cancelEvent("at limit")
	}
	atLimit[0].Metadata = map[string]string{"k": strings.Repeat("m", testMaxMetadata-1)}
	for _, id := range []string{"order-" + strings.Repeat("9", pgjet.MaxStreamIDLength-6), "order-a.b*c>d e~f", "café-1", "inventory"} {
		_, err = s.Append(ctx, id, pgjet.NoStream, atLimit...)
		require.NoError(t, err, "%q", id)
	}
}

// A wire payload whose schema id is not a version of the event's type is an error when
// decoding, never a wrong decode; so is an unknown schema id or a payload that is not
// in the wire format.
func TestDecodeMismatchedSchemaID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	res, err := s.Append(ctx, "order-decode", pgjet.NoStream, cancelEvent("x"))
	require.NoError(t, err)
	events, err := s.ReadStream(ctx, "order-decode", pgjet.Forward, 1, 10)
	require.NoError(t, err)
	require.Len(t, events, 1)
	e := events[0]
	require.Equal(t, res.EventIDs[0], e.ID)

	wrongType := e
	wrongType.Type = placed
	_, err = s.Decode(ctx, wrongType)
	require.ErrorContains(t, err, "is not a version of "+placed)
	_, err = s.DecodeJSON(ctx, wrongType)
	require.Error(t, err)

	unknownID := e
	_, payload, err := avro.SplitWire(e.Data)
	require.NoError(t, err)
	unknownID.Data = avro.AppendWire(nil, 1<<30, payload)
	_, err = s.Decode(ctx, unknownID)
	require.Error(t, err)

	for _, data := range [][]byte{nil, {0, 0}, {1, 0, 0, 0, 1}} {
		bad := e
		bad.Data = data
		_, err = s.Decode(ctx, bad)
		require.ErrorIs(t, err, avro.ErrNotWireFormat)
	}

	hostile := e
	hostile.Data = avro.AppendWire(nil, uint32(e.SchemaID), []byte{0xfe, 0xff, 0xff, 0xff, 0x0f}) // a string of ~2 GB
	_, err = s.Decode(ctx, hostile)
	require.ErrorIs(t, err, avro.ErrInvalidPayload)
}
