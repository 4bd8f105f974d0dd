package registry

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap"
)

// ContentType is the media type of every reply of the HTTP API, Confluent's v1 type.
const ContentType = "application/vnd.schemaregistry.v1+json"

// NewHandler returns the registry's HTTP API: the subset of the Confluent Schema Registry
// REST API that serializers and registry clients call, with Confluent's paths, bodies,
// status codes and error codes, so existing clients in any language work unchanged:
//
//	GET  /schemas/ids/{id}                  {"schema": "..."}
//	GET  /schemas/ids/{id}/schema           the schema itself
//	GET  /schemas/ids/{id}/subjects         ["subject", ...]
//	GET  /schemas/ids/{id}/versions         [{"subject": "...", "version": 1}, ...]
//	GET  /schemas/types                     ["AVRO"]
//	GET  /subjects                          ["subject", ...]
//	GET  /subjects/{s}/versions             [1, 2, ...]
//	GET  /subjects/{s}/versions/{v|latest}  {"subject", "version", "id", "schema"}
//	GET  /subjects/{s}/versions/{v}/schema  the schema itself
//	POST /subjects/{s}/versions             register: {"id": N}
//	POST /subjects/{s}                      look up: {"subject", "version", "id", "schema"}
//	GET  /config, GET /config/{s}           {"compatibilityLevel": "..."}
//	PUT  /config, PUT /config/{s}           {"compatibility": "..."}
//	POST /compatibility/subjects/{s}/versions[/{v|latest}]  {"is_compatible": bool}
//
// Errors are {"error_code": N, "message": "..."}; docs/registry.md lists the codes.
// Only Avro schemas without references are accepted. Request bodies are limited to
// MaxBodyBytes. Failures of the store are logged on log (nil for none) and answered 500
// with code 50001, without internal detail.
func NewHandler(reg *Registry, log *zap.Logger) http.Handler {
	if log == nil {
		log = zap.NewNop()
	}
	a := &api{reg: reg, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.root)
	mux.HandleFunc("GET /schemas/types", a.schemaTypes)
	mux.HandleFunc("GET /schemas/ids/{id}", a.schemaByID)
	mux.HandleFunc("GET /schemas/ids/{id}/schema", a.rawSchemaByID)
	mux.HandleFunc("GET /schemas/ids/{id}/subjects", a.subjectsByID)
	mux.HandleFunc("GET /schemas/ids/{id}/versions", a.versionsByID)
	mux.HandleFunc("GET /subjects", a.subjects)
	mux.HandleFunc("POST /subjects/{subject}", withSubject(a.lookup))
	mux.HandleFunc("GET /subjects/{subject}/versions", withSubject(a.versions))
	mux.HandleFunc("POST /subjects/{subject}/versions", withSubject(a.register))
	mux.HandleFunc("GET /subjects/{subject}/versions/{version}", withSubject(a.version))
	mux.HandleFunc("GET /subjects/{subject}/versions/{version}/schema", withSubject(a.rawVersion))
	mux.HandleFunc("GET /config", a.globalConfig)
	mux.HandleFunc("PUT /config", a.setGlobalConfig)
	mux.HandleFunc("GET /config/{subject}", withSubject(a.subjectConfig))
	mux.HandleFunc("PUT /config/{subject}", withSubject(a.setSubjectConfig))
	mux.HandleFunc("POST /compatibility/subjects/{subject}/versions", withSubject(a.compatibleWithAll))
	mux.HandleFunc("POST /compatibility/subjects/{subject}/versions/{version}", withSubject(a.compatibleWith))
	return &router{mux: mux, log: log}
}

// MaxSubjectLength is the longest subject the HTTP and NATS APIs accept, in bytes: room
// for any Avro full name or Kafka topic subject, and well inside what Postgres can index.
const MaxSubjectLength = 1024

// codeInvalidSubject is Confluent's error code for a subject it refuses (HTTP 422).
const codeInvalidSubject = 42208

