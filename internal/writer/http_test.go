package writer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgjet/pgjet"
)

// serve sends one request to h and returns the status and body of the reply.
func serve(t *testing.T, h http.Handler, method, target, body string, headers map[string]string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequestWithContext(t.Context(), method, target, r)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	require.Equal(t, "application/json", res.Header.Get("Content-Type"))
	raw, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, raw
}

func streamPath(stream string) string { return "/streams/" + url.PathEscape(stream) }

func TestHTTP(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	h, err := NewHandler(HandlerConfig{Store: store, MaxBodyBytes: testMaxBody})
	require.NoError(t, err)
	tr := func(t *testing.T, stream, body string, headers map[string]string) (int, []byte) {
		return serve(t, h, http.MethodPost, streamPath(stream), body, headers)
	}

	t.Run("success", func(t *testing.T) { testSharedSuccess(t, store, pool, tr) })
	t.Run("errors", func(t *testing.T) { testSharedErrors(t, store, pool, tr) })

	t.Run("read", func(t *testing.T) {
		t.Parallel()
		stream := "order-read"
		events := make([]map[string]any, 5)
		for i := range events {
			events[i] = event(orderPlaced, placed(i+1))
			events[i]["metadata"] = map[string]string{"n": string(rune('a' + i))}
		}
		status, raw := tr(t, stream, body(t, "no_stream", events...), nil)
		require.Equal(t, 200, status, "%s", raw)
		appended := decodeAppendResponse(t, raw)

		for _, tc := range []struct {
			query    string
			versions []int64
		}{
			{"", []int64{1, 2, 3, 4, 5}},
			{"?from=1&limit=100&direction=forward", []int64{1, 2, 3, 4, 5}},
			{"?limit=2", []int64{1, 2}},
			{"?from=4", []int64{4, 5}},
			{"?from=3&limit=2", []int64{3, 4}},
			{"?from=6", []int64{}},
			{"?direction=backward", []int64{5, 4, 3, 2, 1}},
			{"?direction=backward&limit=2", []int64{5, 4}},
			{"?direction=backward&from=2", []int64{2, 1}},
			{"?direction=backward&from=99&limit=1", []int64{5}},
		} {
			status, raw := serve(t, h, http.MethodGet, streamPath(stream)+tc.query, "", nil)
			require.Equal(t, 200, status, "%s: %s", tc.query, raw)
			var res readResponse
			require.NoError(t, json.Unmarshal(raw, &res))
			require.Equal(t, stream, res.Stream)
			require.NotNil(t, res.Events, "events is [] rather than null")
			got := []int64{}
			for _, e := range res.Events {
				got = append(got, e.Version)
				i := e.Version - 1
				require.Equal(t, appended.EventIDs[i], e.ID)
				require.Equal(t, appended.Positions[i], e.Position)
				require.Equal(t, stream, e.Stream)
				require.Equal(t, orderPlaced, e.Type)
				require.NotZero(t, e.SchemaID)
				require.False(t, e.CreatedAt.IsZero())
				require.Equal(t, map[string]string{"n": string(rune('a' + i))}, e.Metadata)
				var data struct {
					Items []struct {
						Quantity int64 `json:"quantity"`
					} `json:"items"`
				}
				require.NoError(t, json.Unmarshal(e.Data, &data), "%s", e.Data)
				require.Equal(t, e.Version, data.Items[0].Quantity)
			}
			require.Equal(t, tc.versions, got, tc.query)
		}
	})

	t.Run("read errors", func(t *testing.T) {
		t.Parallel()
		seed(t, store, "order-read-errors", 1)
		for _, tc := range []struct {
			name, target string
			status       int
			code, param  string
		}{
			{"unknown stream", "/streams/order-nobody", 404, codeStreamNotFound, ""},
			{"bad stream id", "/streams/-x", 400, codeInvalidStreamID, ""},
			{"zero limit", "/streams/order-read-errors?limit=0", 400, codeInvalidQuery, "limit"},
			{"limit too high", "/streams/order-read-errors?limit=1001", 400, codeInvalidQuery, "limit"},
			{"bad from", "/streams/order-read-errors?from=first", 400, codeInvalidQuery, "from"},
			{"zero from", "/streams/order-read-errors?from=0", 400, codeInvalidQuery, "from"},
			{"bad direction", "/streams/order-read-errors?direction=sideways", 400, codeInvalidQuery, "direction"},
		} {
			status, raw := serve(t, h, http.MethodGet, tc.target, "", nil)
			require.Equal(t, tc.status, status, "%s: %s", tc.name, raw)
			e := decodeError(t, raw)
			require.Equal(t, tc.code, e.Code, tc.name)
			require.Equal(t, tc.param, e.Parameter, tc.name)
		}
	})

	t.Run("http only errors", func(t *testing.T) {
		t.Parallel()
		ok := body(t, nil, event(orderPlaced, placed(1)))
		for _, tc := range []struct {
			name, method, target, body string
			headers                    map[string]string
			status                     int
			code                       string
		}{
			{"text content type", "POST", "/streams/order-ct", ok, map[string]string{"Content-Type": "text/plain"}, 415, codeUnsupportedMediaType},
			{"bad content type", "POST", "/streams/order-ct", ok, map[string]string{"Content-Type": "application/"}, 415, codeUnsupportedMediaType},
			{"stream mismatch", "POST", "/streams/order-a", withStream("order-b", ok), nil, 400, codeInvalidRequest},
			{"method", "DELETE", "/streams/order-a", "", nil, 405, codeMethodNotAllowed},
			{"no route", "GET", "/events", "", nil, 404, codeNotFound},
			{"empty body", "POST", "/streams/order-a", "", nil, 400, codeMalformedJSON},
			{"stream id not UTF-8", "POST", "/streams/order-%FF", ok, nil, 400, codeInvalidStreamID},
			{"stream id with NUL", "POST", "/streams/order-%00", ok, nil, 400, codeInvalidStreamID},
			{"read stream id not UTF-8", "GET", "/streams/order-%FF", "", nil, 400, codeInvalidStreamID},
		} {
			status, raw := serve(t, h, tc.method, tc.target, tc.body, tc.headers)
			require.Equal(t, tc.status, status, "%s: %s", tc.name, raw)
			require.Equal(t, tc.code, decodeError(t, raw).Code, tc.name)
		}
		_, err := store.StreamVersion(t.Context(), "order-ct")
		require.ErrorIs(t, err, pgjet.ErrStreamNotFound)
	})

	t.Run("content types and stream in body", func(t *testing.T) {
		t.Parallel()
		for i, ct := range []string{"", "application/json; charset=utf-8", "application/cloudevents-batch+json"} {
			stream := "order-ct-" + uuid.NewString()
			b := body(t, nil, event(orderPlaced, placed(1)))
			if i == 1 {
				b = withStream(stream, b)
			}
			req := httptest.NewRequestWithContext(t.Context(), "POST", streamPath(stream), strings.NewReader(b))
			if ct != "" {
				req.Header.Set("Content-Type", ct)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			require.Equal(t, 200, rec.Code, "%q: %s", ct, rec.Body)
		}
	})

	t.Run("escaped stream id", func(t *testing.T) {
		t.Parallel()
		stream := "order-a/b c"
		status, raw := tr(t, stream, body(t, nil, event(orderPlaced, placed(1))), nil)
		require.Equal(t, 200, status, "%s", raw)
		require.Equal(t, stream, decodeAppendResponse(t, raw).Stream)
		status, raw = serve(t, h, http.MethodGet, streamPath(stream), "", nil)
		require.Equal(t, 200, status, "%s", raw)
	})
}

func TestNewHandlerConfig(t *testing.T) {
	t.Parallel()
	_, err := NewHandler(HandlerConfig{})
	require.ErrorContains(t, err, "Store")
	_, err = NewHandler(HandlerConfig{Store: &pgjet.Store{}, MaxBodyBytes: -1})
	require.ErrorContains(t, err, "MaxBodyBytes")
}

func TestHTTPInternalError(t *testing.T) {
	t.Parallel()
	// A pool on a port nobody listens on: every query fails.
	pool, err := pgxpool.New(t.Context(), "postgres://pgjet@127.0.0.1:1/none?connect_timeout=2")
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	store, err := pgjet.New(pgjet.Config{Pool: pool})
	require.NoError(t, err)
	core, logs := observer.New(zap.DebugLevel)
	h, err := NewHandler(HandlerConfig{Store: store, Logger: zap.New(core)})
	require.NoError(t, err)

	status, raw := serve(t, h, http.MethodPost, "/streams/order-1", body(t, nil, event(orderPlaced, placed(1))), nil)
	require.Equal(t, 500, status, "%s", raw)
	e := decodeError(t, raw)
	require.Equal(t, codeInternal, e.Code)
	require.NotContains(t, e.Message, "127.0.0.1", "details stay in the log")
	entries := logs.FilterLevelExact(zap.ErrorLevel).All()
	require.Len(t, entries, 1)
	require.Equal(t, "order-1", entries[0].ContextMap()["stream"])
	require.Contains(t, entries[0].ContextMap()["error"], "127.0.0.1")

	status, raw = serve(t, h, http.MethodGet, "/streams/order-1", "", nil)
	require.Equal(t, 500, status, "%s", raw)
	require.Len(t, logs.FilterLevelExact(zap.ErrorLevel).All(), 2)
}

// cutReader yields its text, then fails as a connection does when the client hangs up, or
// the server's read timeout passes, before the body's end.
type cutReader struct{ r io.Reader }

func (c *cutReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// TestHTTPUnreadableBody: a body that ends early is the client's fault: a 400 that is not
// logged as an error, and nothing is written. (A 500 would tell the client to retry, and
// count against the writer's error rate.)
func TestHTTPUnreadableBody(t *testing.T) {
	t.Parallel()
	store, _ := newStore(t)
	core, logs := observer.New(zap.DebugLevel)
	h, err := NewHandler(HandlerConfig{Store: store, Logger: zap.New(core)})
	require.NoError(t, err)

	ok := body(t, nil, event(orderPlaced, placed(1)))
	for _, sent := range []string{ok[:len(ok)/2], ok} {
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/streams/order-cut", &cutReader{strings.NewReader(sent)})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		require.Equal(t, http.StatusBadRequest, rec.Code, "%s", rec.Body)
		e := decodeError(t, rec.Body.Bytes())
		require.Equal(t, codeMalformedJSON, e.Code)
		require.Contains(t, e.Message, "could not be read")
	}
	require.Empty(t, logs.FilterLevelExact(zap.ErrorLevel).All())
	_, err = store.StreamVersion(t.Context(), "order-cut")
	require.ErrorIs(t, err, pgjet.ErrStreamNotFound)
}

// A read's reply stops once its events' data reach MaxReadBytes, at least one event in, and
// paging on from the last version returns the rest, in both directions; a page larger than
// the store's chunk is read whole when it fits.
func TestReadReplyIsBounded(t *testing.T) {
	t.Parallel()
	store, _ := newStore(t)
	const n = 250
	events := make([]map[string]any, n)
	for i := range events {
		events[i] = event(orderPlaced, placed(i+1))
	}
	page := func(t *testing.T, h http.Handler, query string) []int64 {
		t.Helper()
		status, raw := serve(t, h, http.MethodGet, streamPath("order-bounded")+query, "", nil)
		require.Equal(t, 200, status, "%s", raw)
		var res readResponse
		require.NoError(t, json.Unmarshal(raw, &res))
		var got []int64
		for _, e := range res.Events {
			got = append(got, e.Version)
		}
		return got
	}
	big, err := NewHandler(HandlerConfig{Store: store})
	require.NoError(t, err)
	for i := 0; i < n; i += 10 { // the test store takes 10 events per append
		status, raw := serve(t, big, http.MethodPost, streamPath("order-bounded"), body(t, i, events[i:i+10]...), nil)
		require.Equal(t, 200, status, "%s", raw)
	}
	all := page(t, big, "?limit=1000")
	require.Len(t, all, n, "three chunks of the store, one reply")
	for i, v := range all {
		require.Equal(t, int64(i+1), v)
	}

	small, err := NewHandler(HandlerConfig{Store: store, MaxReadBytes: 2 << 10})
	require.NoError(t, err)
	for _, dir := range []string{"forward", "backward"} {
		var got []int64
		from := int64(1)
		if dir == "backward" {
			from = n
		}
		for pages := 0; ; pages++ {
			require.Less(t, pages, n, "paging does not end")
			p := page(t, small, fmt.Sprintf("?direction=%s&from=%d&limit=1000", dir, from))
			if len(p) == 0 {
				break
			}
			require.Less(t, len(p), 10, "a 2 KiB reply holds a few events, not the limit")
			got = append(got, p...)
			if dir == "backward" {
				if from = p[len(p)-1] - 1; from < 1 {
					break
				}
			} else {
				from = p[len(p)-1] + 1
			}
		}
		require.Len(t, got, n, dir)
	}

	tiny, err := NewHandler(HandlerConfig{Store: store, MaxReadBytes: 1})
	require.NoError(t, err)
	require.Equal(t, []int64{7}, page(t, tiny, "?from=7"), "an event over the budget still comes, alone")
}

// A client that hangs up while its append or read runs is not the writer's failure: no
// error is logged (an alert on the writer's errors would fire on impatient clients).
func TestHTTPClientGoneIsNotAnError(t *testing.T) {
	t.Parallel()
	store, _ := newStore(t)
	core, logs := observer.New(zap.DebugLevel)
	h, err := NewHandler(HandlerConfig{Store: store, Logger: zap.New(core)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, req := range []*http.Request{
		httptest.NewRequestWithContext(ctx, http.MethodPost, "/streams/order-gone", strings.NewReader(body(t, nil, event(orderPlaced, placed(1))))),
		httptest.NewRequestWithContext(ctx, http.MethodGet, "/streams/order-gone", nil),
	} {
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	require.Empty(t, logs.FilterLevelExact(zap.ErrorLevel).All())
	require.Len(t, logs.FilterMessage("client gone before the answer").All(), 2)
}
