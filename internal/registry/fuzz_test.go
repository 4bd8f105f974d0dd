package registry_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/avro"
	"github.com/pgjet/pgjet/internal/registry"
)

// FuzzRegisterBody posts arbitrary bodies to POST /subjects/{s}/versions on a real
// registry. The handler must never fail with 500 (a panic would show as one), a rejected
// body must leave the registry unchanged, and an accepted one must have held a valid
// Avro record schema, which is then what the registry serves for the returned id.
func FuzzRegisterBody(f *testing.F) {
	for _, seed := range []string{
		`{"schema": "{\"type\":\"record\",\"name\":\"A\",\"fields\":[{\"name\":\"a\",\"type\":\"int\"}]}"}`,
		`{"schema": "{\"type\":\"record\",\"name\":\"A\",\"fields\":[]}", "schemaType": "AVRO", "references": []}`,
		`{"schema": "{\"type\":\"record\",\"name\":\"B\",\"fields\":[{\"name\":\"b\",\"type\":[\"null\",\"string\"],\"default\":null}]}", "schemaType": null}`,
		`{"schema": "{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"X\"]}"}`,
		`{"schema": "{\"type\":\"record\",\"name\":\"A\",\"fields\":[]}", "schemaType": "JSON"}`,
		`{"schema": "{\"type\":\"record\",\"name\":\"A\",\"fields\":[]}", "references": [{"name":"x","subject":"y","version":1}]}`,
		`{"schema": "{\"type\":\"record\",\"name\":\"A\",\"fields\":[]}"} trailing`,
		`{"schema": 1}`, `{"schema": null}`, `{"SCHEMA": "x"}`, `{}`, `[]`, `null`, ``, `{`, `"\ud800"`,
		`{"schema": "{\"type\":\"record\",\"name\":\"A\",\"fields\":[{\"name\":\"a\",\"type\":{\"type\":\"fixed\",\"name\":\"F\",\"size\":-1}}]}"}`,
	} {
		f.Add(seed)
	}
	ctx := context.Background()
	pool := newPool(f)
	reg := newRegistry(f, pool)
	require.NoError(f, reg.SetCompatibility(ctx, "fuzz", registry.None))
	handler := registry.NewHandler(reg, nil)

	counts := func(t *testing.T) (schemas, versions int) {
		require.NoError(t, pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM pgjet.schemas), (SELECT count(*) FROM pgjet.subject_versions)`).
			Scan(&schemas, &versions))
		return schemas, versions
	}

	f.Fuzz(func(t *testing.T, body string) {
		schemasBefore, versionsBefore := counts(t)
		req := httptest.NewRequest(http.MethodPost, "/subjects/fuzz/versions", strings.NewReader(body))
		req.Header.Set("Content-Type", registry.ContentType)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		require.Less(t, rec.Code, 500, rec.Body.String())
		require.Equal(t, registry.ContentType, rec.Header().Get("Content-Type"))

		if rec.Code != http.StatusOK {
			var e struct {
				Code    int    `json:"error_code"`
				Message string `json:"message"`
			}
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &e), rec.Body.String())
			require.NotZero(t, e.Code)
			require.NotEmpty(t, e.Message)
			schemasAfter, versionsAfter := counts(t)
			require.Equal(t, schemasBefore, schemasAfter, "a rejected body created a schema")
			require.Equal(t, versionsBefore, versionsAfter, "a rejected body created a version")
			return
		}

		// Accepted: the body was an object holding a valid record schema, each member once,
		// with no import id, and a schema text that is the one sent: U+FFFD in it came as
		// such, not from a lone surrogate escape Go's decoder replaced.
		var sent map[string]any
		require.NoError(t, json.Unmarshal([]byte(body), &sent))
		require.Equal(t, len(sent), topLevelKeys(t, body), "accepted a member given twice: %q", body)
		text, ok := sent["schema"].(string)
		require.True(t, ok, "accepted a body without a schema string: %q", body)
		if strings.Contains(text, "\uFFFD") {
			require.True(t, strings.Contains(body, "\uFFFD") || strings.Contains(strings.ToLower(body), `\ufffd`),
				"accepted a body whose schema gained U+FFFD: %q", body)
		}
		if id, ok := sent["id"].(float64); ok {
			require.Less(t, id, 0.0, "accepted an import id: %q", body)
		}
		parsed, err := avro.Parse(text)
		require.NoError(t, err, "accepted an invalid schema")
		var got struct{ ID int }
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
		stored, err := reg.SchemaByID(ctx, got.ID)
		require.NoError(t, err)
		require.Equal(t, parsed.Canonical(), stored.Canonical())
	})
}

// topLevelKeys counts the members of the JSON object body, repeated ones included.
func topLevelKeys(t *testing.T, body string) int {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(body))
	_, err := dec.Token()
	require.NoError(t, err)
	n := 0
	for ; dec.More(); n++ {
		_, err := dec.Token()
		require.NoError(t, err)
		var v json.RawMessage
		require.NoError(t, dec.Decode(&v))
	}
	return n
}

// FuzzConfigBody puts arbitrary bodies to PUT /config/{s} on a real registry. The handler
// never fails with 500; a rejected body leaves the subject's level as it was; an accepted
// one was an object naming a level once, and that level (in any case) is what is set and
// what the reply echoes. Seeds are in testdata/fuzz/FuzzConfigBody.
func FuzzConfigBody(f *testing.F) {
	ctx := context.Background()
	reg := newRegistry(f, newPool(f))
	handler := registry.NewHandler(reg, nil)

	f.Fuzz(func(t *testing.T, body string) {
		before, hadLevel, err := reg.SubjectCompatibility(ctx, "fuzz")
		require.NoError(t, err)
		req := httptest.NewRequest(http.MethodPut, "/config/fuzz", strings.NewReader(body))
		req.Header.Set("Content-Type", registry.ContentType)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		require.Less(t, rec.Code, 500, rec.Body.String())
		require.Equal(t, registry.ContentType, rec.Header().Get("Content-Type"))
		after, hasLevel, err := reg.SubjectCompatibility(ctx, "fuzz")
		require.NoError(t, err)

		if rec.Code != http.StatusOK {
			var e struct {
				Code    int    `json:"error_code"`
				Message string `json:"message"`
			}
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &e), rec.Body.String())
			require.NotZero(t, e.Code)
			require.NotEmpty(t, e.Message)
			require.Equal(t, hadLevel, hasLevel, "a rejected body changed the subject's level")
			require.Equal(t, before, after, "a rejected body changed the subject's level")
			return
		}
		var sent map[string]any
		require.NoError(t, json.Unmarshal([]byte(body), &sent))
		require.Equal(t, len(sent), topLevelKeys(t, body), "accepted a member given twice: %q", body)
		level, ok := sent["compatibility"].(string)
		require.True(t, ok, "accepted a body without a level: %q", body)
		require.True(t, hasLevel)
		require.Equal(t, strings.ToUpper(level), string(after), "%q", body)
		var echo map[string]string
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &echo))
		require.Equal(t, map[string]string{"compatibility": level}, echo)
	})
}
