package writer

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/pgtest"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Limits of the stores and services under test, small enough to break on purpose.
const (
	testMaxEvents   = 10
	testMaxBody     = 64 << 10
	testMaxEvent    = 8 << 10
	testMaxMetadata = 1 << 10
)

const (
	orderPlaced = "pgjet.demo.order.OrderPlaced"
	impostor    = "test.Impostor" // registered with a schema of record test.Other
)

// newStore returns a store on a fresh, migrated database with the demo schemas registered.
func newStore(t *testing.T) (*pgjet.Store, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.Pool(t)
	require.NoError(t, pgjet.Migrate(t.Context(), pool))
	store, err := pgjet.New(pgjet.Config{
		Pool: pool, MaxEventsPerAppend: testMaxEvents, MaxEventSize: testMaxEvent, MaxMetadataSize: testMaxMetadata,
	})
	require.NoError(t, err)
	_, err = store.Registry().RegisterFS(t.Context(), demoschemas.Files)
	require.NoError(t, err)
	// A subject registered by hand with another record's schema.
	_, err = store.Registry().Register(t.Context(), impostor, `{"type":"record","name":"test.Other","fields":[{"name":"n","type":"int"}]}`)
	require.NoError(t, err)
	return store, pool
}

// placed is valid OrderPlaced data.
func placed(quantity int) map[string]any {
	return map[string]any{
		"order_id":       uuid.NewString(),
		"customer_id":    "c-1",
		"customer_email": "c1@example.com",
		"items":          []any{map[string]any{"sku": "SKU-1", "quantity": quantity, "unit_price_cents": 1250}},
		"placed_at":      "2025-03-04T05:06:07Z",
	}
}

// event is one event of a request body.
func event(typ string, data any, id ...uuid.UUID) map[string]any {
	e := map[string]any{"type": typ, "data": data}
	if len(id) > 0 {
		e["id"] = id[0].String()
	}
	return e
}

// body is a request body without a stream: expected version (nil: left out) and events.
func body(t *testing.T, expected any, events ...map[string]any) string {
	t.Helper()
	m := map[string]any{"events": events}
	if expected != nil {
		m["expected_version"] = expected
	}
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return string(b)
}

// withStream adds a "stream" member to a request body that starts with '{'.
func withStream(stream, body string) string {
	rest, ok := strings.CutPrefix(strings.TrimSpace(body), "{")
	if !ok {
		return body
	}
	q, _ := json.Marshal(stream)
	if strings.HasPrefix(strings.TrimSpace(rest), "}") {
		return fmt.Sprintf(`{"stream": %s%s`, q, rest)
	}
	return fmt.Sprintf(`{"stream": %s, %s`, q, rest)
}

// seed appends n OrderPlaced events to stream directly through the store.
func seed(t *testing.T, store *pgjet.Store, stream string, n int, ids ...uuid.UUID) {
	t.Helper()
	events := make([]pgjet.EventData, n)
	for i := range events {
		data, err := json.Marshal(placed(i + 1))
		require.NoError(t, err)
		events[i] = pgjet.EventData{Type: orderPlaced, Data: json.RawMessage(data)}
		if i < len(ids) {
			events[i].ID = ids[i]
		}
	}
	_, err := store.Append(t.Context(), stream, pgjet.Any, events...)
	require.NoError(t, err)
}

func decodeAppendResponse(t *testing.T, raw []byte) appendResponse {
	t.Helper()
	var res appendResponse
	require.NoError(t, json.Unmarshal(raw, &res), "%s", raw)
	return res
}

func decodeError(t *testing.T, raw []byte) errorBody {
	t.Helper()
	var env errorEnvelope
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&env), "%s", raw)
	require.NotEmpty(t, env.Error.Code, "%s", raw)
	require.NotEmpty(t, env.Error.Message, "%s", raw)
	return env.Error
}

// transport sends an append request over HTTP or NATS and returns the status and body of the
// reply; headers are extra request headers.
type transport func(t *testing.T, stream, body string, headers map[string]string) (int, []byte)

