package writer

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
)

func TestDecodeAppendRequest(t *testing.T) {
	t.Parallel()
	id := "0190f7a2-1c2b-7d3e-8f40-123456789abc"
	req, err := decodeAppendRequest(strings.NewReader(` {
		"stream": "order-1",
		"expected_version": 3,
		"events": [
			{"id": "` + id + `", "type": "a.B", "data": {"x": [1, 2]}, "metadata": {"k": "v", "a.b": "c"}},
			{"type": "a.C", "data": null, "id": null, "metadata": null}
		]
	} `))
	require.NoError(t, err)
	require.Equal(t, "order-1", req.Stream)
	require.Equal(t, pgjet.Exact(3), req.Expected)
	require.Len(t, req.Events, 2)
	require.Equal(t, uuid.MustParse(id), req.Events[0].ID)
	require.Equal(t, "a.B", req.Events[0].Type)
	require.JSONEq(t, `{"x": [1, 2]}`, string(req.Events[0].Data))
	require.Equal(t, map[string]string{"k": "v", "a.b": "c"}, req.Events[0].Metadata)
	require.Equal(t, uuid.Nil, req.Events[1].ID)
	require.Equal(t, "null", string(req.Events[1].Data))
	require.Nil(t, req.Events[1].Metadata)

	// A surrogate pair is one character; an escaped backslash before "ud800" is text.
	req, err = decodeAppendRequest(strings.NewReader(`{"events": [{"type": "a.B", "data": {},
		"metadata": {"emoji": "\ud83d\ude00", "path": "C:\\ud800", "tab": "\t\u00e9"}}]}`))
	require.NoError(t, err)
	require.Equal(t, map[string]string{"emoji": "\U0001F600", "path": `C:\ud800`, "tab": "\té"}, req.Events[0].Metadata)

	for in, want := range map[string]pgjet.ExpectedVersion{
		``: pgjet.Any, `"expected_version": null,`: pgjet.Any, `"expected_version": "any",`: pgjet.Any,
		`"expected_version": "no_stream",`: pgjet.NoStream, `"expected_version": "exists",`: pgjet.StreamExists,
		`"expected_version": 0,`: pgjet.Exact(0), `"expected_version": "12",`: pgjet.Exact(12),
	} {
		req, err := decodeAppendRequest(strings.NewReader(`{` + in + `"events": [{"type": "a.B", "data": {}}]}`))
		require.NoError(t, err, in)
		require.Equal(t, want, req.Expected, in)
	}
}

func TestDecodeAppendRequestErrors(t *testing.T) {
	t.Parallel()
	ev := `{"type": "a.B", "data": {}}`
	for _, tc := range []struct {
		name, body, code, path string
	}{
		{"empty", ``, codeMalformedJSON, ""},
		{"syntax", `{"events": [`, codeMalformedJSON, ""},
		{"trailing value", `{"events": [` + ev + `]} {}`, codeMalformedJSON, ""},
		{"trailing garbage", `{"events": [` + ev + `]}]`, codeMalformedJSON, ""},
		{"invalid utf-8", "{\"events\": [{\"type\": \"a\xff\", \"data\": {}}]}", codeMalformedJSON, ""},
		{"not an object", `[]`, codeInvalidRequest, ""},
		{"unknown field", `{"events": [` + ev + `], "expected": 1}`, codeUnknownField, "expected"},
		{"unknown event field", `{"events": [{"type": "a.B", "data": {}, "datum": 1}]}`, codeUnknownField, "events[0].datum"},
		{"repeated key", `{"events": [` + ev + `], "events": [` + ev + `]}`, codeInvalidRequest, "events"},
		{"repeated event key", `{"events": [{"type": "a.B", "type": "a.C", "data": {}}]}`, codeInvalidRequest, "events[0].type"},
		{"no events", `{"expected_version": "any"}`, codeInvalidRequest, "events"},
		{"empty events", `{"events": []}`, codeInvalidRequest, "events"},
		{"events not an array", `{"events": {}}`, codeInvalidRequest, "events"},
		{"event not an object", `{"events": [` + ev + `, 7]}`, codeInvalidRequest, "events[1]"},
		{"no type", `{"events": [{"data": {}}]}`, codeInvalidRequest, "events[0].type"},
		{"empty type", `{"events": [{"type": "", "data": {}}]}`, codeInvalidRequest, "events[0].type"},
		{"type not a string", `{"events": [{"type": 1, "data": {}}]}`, codeInvalidRequest, "events[0].type"},
		{"no data", `{"events": [{"type": "a.B"}]}`, codeInvalidRequest, "events[0].data"},
		{"bad id", `{"events": [{"id": "nope", "type": "a.B", "data": {}}]}`, codeInvalidRequest, "events[0].id"},
		{"braced id", `{"events": [{"id": "{0190f7a2-1c2b-7d3e-8f40-123456789abc}", "type": "a.B", "data": {}}]}`, codeInvalidRequest, "events[0].id"},
		{"nil id", `{"events": [{"id": "00000000-0000-0000-0000-000000000000", "type": "a.B", "data": {}}]}`, codeInvalidRequest, "events[0].id"},
		{"metadata value not a string", `{"events": [{"type": "a.B", "data": {}, "metadata": {"n": 1}}]}`, codeInvalidRequest, "events[0].metadata.n"},
		{"metadata odd key", `{"events": [{"type": "a.B", "data": {}, "metadata": {"a b": true}}]}`, codeInvalidRequest, `events[0].metadata["a b"]`},
		{"metadata lone high surrogate", `{"events": [{"type": "a.B", "data": {}, "metadata": {"k": "x\ud800"}}]}`, codeInvalidRequest, "events[0].metadata"},
		{"metadata lone low surrogate in a key", `{"events": [{"type": "a.B", "data": {}, "metadata": {"\udc00": "v"}}]}`, codeInvalidRequest, "events[0].metadata"},
		{"metadata high surrogate before another escape", `{"events": [{"type": "a.B", "data": {}, "metadata": {"k": "\ud83d\n"}}]}`, codeInvalidRequest, "events[0].metadata"},
		{"stream not a string", `{"stream": 1, "events": [` + ev + `]}`, codeInvalidRequest, "stream"},
		{"bad expected version", `{"expected_version": "sometimes", "events": [` + ev + `]}`, codeInvalidExpectedVersion, "expected_version"},
		{"negative expected version", `{"expected_version": -3, "events": [` + ev + `]}`, codeInvalidExpectedVersion, "expected_version"},
		{"fractional expected version", `{"expected_version": 1.5, "events": [` + ev + `]}`, codeInvalidExpectedVersion, "expected_version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := decodeAppendRequest(strings.NewReader(tc.body))
			var re *requestError
			require.ErrorAs(t, err, &re)
			require.Equal(t, tc.code, re.Code, re.Message)
			require.Equal(t, tc.path, re.Path, re.Message)
			require.NotEmpty(t, re.Message)
		})
	}
}