// checkSubject refuses a subject no schema can be registered under: longer than
// MaxSubjectLength, not UTF-8, or holding control characters (Confluent refuses those
// too; Postgres cannot store NUL).
func checkSubject(subject string) *apiError {
	why := ""
	switch {
	case len(subject) > MaxSubjectLength:
		why = fmt.Sprintf("it is %d bytes long, the limit is %d", len(subject), MaxSubjectLength)
	case !utf8.ValidString(subject):
		why = "it is not valid UTF-8"
	case strings.IndexFunc(subject, unicode.IsControl) >= 0:
		why = "it holds control characters"
	default:
		return nil
	}
	shown := subject
	if len(shown) > 64 {
		shown = shown[:64] + "..."
	}
	return newAPIError(http.StatusUnprocessableEntity, codeInvalidSubject, "The specified subject %q is not valid: %s", shown, why)
}

// withSubject answers 422 with code 42208 for a request whose {subject} checkSubject
// refuses, before h reads anything.
func withSubject(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ae := checkSubject(r.PathValue("subject")); ae != nil {
			writeError(w, ae)
			return
		}
		h(w, r)
	}
}

// errBodyNotUTF8 fails the read of a request body that is not valid UTF-8.
var errBodyNotUTF8 = errors.New("request body is not valid UTF-8")

// utf8Body checks a request body as it is read: JSON text must be UTF-8, and Go's JSON
// decoder would otherwise turn bad bytes into U+FFFD silently, storing a schema other
// than the one sent.
type utf8Body struct {
	io.ReadCloser
	tail []byte // an incomplete character at the end of the bytes read so far
}

func (b *utf8Body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	chunk := append(b.tail, p[:n]...)
	cut := len(chunk)
	for i := len(chunk) - 1; i >= 0 && i >= len(chunk)-utf8.UTFMax; i-- {
		if utf8.RuneStart(chunk[i]) {
			if !utf8.FullRune(chunk[i:]) {
				cut = i // keep it back until the rest arrives
			}
			break
		}
	}
	if !utf8.Valid(chunk[:cut]) {
		return n, errBodyNotUTF8
	}
	b.tail = append(b.tail[:0], chunk[cut:]...)
	if err == io.EOF && len(b.tail) > 0 {
		return n, errBodyNotUTF8
	}
	return n, err
}

// router serves the mux, accepting a trailing slash as Confluent's server does, turning
// the mux's own 404 and 405 replies into JSON errors, and answering a panic with 500.
type router struct {
	mux *http.ServeMux
	log *zap.Logger
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			rt.log.Error("registry: handler panicked", zap.String("method", r.Method),
				zap.String("path", r.URL.Path), zap.Any("panic", p), zap.Stack("stack"))
			writeError(w, newAPIError(http.StatusInternalServerError, codeStore, backendErrorMessage))
		}
	}()
	// A trailing slash is dropped, on the escaped path: a subject may end in an encoded one
	// ("a%2F" is subject "a/"; "/config/%2F" must not become "/config").
	if ep := r.URL.EscapedPath(); len(ep) > 1 && strings.HasSuffix(ep, "/") {
		trimmed := cmp.Or(strings.TrimRight(ep, "/"), "/")
		if p, err := url.PathUnescape(trimmed); err == nil {
			u := *r.URL
			u.Path, u.RawPath = p, trimmed
			r2 := *r
			r2.URL = &u
			r = &r2
		}
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &utf8Body{ReadCloser: r.Body}
	}
	if _, pattern := rt.mux.Handler(r); pattern == "" {
		w = &fallbackWriter{ResponseWriter: w}
	}
	rt.mux.ServeHTTP(w, r)
}

// fallbackWriter replaces the plain-text body of the mux's 404 and 405 replies with a
// JSON error; other replies (the mux's redirects) pass through.
type fallbackWriter struct {
	http.ResponseWriter
	swallow bool
}