// errorCase is a failing append, the same over both transports.
type errorCase struct {
	name   string
	stream string // default: a stream named for the case
	seed   func(t *testing.T, store *pgjet.Store, stream string)
	body   func(t *testing.T, stream string) string
	status int
	code   string
	check  func(t *testing.T, stream string, e errorBody)
}

func fixed(s string) func(*testing.T, string) string {
	return func(*testing.T, string) string { return s }
}

func sharedErrorCases() []errorCase {
	one := func(t *testing.T, _ string) string { return body(t, nil, event(orderPlaced, placed(1))) }
	reused := uuid.New()
	return []errorCase{
		{name: "malformed json", body: fixed(`{"events": [`), status: 400, code: codeMalformedJSON},
		{name: "two json values", body: func(t *testing.T, s string) string { return one(t, s) + ` {}` }, status: 400, code: codeMalformedJSON},
		{
			name: "unknown field", status: 400, code: codeUnknownField,
			body:  fixed(`{"expected": 1, "events": [{"type": "` + orderPlaced + `", "data": {}}]}`),
			check: func(t *testing.T, _ string, e errorBody) { require.Equal(t, "expected", e.Path) },
		},
		{
			name: "unknown event field", status: 400, code: codeUnknownField,
			body:  fixed(`{"events": [{"type": "` + orderPlaced + `", "data": {}, "meta": {}}]}`),
			check: func(t *testing.T, _ string, e errorBody) { require.Equal(t, "events[0].meta", e.Path) },
		},
		{
			name: "bad expected version", status: 400, code: codeInvalidExpectedVersion,
			body:  func(t *testing.T, _ string) string { return body(t, "sometimes", event(orderPlaced, placed(1))) },
			check: func(t *testing.T, _ string, e errorBody) { require.Equal(t, "expected_version", e.Path) },
		},
		{
			name: "negative expected version", status: 400, code: codeInvalidExpectedVersion,
			body: func(t *testing.T, _ string) string { return body(t, -3, event(orderPlaced, placed(1))) },
		},
		{name: "bad stream id", stream: "-no-category", body: one, status: 400, code: codeInvalidStreamID},
		{name: "control character in stream id", stream: "order-\x07", body: one, status: 400, code: codeInvalidStreamID},
		{
			name: "bad event id", status: 400, code: codeInvalidRequest,
			body:  fixed(`{"events": [{"id": "not-a-uuid", "type": "` + orderPlaced + `", "data": {}}]}`),
			check: func(t *testing.T, _ string, e errorBody) { require.Equal(t, "events[0].id", e.Path) },
		},
		{name: "no events", body: fixed(`{"events": []}`), status: 400, code: codeInvalidRequest},
		{
			name: "repeated event id", status: 400, code: codeInvalidAppend,
			body: func(t *testing.T, _ string) string {
				id := uuid.New()
				return body(t, nil, event(orderPlaced, placed(1), id), event(orderPlaced, placed(2), id))
			},
		},
		{
			name: "unknown event type", status: 404, code: codeUnknownEventType,
			body: func(t *testing.T, _ string) string {
				return body(t, nil, event(orderPlaced, placed(1)), event("pgjet.demo.order.OrderLost", map[string]any{}))
			},
		},
		{
			name: "conflict", status: 409, code: codeWrongExpectedVersion,
			seed: func(t *testing.T, store *pgjet.Store, stream string) { seed(t, store, stream, 1) },
			body: func(t *testing.T, _ string) string { return body(t, 5, event(orderPlaced, placed(1))) },
			check: func(t *testing.T, stream string, e errorBody) {
				require.Equal(t, stream, e.Stream)
				require.NotNil(t, e.Expected)
				require.Equal(t, pgjet.Exact(5), *e.Expected)
				require.NotNil(t, e.Actual)
				require.Equal(t, int64(1), *e.Actual)
			},
		},
		{
			name: "conflict with no_stream", status: 409, code: codeWrongExpectedVersion,
			seed: func(t *testing.T, store *pgjet.Store, stream string) { seed(t, store, stream, 2) },
			body: func(t *testing.T, _ string) string { return body(t, "no_stream", event(orderPlaced, placed(1))) },
			check: func(t *testing.T, stream string, e errorBody) {
				require.Equal(t, pgjet.NoStream, *e.Expected)
				require.Equal(t, int64(2), *e.Actual)
			},
		},
		{
			name: "conflict with exists", status: 409, code: codeWrongExpectedVersion,
			body: func(t *testing.T, _ string) string { return body(t, "exists", event(orderPlaced, placed(1))) },
			check: func(t *testing.T, stream string, e errorBody) {
				require.Equal(t, pgjet.StreamExists, *e.Expected)
				require.Equal(t, int64(0), *e.Actual)
			},
		},
		{
			name: "event id reused", status: 409, code: codeEventIDReused,
			seed: func(t *testing.T, store *pgjet.Store, stream string) { seed(t, store, stream+"-other", 1, reused) },
			body: func(t *testing.T, _ string) string { return body(t, nil, event(orderPlaced, placed(7), reused)) },
		},
		{
			name: "body too large", status: 413, code: codeRequestTooLarge,
			body: func(t *testing.T, _ string) string {
				data := placed(1)
				data["note"] = strings.Repeat("x", testMaxBody)
				return body(t, nil, event(orderPlaced, data))
			},
			check: func(t *testing.T, _ string, e errorBody) { require.Equal(t, int64(testMaxBody), e.Limit) },
		},
		{
			name: "too many events", status: 413, code: codeTooLarge,
			body: func(t *testing.T, _ string) string {
				events := make([]map[string]any, testMaxEvents+1)
				for i := range events {
					events[i] = event(orderPlaced, placed(i+1))
				}
				return body(t, nil, events...)
			},
		},
		// Bad input and limits (docs/errors.md, "Limits").
		{
			name: "body not UTF-8", status: 400, code: codeMalformedJSON,
			body: fixed("{\"events\": [{\"type\": \"" + orderPlaced + "\", \"data\": {\"customer_id\": \"c-\xff\"}}]}"),
		},
		{name: "stream id too long", stream: "order-" + strings.Repeat("9", pgjet.MaxStreamIDLength), body: one, status: 400, code: codeInvalidStreamID},
		{name: "stream id with header injection", stream: "order-1\r\nNats-Msg-Id: x", body: one, status: 400, code: codeInvalidStreamID},
		{name: "stream id with leading space", stream: " order-1", body: one, status: 400, code: codeInvalidStreamID},
		{name: "stream id with trailing space", stream: "order-1 ", body: one, status: 400, code: codeInvalidStreamID},
		{
			name: "event type not an Avro name", status: 400, code: codeInvalidEventType,
			body: func(t *testing.T, _ string) string {
				return body(t, nil, event(orderPlaced, placed(1)), event("order placed", placed(1)))
			},
		},
		{
			name: "event type with a wildcard", status: 400, code: codeInvalidEventType,
			body: func(t *testing.T, _ string) string { return body(t, nil, event("pgjet.demo.>", placed(1))) },
		},
		{
			name: "event type too long", status: 400, code: codeInvalidEventType,
			body: func(t *testing.T, _ string) string {
				return body(t, nil, event("a."+strings.Repeat("B", pgjet.MaxEventTypeLength), placed(1)))
			},
		},
		{
			name: "event type whose subject holds another record", status: 404, code: codeUnknownEventType,
			body: func(t *testing.T, _ string) string { return body(t, nil, event(impostor, map[string]any{"n": 1})) },
		},
		{
			name: "event too large", status: 413, code: codeTooLarge,
			body: func(t *testing.T, _ string) string {
				data := placed(1)
				data["note"] = strings.Repeat("x", testMaxEvent)
				return body(t, nil, event(orderPlaced, data))
			},
		},
		{
			name: "metadata too large", status: 413, code: codeTooLarge,
			body: func(t *testing.T, _ string) string {
				e := event(orderPlaced, placed(1))
				e["metadata"] = map[string]string{"k": strings.Repeat("m", testMaxMetadata)}
				return body(t, nil, e)
			},
		},
		{
			name: "metadata with NUL", status: 400, code: codeInvalidAppend,
			body: fixed(`{"events": [{"type": "` + orderPlaced + `", "data": {}, "metadata": {"k": "a\u0000b"}}]}`),
		},
		{
			name: "data with a lone surrogate", status: 422, code: codeValidationFailed,
			body: func(t *testing.T, _ string) string {
				b := body(t, nil, event(orderPlaced, placed(1)))
				return strings.Replace(b, `"customer_id":"c-1"`, `"customer_id":"c-\ud800"`, 1)
			},
			check: func(t *testing.T, _ string, e errorBody) {
				require.Len(t, e.Fields, 1)
				require.Equal(t, "events[0].data", e.Fields[0].Path)
			},
		},
		{
			name: "schema violation", status: 422, code: codeValidationFailed,
			body: func(t *testing.T, _ string) string {
				bad := placed(1)
				bad["order_id"] = "not-a-uuid"
				delete(bad, "customer_id")
				bad["items"] = []any{
					map[string]any{"sku": "SKU-1", "quantity": 1, "unit_price_cents": 100},
					map[string]any{"sku": "SKU-2", "quantity": "two", "unit_price_cents": 100},
				}
				bad["channel"] = "FAX"
				late := placed(1)
				late["placed_at"] = "yesterday"
				return body(t, nil, event(orderPlaced, bad), event(orderPlaced, placed(3)), event(orderPlaced, late))
			},
			check: func(t *testing.T, _ string, e errorBody) {
				got := map[string]string{}
				for _, f := range e.Fields {
					require.NotEmpty(t, f.Message)
					got[f.Path] = f.Rule
				}
				require.Equal(t, map[string]string{
					"events[0].data.order_id":          "uuid",
					"events[0].data.customer_id":       "required",
					"events[0].data.items[1].quantity": "type",
					"events[0].data.channel":           "enum",
					"events[2].data.placed_at":         "timestamp",
				}, got)
			},
		},
	}
}