// FuzzDecodeAppendRequest checks that the decoder never panics, that what it accepts is a
// well-formed request, and that it reads its own encoding of that request back unchanged.
func FuzzDecodeAppendRequest(f *testing.F) {
	for _, s := range []string{
		`{"events": [{"type": "a.B", "data": {}}]}`,
		`{"stream": "order-1", "expected_version": "no_stream", "events": [{"id": "0190f7a2-1c2b-7d3e-8f40-123456789abc", "type": "pgjet.demo.order.OrderPlaced", "data": {"items": [{"quantity": 1}]}, "metadata": {"k": "v"}}]}`,
		`{"expected_version": 7, "events": [{"type": "a.B", "data": null, "metadata": null, "id": null}, {"type": "x", "data": [1, "2", true]}]}`,
		`{"events": [{"type": "a.B", "data": {}}]} {}`,
		`{"events": [{"type": "a.B", "data": {}, "type": "c"}]}`,
		`{"expected_version": -1, "events": []}`,
		`[{"events": 1}]`,
		"{\"stream\": \"\\ud800\", \"events\": [{\"type\": \"\xff\", \"data\": 1e999}]}",
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeAppendRequest(strings.NewReader(string(body)))
		if err != nil {
			var re *requestError
			if !errors.As(err, &re) || re.Code == "" || re.Message == "" {
				t.Fatalf("error is not a complete *requestError: %#v", err)
			}
			return
		}
		requireWellFormed(t, req)
		again, err := decodeAppendRequest(strings.NewReader(string(encodeAppendRequest(t, req))))
		require.NoError(t, err)
		requireSameRequest(t, req, again)
	})
}

func requireWellFormed(t *testing.T, req appendRequest) {
	t.Helper()
	e := req.Expected
	require.True(t, e >= 0 || e == pgjet.Any || e == pgjet.NoStream || e == pgjet.StreamExists, "expected version %d", e)
	require.NotEmpty(t, req.Events)
	require.True(t, utf8.ValidString(req.Stream))
	for _, ev := range req.Events {
		require.NotEmpty(t, ev.Type)
		require.True(t, utf8.ValidString(ev.Type))
		require.True(t, json.Valid(ev.Data), "data %q", ev.Data)
		for k, v := range ev.Metadata {
			require.True(t, utf8.ValidString(k) && utf8.ValidString(v))
		}
	}
}

// encodeAppendRequest is the JSON a client would send for req.
func encodeAppendRequest(t *testing.T, req appendRequest) []byte {
	t.Helper()
	type event struct {
		ID       *uuid.UUID        `json:"id,omitempty"`
		Type     string            `json:"type"`
		Data     json.RawMessage   `json:"data"`
		Metadata map[string]string `json:"metadata,omitempty"`
	}
	body := struct {
		Stream   string                `json:"stream,omitempty"`
		Expected pgjet.ExpectedVersion `json:"expected_version"`
		Events   []event               `json:"events"`
	}{Stream: req.Stream, Expected: req.Expected}
	for _, e := range req.Events {
		ev := event{Type: e.Type, Data: e.Data, Metadata: e.Metadata}
		if e.ID != uuid.Nil {
			ev.ID = &e.ID
		}
		body.Events = append(body.Events, ev)
	}
	b, err := json.Marshal(body)
	require.NoError(t, err)
	return b
}

func requireSameRequest(t *testing.T, want, got appendRequest) {
	t.Helper()
	require.Equal(t, want.Stream, got.Stream)
	require.Equal(t, want.Expected, got.Expected)
	require.Len(t, got.Events, len(want.Events))
	for i := range want.Events {
		w, g := want.Events[i], got.Events[i]
		require.Equal(t, w.ID, g.ID)
		require.Equal(t, w.Type, g.Type)
		require.Equal(t, jsonValue(t, w.Data), jsonValue(t, g.Data))
		if len(w.Metadata) == 0 {
			require.Empty(t, g.Metadata)
		} else {
			require.Equal(t, w.Metadata, g.Metadata)
		}
	}
}

// jsonValue decodes raw for comparison, keeping numbers as written.
func jsonValue(t *testing.T, raw json.RawMessage) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	var v any
	require.NoError(t, dec.Decode(&v))
	return v
}
