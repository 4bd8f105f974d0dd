package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/pgjet/pgjet/internal/jsontext"
)

// MaxBodyBytes bounds the request bodies the HTTP API reads; larger ones get 413.
const MaxBodyBytes = 1 << 20

// requestMediaTypes are the request content types Confluent's server consumes. A request
// without a Content-Type is read too.
var requestMediaTypes = map[string]bool{
	"application/vnd.schemaregistry.v1+json": true,
	"application/vnd.schemaregistry+json":    true,
	"application/json":                       true,
	"application/octet-stream":               true,
}

// schemaRequest is the body of the endpoints that take a schema (Confluent's
// RegisterSchemaRequest), reduced to what this registry supports.
type schemaRequest struct {
	Schema string
	// ID is the schema id asked for (Confluent's import), -1 when none is.
	ID int
	// Version is the subject version asked for, 0 when none is (Confluent reads values
	// below 1 as none too).
	Version int
}

// configRequest is the body of PUT /config and PUT /config/{subject}.
type configRequest struct {
	// Raw is the level as sent, echoed back on success as Confluent does.
	Raw   string
	Level Compatibility
}

// readObject reads a request body that must be one JSON object and returns its members.
// Its failures follow Confluent: 415 for a content type it does not consume, 422 with
// code 422 for a missing or null body, 400 for malformed JSON or a body that is not an
// object. It also answers 413 past MaxBodyBytes, and 400 for data after the object or a
// member given twice.
func readObject(w http.ResponseWriter, r *http.Request) (map[string]json.RawMessage, *apiError) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !requestMediaTypes[strings.ToLower(mt)] {
			return nil, httpError(http.StatusUnsupportedMediaType, "HTTP 415 Unsupported Media Type")
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, httpError(http.StatusRequestEntityTooLarge,
				fmt.Sprintf("Request body is larger than %d bytes", MaxBodyBytes))
		}
		return nil, httpError(http.StatusBadRequest, "Reading the request body: "+err.Error())
	}
	return parseObject(body)
}

// parseObject is readObject's decoding step, on a body already read.
func parseObject(body []byte) (map[string]json.RawMessage, *apiError) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		return nil, httpError(http.StatusUnprocessableEntity, "Request body is missing or null")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	var members map[string]json.RawMessage
	if err := dec.Decode(&members); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return nil, httpError(http.StatusBadRequest, "Request body must be a JSON object, not "+typeErr.Value)
		}
		return nil, httpError(http.StatusBadRequest, "Malformed JSON in request body: "+err.Error())
	}
	if dec.More() || dec.InputOffset() != int64(len(trimmed)) {
		return nil, httpError(http.StatusBadRequest, "Malformed JSON in request body: data after the JSON object")
	}
	if key, ok := repeatedMember(trimmed); ok {
		return nil, httpError(http.StatusBadRequest, fmt.Sprintf("Malformed JSON in request body: member %.64q is given twice", key))
	}
	return members, nil
}

// repeatedMember returns a key that the JSON object holds twice (after unescaping).
// Decoding into a map keeps the last; other parsers keep the first, so a proxy that
// vetted one schema would see another registered. object must be a well-formed object.
func repeatedMember(object []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(object))
	if _, err := dec.Token(); err != nil { // {
		return "", false
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		key, _ := tok.(string)
		if seen[key] {
			return key, true
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return "", false
		}
	}
	return "", false
}

// stringMember reads member name of an object as a string: absent and null read as "".
// Any other JSON type is a 400, as a type mismatch is in Confluent, and so is a lone
// UTF-16 surrogate escape, which Go's decoder would turn into U+FFFD: the registry would
// store a schema other than the one sent.
func stringMember(members map[string]json.RawMessage, name string) (string, *apiError) {
	raw, ok := members[name]
	if !ok || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", httpError(http.StatusBadRequest, fmt.Sprintf("Field %q must be a JSON string", name))
	}
	if at := jsontext.LoneSurrogate(raw); at >= 0 {
		return "", httpError(http.StatusBadRequest, fmt.Sprintf(
			"Field %q holds a lone UTF-16 surrogate escape at byte %d of its value: it must be UTF-8 text", name, at))
	}
	return s, nil
}

// readSchemaRequest reads the body of an endpoint that takes a schema: "schema" (the
// schema text, required), "schemaType" (absent, null or "AVRO"), "references" (absent,
// null or empty), and "id" and "version" (absent, null or integers; only registration
// heeds them). Other members, such as "metadata" or "ruleSet" from newer clients, are
// ignored.
func readSchemaRequest(w http.ResponseWriter, r *http.Request) (schemaRequest, *apiError) {
	members, ae := readObject(w, r)
	if ae != nil {
		return schemaRequest{}, ae
	}
	return schemaRequestFrom(members)
}

func schemaRequestFrom(members map[string]json.RawMessage) (schemaRequest, *apiError) {
	text, ae := stringMember(members, "schema")
	if ae != nil {
		return schemaRequest{}, ae
	}
	typ, ae := stringMember(members, "schemaType")
	if ae != nil {
		return schemaRequest{}, ae
	}
	if typ != "" && !strings.EqualFold(typ, "AVRO") {
		return schemaRequest{}, invalidSchema(fmt.Sprintf("schemaType %q is not supported: this registry holds AVRO schemas only", typ))
	}
	if raw, ok := members["references"]; ok && string(raw) != "null" {
		var refs []json.RawMessage
		if err := json.Unmarshal(raw, &refs); err != nil {
			return schemaRequest{}, httpError(http.StatusBadRequest, `Field "references" must be a JSON array`)
		}
		if len(refs) > 0 {
			return schemaRequest{}, newAPIError(http.StatusUnprocessableEntity, codeInvalidSchema, unsupportedReferencesMessage)
		}
	}
	if strings.TrimSpace(text) == "" {
		return schemaRequest{}, invalidSchema(`empty schema: send {"schema": "<Avro schema JSON as a string>"}`)
	}
	id, ae := intMember(members, "id", -1)
	if ae != nil {
		return schemaRequest{}, ae
	}
	version, ae := intMember(members, "version", 0)
	if ae != nil {
		return schemaRequest{}, ae
	}
	return schemaRequest{Schema: text, ID: id, Version: max(version, 0)}, nil
}

// intMember reads member name of an object as a 32-bit integer; absent and null read as
// def. Any other JSON value is a 400.
func intMember(members map[string]json.RawMessage, name string, def int) (int, *apiError) {
	raw, ok := members[name]
	if !ok || string(raw) == "null" {
		return def, nil
	}
	n, err := strconv.ParseInt(string(raw), 10, 32)
	if err != nil {
		return 0, httpError(http.StatusBadRequest, fmt.Sprintf("Field %q must be a 32-bit integer", name))
	}
	return int(n), nil
}

// readConfigRequest reads {"compatibility": "<level>"}; the level is case-insensitive, as
// in Confluent.
func readConfigRequest(w http.ResponseWriter, r *http.Request) (configRequest, *apiError) {
	members, ae := readObject(w, r)
	if ae != nil {
		return configRequest{}, ae
	}
	raw, ae := stringMember(members, "compatibility")
	if ae != nil {
		return configRequest{}, ae
	}
	level, err := ParseCompatibility(strings.ToUpper(raw))
	if err != nil {
		return configRequest{}, newAPIError(http.StatusUnprocessableEntity, codeInvalidCompatibility, invalidCompatibilityMessage)
	}
	return configRequest{Raw: raw, Level: level}, nil
}
