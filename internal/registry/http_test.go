package registry_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/pgjet/pgjet/internal/registry"
)

// apiClient calls the HTTP API through a real listener.
type apiClient struct {
	t   *testing.T
	url string
}

func newAPI(t *testing.T, reg *registry.Registry) *apiClient {
	t.Helper()
	srv := httptest.NewServer(registry.NewHandler(reg, zaptest.NewLogger(t)))
	t.Cleanup(srv.Close)
	return &apiClient{t: t, url: srv.URL}
}

// reply is an HTTP reply with its body.
type reply struct {
	status int
	header http.Header
	body   string
}

// json decodes the body into a fresh value of the given shape.
func (r reply) json(t *testing.T, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal([]byte(r.body), v), r.body)
}

// requireError checks a Confluent-shaped error reply.
func (r reply) requireError(t *testing.T, status, code int, messageContains ...string) {
	t.Helper()
	require.Equal(t, status, r.status, r.body)
	require.Equal(t, registry.ContentType, r.header.Get("Content-Type"))
	var e struct {
		Code    *int    `json:"error_code"`
		Message *string `json:"message"`
	}
	r.json(t, &e)
	require.NotNil(t, e.Code, r.body)
	require.NotNil(t, e.Message, r.body)
	require.Equal(t, code, *e.Code, r.body)
	for _, s := range messageContains {
		require.Contains(t, *e.Message, s)
	}
}