// testSharedErrors runs every shared error case over tr, and checks that nothing was
// written: no events and no outbox rows for the stream, its version unchanged.
func testSharedErrors(t *testing.T, store *pgjet.Store, pool *pgxpool.Pool, tr transport) {
	for _, tc := range sharedErrorCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stream := tc.stream
			if stream == "" {
				stream = "order-" + strings.ReplaceAll(t.Name(), "/", "_")
			}
			var before int64
			if tc.seed != nil {
				tc.seed(t, store, stream)
				before, _ = store.StreamVersion(t.Context(), stream)
			}
			status, raw := tr(t, stream, tc.body(t, stream), nil)
			require.Equal(t, tc.status, status, "%s", raw)
			e := decodeError(t, raw)
			require.Equal(t, tc.code, e.Code, e.Message)
			if tc.check != nil {
				tc.check(t, stream, e)
			}
			if pgjet.ValidateStreamID(stream) == nil {
				after, _ := store.StreamVersion(t.Context(), stream)
				require.Equal(t, before, after, "the failed append wrote events")
			}
			var events, outbox int64
			require.NoError(t, pool.QueryRow(t.Context(), `
				SELECT count(*), count(o.position) FROM pgjet.events e LEFT JOIN pgjet.outbox o USING (position)
				WHERE e.stream_id = $1`, stream).Scan(&events, &outbox))
			require.Equal(t, before, events, "events of the stream")
			require.Equal(t, before, outbox, "outbox rows of the stream")
		})
	}
}