func (w *fallbackWriter) WriteHeader(status int) {
	if status == http.StatusNotFound || status == http.StatusMethodNotAllowed {
		w.swallow = true
		writeError(w.ResponseWriter, httpError(status, "HTTP "+strconv.Itoa(status)+" "+http.StatusText(status)))
		return
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *fallbackWriter) Write(b []byte) (int, error) {
	if w.swallow {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// api holds the handlers.
type api struct {
	reg *Registry
	log *zap.Logger
}

// schemaResponse is Confluent's Schema entity; schemaType is left out, meaning AVRO.
type schemaResponse struct {
	Subject string `json:"subject"`
	Version int    `json:"version"`
	ID      int    `json:"id"`
	Schema  string `json:"schema"`
}

type subjectVersion struct {
	Subject string `json:"subject"`
	Version int    `json:"version"`
}

type compatibilityResponse struct {
	IsCompatible bool     `json:"is_compatible"`
	Messages     []string `json:"messages,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", ContentType)
	w.Header().Del("Content-Length")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client has gone if this fails
}

func writeError(w http.ResponseWriter, ae *apiError) {
	w.Header().Del("X-Content-Type-Options")
	writeJSON(w, ae.status, ae)
}

func writeRaw(w http.ResponseWriter, text string) {
	w.Header().Set("Content-Type", ContentType)
	_, _ = w.Write([]byte(text))
}

// fail answers err, logging it when it is the server's fault.
func (a *api) fail(w http.ResponseWriter, r *http.Request, err error, t target) {
	ae, ok := toAPIError(err, t)
	if !ok {
		level := zap.ErrorLevel
		if errors.Is(err, context.Canceled) {
			level = zap.DebugLevel // the client went away
		}
		a.log.Log(level, "registry: request failed", zap.String("method", r.Method),
			zap.String("path", r.URL.Path), zap.String("subject", t.subject), zap.Error(err))
	}
	writeError(w, ae)
}

// parseVersion reads a version path segment as Confluent does: "latest" (any case) or -1
// for the newest, else a number from 1 to 2^31-1.
func parseVersion(raw string) (int, *apiError) {
	s := strings.TrimSpace(raw)
	if strings.EqualFold(s, "latest") {
		return LatestVersion, nil
	}
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil || (n <= 0 && n != LatestVersion) {
		return 0, invalidVersion(raw)
	}
	return int(n), nil
}

// parseID reads a schema id path segment; anything but a positive 32-bit number is an id
// no schema has.
func parseID(raw string) (int, *apiError) {
	n, err := strconv.ParseInt(raw, 10, 32)
	if err != nil || n <= 0 {
		return 0, newAPIError(http.StatusNotFound, codeSchemaNotFound, "Schema %s not found", raw)
	}
	return int(n), nil
}

// queryFlag reads a boolean query parameter as JAX-RS does: "true" in any case is true.
func queryFlag(r *http.Request, name string) bool {
	return strings.EqualFold(r.URL.Query().Get(name), "true")
}

func (a *api) root(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, struct{}{})
}

func (a *api) schemaTypes(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, []string{"AVRO"})
}

func (a *api) schemaText(w http.ResponseWriter, r *http.Request) (string, bool) {
	id, ae := parseID(r.PathValue("id"))
	if ae != nil {
		writeError(w, ae)
		return "", false
	}
	text, err := a.reg.SchemaText(r.Context(), id)
	if err != nil {
		a.fail(w, r, err, target{id: id})
		return "", false
	}
	return text, true
}

func (a *api) schemaByID(w http.ResponseWriter, r *http.Request) {
	if text, ok := a.schemaText(w, r); ok {
		writeJSON(w, http.StatusOK, map[string]string{"schema": text})
	}
}

func (a *api) rawSchemaByID(w http.ResponseWriter, r *http.Request) {
	if text, ok := a.schemaText(w, r); ok {
		writeRaw(w, text)
	}
}

func (a *api) usesOfID(w http.ResponseWriter, r *http.Request) ([]Version, bool) {
	id, ae := parseID(r.PathValue("id"))
	if ae != nil {
		writeError(w, ae)
		return nil, false
	}
	vs, err := a.reg.VersionsByID(r.Context(), id)
	if err != nil {
		a.fail(w, r, err, target{id: id})
		return nil, false
	}
	return vs, true
}

func (a *api) subjectsByID(w http.ResponseWriter, r *http.Request) {
	vs, ok := a.usesOfID(w, r)
	if !ok {
		return
	}
	subjects := []string{}
	for _, v := range vs {
		if len(subjects) == 0 || subjects[len(subjects)-1] != v.Subject {
			subjects = append(subjects, v.Subject)
		}
	}
	writeJSON(w, http.StatusOK, subjects)
}

func (a *api) versionsByID(w http.ResponseWriter, r *http.Request) {
	vs, ok := a.usesOfID(w, r)
	if !ok {
		return
	}
	out := make([]subjectVersion, len(vs))
	for i, v := range vs {
		out[i] = subjectVersion{Subject: v.Subject, Version: v.Version}
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *api) subjects(w http.ResponseWriter, r *http.Request) {
	subjects, err := a.reg.Subjects(r.Context())
	if err != nil {
		a.fail(w, r, err, target{})
		return
	}
	if subjects == nil {
		subjects = []string{}
	}
	writeJSON(w, http.StatusOK, subjects)
}

func (a *api) versions(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	vs, err := a.reg.Versions(r.Context(), subject)
	if err != nil {
		a.fail(w, r, err, target{subject: subject})
		return
	}
	writeJSON(w, http.StatusOK, vs)
}

func (a *api) register(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	req, ae := readSchemaRequest(w, r)
	if ae != nil {
		writeError(w, ae)
		return
	}
	if req.ID >= 0 {
		// Confluent allows this in its IMPORT mode only. Registering under another id
		// than the one asked for would break every message that carries that id.
		writeError(w, newAPIError(http.StatusUnprocessableEntity, codeNotPermitted,
			"Subject '%s' is not in import mode: this registry assigns schema ids itself and cannot register a schema under id %d; leave \"id\" out", subject, req.ID))
		return
	}
	v, err := a.reg.registerAs(r.Context(), subject, req.Schema, req.Version)
	if err != nil {
		a.fail(w, r, err, target{subject: subject})
		return
	}
	a.log.Info("registry: schema registered", zap.String("subject", subject),
		zap.Int("version", v.Version), zap.Int("schema_id", v.ID))
	writeJSON(w, http.StatusOK, map[string]int{"id": v.ID})
}

func (a *api) lookup(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	req, ae := readSchemaRequest(w, r)
	if ae != nil {
		writeError(w, ae)
		return
	}
	v, err := a.reg.Lookup(r.Context(), subject, req.Schema)
	if err != nil {
		a.fail(w, r, err, target{subject: subject})
		return
	}
	a.writeVersion(w, r, v)
}

// subjectVersion reads the version the path names.
func (a *api) subjectVersion(w http.ResponseWriter, r *http.Request) (Version, bool) {
	subject := r.PathValue("subject")
	n, ae := parseVersion(r.PathValue("version"))
	if ae != nil {
		writeError(w, ae)
		return Version{}, false
	}
	var (
		v   Version
		err error
	)
	if n == LatestVersion {
		v, err = a.reg.Latest(r.Context(), subject)
	} else {
		v, err = a.reg.Version(r.Context(), subject, n)
	}
	if err != nil {
		a.fail(w, r, err, target{subject: subject, version: n})
		return Version{}, false
	}
	return v, true
}

func (a *api) version(w http.ResponseWriter, r *http.Request) {
	if v, ok := a.subjectVersion(w, r); ok {
		a.writeVersion(w, r, v)
	}
}

func (a *api) rawVersion(w http.ResponseWriter, r *http.Request) {
	v, ok := a.subjectVersion(w, r)
	if !ok {
		return
	}
	text, err := a.reg.SchemaText(r.Context(), v.ID)
	if err != nil {
		a.fail(w, r, err, target{subject: v.Subject, version: v.Version})
		return
	}
	writeRaw(w, text)
}

func (a *api) writeVersion(w http.ResponseWriter, r *http.Request, v Version) {
	text, err := a.reg.SchemaText(r.Context(), v.ID)
	if err != nil {
		a.fail(w, r, err, target{subject: v.Subject, version: v.Version})
		return
	}
	writeJSON(w, http.StatusOK, schemaResponse{Subject: v.Subject, Version: v.Version, ID: v.ID, Schema: text})
}

func (a *api) writeLevel(w http.ResponseWriter, level Compatibility) {
	writeJSON(w, http.StatusOK, map[string]Compatibility{"compatibilityLevel": level})
}

func (a *api) globalConfig(w http.ResponseWriter, r *http.Request) {
	level, err := a.reg.Compatibility(r.Context(), "")
	if err != nil {
		a.fail(w, r, err, target{})
		return
	}
	a.writeLevel(w, level)
}

func (a *api) subjectConfig(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	level, ok, err := a.reg.SubjectCompatibility(r.Context(), subject)
	if err == nil && !ok && queryFlag(r, "defaultToGlobal") {
		level, err = a.reg.Compatibility(r.Context(), subject)
		ok = true
	}
	switch {
	case err != nil:
		a.fail(w, r, err, target{subject: subject})
	case !ok:
		writeError(w, newAPIError(http.StatusNotFound, codeSubjectLevelNotSet,
			"Subject '%s' does not have subject-level compatibility configured", subject))
	default:
		a.writeLevel(w, level)
	}
}

func (a *api) setGlobalConfig(w http.ResponseWriter, r *http.Request) {
	a.setConfig(w, r, "")
}

func (a *api) setSubjectConfig(w http.ResponseWriter, r *http.Request) {
	a.setConfig(w, r, r.PathValue("subject"))
}

// setConfig sets subject's level ("" for the global one) and echoes the request, as
// Confluent does.
func (a *api) setConfig(w http.ResponseWriter, r *http.Request, subject string) {
	req, ae := readConfigRequest(w, r)
	if ae != nil {
		writeError(w, ae)
		return
	}
	if err := a.reg.SetCompatibility(r.Context(), subject, req.Level); err != nil {
		a.fail(w, r, err, target{subject: subject})
		return
	}
	a.log.Info("registry: compatibility set", zap.String("subject", subject),
		zap.String("compatibility", string(req.Level)))
	writeJSON(w, http.StatusOK, map[string]string{"compatibility": req.Raw})
}

// compatibleWith checks against one version, as Confluent does: only that version, in
// the directions of the level in force.
func (a *api) compatibleWith(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	req, ae := readSchemaRequest(w, r)
	if ae != nil {
		writeError(w, ae)
		return
	}
	n, ae := parseVersion(r.PathValue("version"))
	if ae != nil {
		writeError(w, ae)
		return
	}
	err := a.reg.CheckCompatibilityWith(r.Context(), subject, req.Schema, n)
	a.writeCompatibility(w, r, err, target{subject: subject, version: n})
}

// compatibleWithAll runs the check registration would run.
func (a *api) compatibleWithAll(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	req, ae := readSchemaRequest(w, r)
	if ae != nil {
		writeError(w, ae)
		return
	}
	err := a.reg.CheckCompatibility(r.Context(), subject, req.Schema)
	a.writeCompatibility(w, r, err, target{subject: subject})
}

// writeCompatibility answers a compatibility check. With ?verbose=true the reply lists
// why the schema is incompatible ("messages", left out when there is nothing to say), and
// an invalid schema is reported as incompatible rather than with 422, as in Confluent.
func (a *api) writeCompatibility(w http.ResponseWriter, r *http.Request, err error, t target) {
	verbose := queryFlag(r, "verbose")
	resp := compatibilityResponse{IsCompatible: err == nil}
	var incompatible *IncompatibleError
	switch {
	case err == nil:
	case errors.As(err, &incompatible):
		for _, b := range incompatible.Breaks {
			resp.Messages = append(resp.Messages, b.String()+" (compatibility level "+string(incompatible.Level)+")")
		}
	case verbose && errors.Is(err, ErrInvalidSchema):
		resp.Messages = []string{"Invalid schema: " + schemaProblem(err)}
	default:
		a.fail(w, r, err, t)
		return
	}
	if !verbose {
		resp.Messages = nil
	}
	writeJSON(w, http.StatusOK, resp)
}
