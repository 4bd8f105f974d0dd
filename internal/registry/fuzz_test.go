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

		// Accepted: the body was an object holding a valid record schema.
		var sent map[string]any
		require.NoError(t, json.Unmarshal([]byte(body), &sent))
		text, ok := sent["schema"].(string)
		require.True(t, ok, "accepted a body without a schema string: %q", body)
		parsed, err := avro.Parse(text)
		require.NoError(t, err, "accepted an invalid schema")
		var got struct{ ID int }
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
		stored, err := reg.SchemaByID(ctx, got.ID)
		require.NoError(t, err)
		require.Equal(t, parsed.Canonical(), stored.Canonical())
	})
}