// testSharedSuccess appends over tr, reads the events back and retries idempotently.
func testSharedSuccess(t *testing.T, store *pgjet.Store, pool *pgxpool.Pool, tr transport) {
	t.Run("append", func(t *testing.T) {
		t.Parallel()
		stream := "order-append"
		status, raw := tr(t, stream, `{"expected_version": "no_stream", "events": [
			{"type": "`+orderPlaced+`", "data": {"order_id": "0190f7a2-1c2b-7d3e-8f40-123456789abc", "customer_id": "c-9",
				"customer_email": "c9@example.com", "items": [{"sku": "S", "quantity": 3, "unit_price_cents": 99}],
				"placed_at": "2025-03-04T05:06:07Z"}, "metadata": {"source": "test"}},
			{"type": "pgjet.demo.order.PaymentCaptured", "data": {"order_id": "0190f7a2-1c2b-7d3e-8f40-123456789abc",
				"amount_cents": 297, "method": "CARD", "captured_at": 1741064767000}}]}`, nil)
		require.Equal(t, 200, status, "%s", raw)
		res := decodeAppendResponse(t, raw)
		require.Equal(t, stream, res.Stream)
		require.Equal(t, int64(1), res.FirstVersion)
		require.Equal(t, int64(2), res.LastVersion)
		require.Len(t, res.Positions, 2)
		require.Less(t, res.Positions[0], res.Positions[1])
		require.Len(t, res.EventIDs, 2)
		require.False(t, res.Duplicate)

		status, raw = tr(t, stream, body(t, 2, event(orderPlaced, placed(4))), nil)
		require.Equal(t, 200, status, "%s", raw)
		res = decodeAppendResponse(t, raw)
		require.Equal(t, int64(3), res.FirstVersion)
		require.Equal(t, int64(3), res.LastVersion)

		events, err := store.ReadStream(t.Context(), stream, pgjet.Forward, 1, 100)
		require.NoError(t, err)
		require.Len(t, events, 3)
		require.Equal(t, "pgjet.demo.order.PaymentCaptured", events[1].Type)
		require.Equal(t, map[string]string{"source": "test"}, events[0].Metadata)
		data, err := store.DecodeJSON(t.Context(), events[0])
		require.NoError(t, err)
		var got struct {
			OrderID string `json:"order_id"`
			Items   []struct {
				Quantity int `json:"quantity"`
			} `json:"items"`
			Currency string `json:"currency"`
		}
		require.NoError(t, json.Unmarshal(data, &got))
		require.Equal(t, "0190f7a2-1c2b-7d3e-8f40-123456789abc", got.OrderID)
		require.Equal(t, 3, got.Items[0].Quantity)
		require.Equal(t, "EUR", got.Currency, "schema default")
	})

	t.Run("idempotent retry", func(t *testing.T) {
		t.Parallel()
		stream := "order-retry"
		req := body(t, "no_stream", event(orderPlaced, placed(1), uuid.New()), event(orderPlaced, placed(2), uuid.New()))
		status, raw := tr(t, stream, req, nil)
		require.Equal(t, 200, status, "%s", raw)
		first := decodeAppendResponse(t, raw)
		require.False(t, first.Duplicate)
		for range 2 {
			status, raw = tr(t, stream, req, nil)
			require.Equal(t, 200, status, "%s", raw)
			again := decodeAppendResponse(t, raw)
			require.True(t, again.Duplicate)
			again.Duplicate = false
			require.Equal(t, first, again)
		}
		v, err := store.StreamVersion(t.Context(), stream)
		require.NoError(t, err)
		require.Equal(t, int64(2), v, "the retries wrote nothing")
	})

	t.Run("trace context", func(t *testing.T) {
		t.Parallel()
		stream := "order-traced"
		tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		status, raw := tr(t, stream, body(t, nil, event(orderPlaced, placed(1))), map[string]string{"traceparent": tp})
		require.Equal(t, 200, status, "%s", raw)
		var got string
		require.NoError(t, pool.QueryRow(t.Context(), `
			SELECT o.traceparent FROM pgjet.outbox o JOIN pgjet.events e USING (position)
			WHERE e.stream_id = $1`, stream).Scan(&got))
		require.Equal(t, tp, got)
	})
}