func (c *apiClient) do(method, path, contentType, body string) reply {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, c.url+path, rd)
	require.NoError(c.t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	return reply{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (c *apiClient) get(path string) reply { return c.do(http.MethodGet, path, "", "") }

func (c *apiClient) send(method, path string, body any) reply {
	c.t.Helper()
	b, err := json.Marshal(body)
	require.NoError(c.t, err)
	return c.do(method, path, registry.ContentType, string(b))
}

func schemaBody(text string) map[string]any { return map[string]any{"schema": text} }

func TestHTTPReads(t *testing.T) {
	t.Parallel()
	c := newAPI(t, newRegistry(t, newPool(t)))
	text := record(fID, fNoteDefault)

	r := c.get("/")
	require.Equal(t, http.StatusOK, r.status)
	require.JSONEq(t, `{}`, r.body)
	require.JSONEq(t, `[]`, c.get("/subjects").body)
	require.JSONEq(t, `["AVRO"]`, c.get("/schemas/types").body)

	r = c.send(http.MethodPost, "/subjects/t.Ev/versions", schemaBody(text))
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Equal(t, registry.ContentType, r.header.Get("Content-Type"))
	require.JSONEq(t, `{"id":1}`, r.body)

	// Registering again, differently formatted, returns the same id.
	r = c.send(http.MethodPost, "/subjects/t.Ev/versions", map[string]any{"schema": " " + text, "schemaType": "AVRO", "references": []any{}})
	require.JSONEq(t, `{"id":1}`, r.body)

	require.JSONEq(t, `["t.Ev"]`, c.get("/subjects").body)
	require.JSONEq(t, `["t.Ev"]`, c.get("/subjects/").body, "a trailing slash is accepted")
	require.JSONEq(t, `[1]`, c.get("/subjects/t.Ev/versions").body)

	want, err := json.Marshal(map[string]any{"subject": "t.Ev", "version": 1, "id": 1, "schema": text})
	require.NoError(t, err)
	for _, v := range []string{"1", "latest", "LATEST", "-1"} {
		r = c.get("/subjects/t.Ev/versions/" + v)
		require.Equal(t, http.StatusOK, r.status, r.body)
		require.JSONEq(t, string(want), r.body, v)
	}
	r = c.get("/subjects/t.Ev/versions/latest/schema")
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, text, r.body)

	r = c.get("/schemas/ids/1")
	require.Equal(t, http.StatusOK, r.status)
	var byID map[string]any
	r.json(t, &byID)
	require.Equal(t, map[string]any{"schema": text}, byID, "schemaType is left out for AVRO")
	require.Equal(t, text, c.get("/schemas/ids/1/schema").body)
	require.JSONEq(t, `[{"subject":"t.Ev","version":1}]`, c.get("/schemas/ids/1/versions").body)
	require.JSONEq(t, `["t.Ev"]`, c.get("/schemas/ids/1/subjects").body)

	// POST /subjects/{s} looks a schema up.
	r = c.send(http.MethodPost, "/subjects/t.Ev", schemaBody(text))
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.JSONEq(t, string(want), r.body)

	// Subjects in paths are URL-decoded.
	r = c.send(http.MethodPost, "/subjects/odd%2Fsubject%20name/versions", schemaBody(text))
	require.JSONEq(t, `{"id":1}`, r.body)
	require.JSONEq(t, `["odd/subject name","t.Ev"]`, c.get("/subjects").body)
	require.JSONEq(t, `[1]`, c.get("/subjects/odd%2Fsubject%20name/versions").body)
}

func TestHTTPErrors(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	c := newAPI(t, newRegistry(t, pool))
	v1 := record(fID)
	require.Equal(t, http.StatusOK, c.send(http.MethodPost, "/subjects/s/versions", schemaBody(v1)).status)

	// 404
	c.get("/schemas/ids/999").requireError(t, 404, 40403, "Schema 999 not found")
	c.get("/schemas/ids/abc").requireError(t, 404, 40403)
	c.get("/schemas/ids/999/versions").requireError(t, 404, 40403)
	c.get("/schemas/ids/999/schema").requireError(t, 404, 40403)
	c.get("/subjects/nope/versions").requireError(t, 404, 40401, "Subject 'nope' not found.")
	c.get("/subjects/nope/versions/1").requireError(t, 404, 40401)
	c.get("/subjects/nope/versions/latest").requireError(t, 404, 40401)
	c.get("/subjects/s/versions/9").requireError(t, 404, 40402, "Version 9 not found.")
	c.send(http.MethodPost, "/subjects/nope", schemaBody(v1)).requireError(t, 404, 40401)
	c.send(http.MethodPost, "/subjects/s", schemaBody(record(fID, fNoteDefault))).requireError(t, 404, 40403)
	c.get("/config/s").requireError(t, 404, 40408, "does not have subject-level compatibility configured")
	c.get("/no/such/path").requireError(t, 404, 404)

	// 405
	r := c.do(http.MethodDelete, "/subjects/s/versions", "", "")
	r.requireError(t, 405, 405)
	require.Contains(t, r.header.Get("Allow"), "GET")

	// 422: versions
	for _, v := range []string{"0", "-2", "abc", "1.5", "99999999999"} {
		c.get("/subjects/s/versions/"+v).requireError(t, 422, 42202, "is not a valid version id")
	}

	// 422: schemas
	c.send(http.MethodPost, "/subjects/s/versions", schemaBody(`{"type":"record"`)).requireError(t, 422, 42201, "Invalid schema")
	c.send(http.MethodPost, "/subjects/s/versions", schemaBody(`"string"`)).requireError(t, 422, 42201, "record")
	c.send(http.MethodPost, "/subjects/s/versions", schemaBody("")).requireError(t, 422, 42201, "empty schema")
	c.send(http.MethodPost, "/subjects/s/versions", map[string]any{}).requireError(t, 422, 42201)
	c.send(http.MethodPost, "/subjects/s/versions", map[string]any{"schema": v1, "schemaType": "PROTOBUF"}).
		requireError(t, 422, 42201, "PROTOBUF", "AVRO")
	c.send(http.MethodPost, "/subjects/s/versions", map[string]any{
		"schema": v1, "references": []any{map[string]any{"name": "x", "subject": "y", "version": 1}},
	}).requireError(t, 422, 42201, "references")
	c.send(http.MethodPost, "/subjects/s", schemaBody("nope")).requireError(t, 422, 42201)
	deep := `{"type":"record","name":"t.Ev","fields":[{"name":"a","type":` +
		strings.Repeat(`{"type":"array","items":`, 10_000) + `"int"` + strings.Repeat(`}`, 10_000) + `}]}`
	c.send(http.MethodPost, "/compatibility/subjects/s/versions", schemaBody(deep)).requireError(t, 422, 42201, "nesting deeper than 128")
	c.send(http.MethodPost, "/subjects/s/versions", schemaBody(deep)).requireError(t, 422, 42201, "nesting deeper than 128")
	// hamba/avro would store this default as -1294967296.
	wrapped := `{"type":"record","name":"t.Ev","fields":[{"name":"n","type":"int","default":3000000000}]}`
	c.send(http.MethodPost, "/subjects/s/versions", schemaBody(wrapped)).requireError(t, 422, 42201, "out of range for a 32-bit int")
	// hamba/avro's parser panicked on this one.
	emptyUnion := `{"type":"record","name":"t.Ev","fields":[{"name":"n","type":[],"default":null}]}`
	c.send(http.MethodPost, "/subjects/s/versions", schemaBody(emptyUnion)).requireError(t, 422, 42201, "empty union")
	c.send(http.MethodPost, "/compatibility/subjects/s/versions", schemaBody(emptyUnion)).requireError(t, 422, 42201, "empty union")

	// 409: the message names the version that breaks and why.
	r = c.send(http.MethodPost, "/subjects/s/versions", schemaBody(record(fID, fNote)))
	r.requireError(t, 409, 409, `incompatible with an earlier schema for subject "s"`,
		"cannot read data written with version 1", "note", "BACKWARD")

	// 400, 413, 415, 422 for the body itself.
	post := func(contentType, body string) reply {
		return c.do(http.MethodPost, "/subjects/s/versions", contentType, body)
	}
	post(registry.ContentType, `{"schema": `).requireError(t, 400, 400)
	post(registry.ContentType, `not json`).requireError(t, 400, 400)
	post(registry.ContentType, `[]`).requireError(t, 400, 400)
	post(registry.ContentType, `"x"`).requireError(t, 400, 400)
	post(registry.ContentType, `{"schema": 5}`).requireError(t, 400, 400, "schema")
	post(registry.ContentType, `{"schema": {"type": "record"}}`).requireError(t, 400, 400)
	post(registry.ContentType, `{"schema": "x", "schemaType": 1}`).requireError(t, 400, 400)
	post(registry.ContentType, `{"schema": "x", "references": {}}`).requireError(t, 400, 400)
	post(registry.ContentType, `{"schema": "x"} {}`).requireError(t, 400, 400)
	post(registry.ContentType, ``).requireError(t, 422, 422)
	post(registry.ContentType, `null`).requireError(t, 422, 422)
	post("text/plain", `{"schema": "x"}`).requireError(t, 415, 415)
	post("application/x-www-form-urlencoded", `{"schema": "x"}`).requireError(t, 415, 415)
	big := `{"schema": "` + strings.Repeat(" ", registry.MaxBodyBytes) + `"}`
	post(registry.ContentType, big).requireError(t, 413, 413)

	// Every content type Confluent reads, and none, is read.
	for _, ct := range []string{"", registry.ContentType, "application/vnd.schemaregistry+json",
		"application/json", "application/json; charset=utf-8", "application/octet-stream"} {
		r := post(ct, `{"schema": `+mustJSON(t, v1)+`}`)
		require.Equal(t, http.StatusOK, r.status, "%q: %s", ct, r.body)
	}

	// 42203
	c.send(http.MethodPut, "/config", map[string]any{"compatibility": "SIDEWAYS"}).requireError(t, 422, 42203, "Invalid compatibility level")
	c.send(http.MethodPut, "/config/s", map[string]any{"compatibility": ""}).requireError(t, 422, 42203)
	c.send(http.MethodPut, "/config/s", map[string]any{}).requireError(t, 422, 42203)

	// 500: the store is gone.
	broken := newPool(t)
	broken.Close()
	down := newAPI(t, newRegistry(t, broken))
	down.get("/subjects").requireError(t, 500, 50001, "Error in the backend data store")
	down.send(http.MethodPost, "/subjects/s/versions", schemaBody(v1)).requireError(t, 500, 50001)
	down.get("/config").requireError(t, 500, 50001)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

func TestHTTPConfig(t *testing.T) {
	t.Parallel()
	c := newAPI(t, newRegistry(t, newPool(t)))

	require.JSONEq(t, `{"compatibilityLevel":"BACKWARD"}`, c.get("/config").body)
	r := c.send(http.MethodPut, "/config", map[string]any{"compatibility": "full"})
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.JSONEq(t, `{"compatibility":"full"}`, r.body, "the request is echoed")
	require.JSONEq(t, `{"compatibilityLevel":"FULL"}`, c.get("/config").body)

	c.get("/config/s").requireError(t, 404, 40408)
	require.JSONEq(t, `{"compatibilityLevel":"FULL"}`, c.get("/config/s?defaultToGlobal=true").body)
	r = c.send(http.MethodPut, "/config/s", map[string]any{"compatibility": "BACKWARD_TRANSITIVE"})
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.JSONEq(t, `{"compatibility":"BACKWARD_TRANSITIVE"}`, r.body)
	require.JSONEq(t, `{"compatibilityLevel":"BACKWARD_TRANSITIVE"}`, c.get("/config/s").body)
	require.JSONEq(t, `{"compatibilityLevel":"BACKWARD_TRANSITIVE"}`, c.get("/config/s?defaultToGlobal=true").body)
	require.JSONEq(t, `{"compatibilityLevel":"FULL"}`, c.get("/config").body)

	// A subject may end in an encoded slash: it is not a trailing slash to drop.
	for _, path := range []string{"/config/%2F", "/config/%2F/", "/config/a%2F"} {
		c.send(http.MethodPut, path, map[string]any{"compatibility": "NONE"})
		require.JSONEq(t, `{"compatibilityLevel":"FULL"}`, c.get("/config").body, path)
		c.get("/config/a").requireError(t, 404, 40408)
	}
	require.JSONEq(t, `{"compatibilityLevel":"NONE"}`, c.get("/config/a%2F").body)
	require.JSONEq(t, `{"compatibilityLevel":"NONE"}`, c.get("/config/a%2F/").body, "a real trailing slash is still dropped")
}

func TestHTTPCompatibility(t *testing.T) {
	t.Parallel()
	c := newAPI(t, newRegistry(t, newPool(t)))
	v1, v2, v3 := record(fID, fXIntDef), record(fID), record(fID, fXStrDef)
	require.Equal(t, http.StatusOK, c.send(http.MethodPut, "/config/s", map[string]any{"compatibility": "BACKWARD_TRANSITIVE"}).status)
	for _, text := range []string{v1, v2} {
		require.Equal(t, http.StatusOK, c.send(http.MethodPost, "/subjects/s/versions", schemaBody(text)).status)
	}
	check := func(path, text string) reply {
		return c.send(http.MethodPost, "/compatibility/subjects/"+path, schemaBody(text))
	}

	// Against one version, only that version counts, even under a transitive level.
	require.JSONEq(t, `{"is_compatible":true}`, check("s/versions/latest", v3).body)
	require.JSONEq(t, `{"is_compatible":true}`, check("s/versions/2", v3).body)
	require.JSONEq(t, `{"is_compatible":false}`, check("s/versions/1", v3).body)
	// Without a version, the check is registration's: every version, transitively.
	require.JSONEq(t, `{"is_compatible":false}`, check("s/versions", v3).body)
	require.JSONEq(t, `{"is_compatible":true}`, check("s/versions", record(fID, fNoteDefault)).body)

	var verbose struct {
		IsCompatible bool     `json:"is_compatible"`
		Messages     []string `json:"messages"`
	}
	check("s/versions?verbose=true", v3).json(t, &verbose)
	require.False(t, verbose.IsCompatible)
	require.Len(t, verbose.Messages, 1)
	require.Contains(t, verbose.Messages[0], "version 1")
	require.Contains(t, verbose.Messages[0], "BACKWARD_TRANSITIVE")
	check("s/versions/latest?verbose=true", `{"type":`).json(t, &verbose)
	require.False(t, verbose.IsCompatible)
	require.Len(t, verbose.Messages, 1)
	require.Contains(t, verbose.Messages[0], "Invalid schema")

	// Nothing to break in a subject without versions.
	require.JSONEq(t, `{"is_compatible":true}`, check("new/versions/latest", v3).body)
	require.JSONEq(t, `{"is_compatible":true}`, check("new/versions", v3).body)

	check("s/versions/3", v3).requireError(t, 404, 40402)
	check("new/versions/1", v3).requireError(t, 404, 40401)
	check("s/versions/zero", v3).requireError(t, 422, 42202)
	check("s/versions/latest", `{"type":`).requireError(t, 422, 42201)
	check("s/versions", `{"type":`).requireError(t, 422, 42201)
	c.do(http.MethodPost, "/compatibility/subjects/s/versions/latest", registry.ContentType, `{`).requireError(t, 400, 400)

	// Nothing was registered by checking.
	require.JSONEq(t, `[1,2]`, c.get("/subjects/s/versions").body)
}

// TestHTTPRegisterIDAndVersion: Confluent's register body may name an id (import only) and
// a version (which must be the one the registration gets). Values meaning "none" register
// as usual, a schema the subject already has returns its version whatever was asked, and
// the lookup and compatibility endpoints ignore both, as Confluent's do.
func TestHTTPRegisterIDAndVersion(t *testing.T) {
	t.Parallel()
	c := newAPI(t, newRegistry(t, newPool(t)))
	v1, v2, v3 := record(fID), record(fID, fNoteDefault), record(fID, fNoteDefault, fXIntDef)
	register := func(text string, members map[string]any) reply {
		body := map[string]any{"schema": text}
		for k, v := range members {
			body[k] = v
		}
		return c.send(http.MethodPost, "/subjects/s/versions", body)
	}

	for _, members := range []map[string]any{{"id": -1}, {"id": nil}, {"version": 0}, {"version": -1}, {"version": nil}, {"version": 1, "id": -1}} {
		r := register(v1, members)
		require.Equal(t, http.StatusOK, r.status, "%v: %s", members, r.body)
		require.JSONEq(t, `{"id":1}`, r.body)
	}
	require.JSONEq(t, `[1]`, c.get("/subjects/s/versions").body)
	require.JSONEq(t, `{"id":1}`, register(v1, map[string]any{"version": 9}).body, "an existing schema keeps its version")

	register(v2, map[string]any{"version": 3}).requireError(t, 422, 42201, "version 3", "next version")
	register(v2, map[string]any{"version": 1}).requireError(t, 422, 42201)
	register(v2, map[string]any{"id": 2}).requireError(t, 422, 42205, "id")
	require.JSONEq(t, `[1]`, c.get("/subjects/s/versions").body, "nothing was registered")

	r := register(v2, map[string]any{"version": 2})
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.JSONEq(t, `{"id":2}`, r.body)
	require.JSONEq(t, `{"subject":"s","version":2,"id":2,"schema":`+mustJSON(t, v2)+`}`, c.get("/subjects/s/versions/latest").body)

	withImport := map[string]any{"schema": v3, "id": 7, "version": 9}
	r = c.send(http.MethodPost, "/compatibility/subjects/s/versions/latest", withImport)
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.JSONEq(t, `{"is_compatible":true}`, r.body)
	withImport["schema"] = v2
	r = c.send(http.MethodPost, "/subjects/s", withImport)
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.JSONEq(t, `{"subject":"s","version":2,"id":2,"schema":`+mustJSON(t, v2)+`}`, r.body)
}
