package writer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/jsontext"
)

// appendRequest is a decoded append: the body of POST /streams/{stream}, or a NATS append
// request. decodeAppendRequest guarantees: at least one event; every event has a non-empty
// Type, Data holding exactly one well-formed JSON value, and an ID that is either zero
// (generate one) or a non-nil UUID; Expected is Any, NoStream, StreamExists or >= 0.
type appendRequest struct {
	// Stream is the "stream" member, "" when absent. NATS requests need it; over HTTP the
	// path names the stream and the body may only repeat it.
	Stream   string
	Expected pgjet.ExpectedVersion
	Events   []eventRequest
}

// eventRequest is one event of an appendRequest.
type eventRequest struct {
	ID       uuid.UUID // zero: the store generates one
	Type     string
	Data     json.RawMessage
	Metadata map[string]string
}

// eventData converts the request's events to the store's.
func (r appendRequest) eventData() []pgjet.EventData {
	out := make([]pgjet.EventData, len(r.Events))
	for i, e := range r.Events {
		out[i] = pgjet.EventData{ID: e.ID, Type: e.Type, Data: e.Data, Metadata: e.Metadata}
	}
	return out
}

// Codes of request errors.
const (
	codeMalformedJSON          = "malformed_json"
	codeInvalidRequest         = "invalid_request"
	codeUnknownField           = "unknown_field"
	codeInvalidExpectedVersion = "invalid_expected_version"
	codeInvalidQuery           = "invalid_query"
)

// requestError is a request that cannot be decoded: a 400 naming the offending member.
type requestError struct {
	Code    string
	Path    string // the member of the body, e.g. events[0].id; "" for the body as a whole
	Param   string // the query parameter
	Message string
	err     error // the cause, for the log; nil for most
}

func (e *requestError) Error() string {
	if e.err != nil {
		return e.Message + ": " + e.err.Error()
	}
	return e.Message
}

func (e *requestError) Unwrap() error { return e.err }

func malformed(format string, args ...any) error {
	return &requestError{Code: codeMalformedJSON, Message: fmt.Sprintf(format, args...)}
}

func invalidAt(path, format string, args ...any) error {
	return &requestError{Code: codeInvalidRequest, Path: path, Message: path + ": " + fmt.Sprintf(format, args...)}
}

// bodyTooLargeError is a request body over the configured limit.
type bodyTooLargeError struct{ Limit int64 }

func (e *bodyTooLargeError) Error() string {
	return fmt.Sprintf("request body is larger than %d bytes", e.Limit)
}

// decodeAppendRequest reads exactly one JSON object from r and checks its shape strictly:
// unknown or repeated members, wrong JSON kinds, invalid UTF-8 and trailing data are errors
// (*requestError). A body over the limit (*http.MaxBytesError) is returned as it is; any
// other failure to read r to its end (the client hung up, or sent too slowly for the
// server's read timeout) is a malformed_json request error that wraps it: the client's
// fault, not the writer's. The events' data is checked against its schema later, by the
// store.
func decodeAppendRequest(r io.Reader) (appendRequest, error) {
	body, err := io.ReadAll(r)
	if err != nil {
		if _, tooLarge := errors.AsType[*http.MaxBytesError](err); tooLarge {
			return appendRequest{}, err
		}
		// The reason goes to the log only: it names the server's address.
		return appendRequest{}, &requestError{Code: codeMalformedJSON, err: err,
			Message: "request body could not be read to its end: the client closed it early or sent it too slowly"}
	}
	top, err := oneValue(body)
	if err != nil {
		return appendRequest{}, err
	}
	req := appendRequest{Expected: pgjet.Any}
	var sawEvents bool
	err = eachMember(top, "", func(key, path string, v json.RawMessage) error {
		switch key {
		case "stream":
			s, err := optionalString(path, v)
			req.Stream = s
			return err
		case "expected_version":
			if isNull(v) {
				return nil
			}
			if err := req.Expected.UnmarshalJSON(v); err != nil {
				return &requestError{Code: codeInvalidExpectedVersion, Path: path, Message: err.Error()}
			}
			return nil
		case "events":
			sawEvents = true
			return eachElement(v, path, func(i int, path string, v json.RawMessage) error {
				e, err := decodeEvent(path, v)
				req.Events = append(req.Events, e)
				return err
			})
		}
		return unknownField(path)
	})
	switch {
	case err != nil:
		return appendRequest{}, err
	case !sawEvents:
		return appendRequest{}, invalidAt("events", "is required")
	case len(req.Events) == 0:
		return appendRequest{}, invalidAt("events", "must hold at least one event")
	}
	return req, nil
}

func decodeEvent(at string, raw json.RawMessage) (eventRequest, error) {
	var (
		e                eventRequest
		sawType, sawData bool
	)
	err := eachMember(raw, at, func(key, path string, v json.RawMessage) error {
		switch key {
		case "id":
			s, err := optionalString(path, v)
			if err != nil || isNull(v) {
				return err
			}
			// uuid.Parse also takes braces, urn:uuid: and 32 bare hex digits: insist on the
			// 8-4-4-4-12 form that is echoed back, so an id has one spelling.
			id, err := uuid.Parse(s)
			if err != nil || len(s) != 36 {
				return invalidAt(path, "must be a UUID in 8-4-4-4-12 form, got %s", quoteShort(s))
			}
			if id == uuid.Nil {
				return invalidAt(path, "must not be the nil UUID; leave it out to have one generated")
			}
			e.ID = id
			return nil
		case "type":
			sawType = true
			s, err := requiredString(path, v)
			if err == nil && s == "" {
				err = invalidAt(path, "must not be empty")
			}
			e.Type = s
			return err
		case "data":
			sawData = true
			e.Data = v
			return nil
		case "metadata":
			if isNull(v) {
				return nil
			}
			if at := jsontext.LoneSurrogate(v); at >= 0 {
				// Go's decoder would store U+FFFD in its place and accept the event.
				return invalidAt(path, "holds a lone UTF-16 surrogate escape at byte %d: metadata must be UTF-8 text", at)
			}
			e.Metadata = map[string]string{}
			return eachMember(v, path, func(key, path string, v json.RawMessage) error {
				s, err := requiredString(path, v)
				e.Metadata[key] = s
				return err
			})
		}
		return unknownField(path)
	})
	switch {
	case err != nil:
		return e, err
	case !sawType:
		return e, invalidAt(at+".type", "is required")
	case !sawData:
		return e, invalidAt(at+".data", "is required")
	}
	return e, nil
}

// oneValue returns the single JSON value of body, failing on anything else around it.
func oneValue(body []byte) (json.RawMessage, error) {
	if !utf8.Valid(body) {
		return nil, malformed("request body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var v json.RawMessage
	if err := dec.Decode(&v); err != nil {
		return nil, syntaxError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, malformed("request body holds more than one JSON value")
	}
	return v, nil
}

func syntaxError(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return malformed("request body is not valid JSON: %v (at byte %d)", err, se.Offset)
	case errors.Is(err, io.EOF):
		return malformed("request body is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return malformed("request body is truncated JSON")
	}
	return malformed("request body is not valid JSON: %v", err)
}

// eachMember calls fn for each member of the JSON object raw, in order. raw must be
// well-formed JSON. Repeated keys are errors: parsers disagree about which one wins.
func eachMember(raw json.RawMessage, path string, fn func(key, path string, v json.RawMessage) error) error {
	if kind(raw) != '{' {
		return wrongKind(path, "an object", raw)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // {
		return syntaxError(err)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return syntaxError(err)
		}
		key, _ := tok.(string)
		at := memberPath(path, key)
		if seen[key] {
			return invalidAt(at, "appears twice")
		}
		seen[key] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return syntaxError(err)
		}
		if err := fn(key, at, v); err != nil {
			return err
		}
	}
	return nil
}

// eachElement calls fn for each element of the JSON array raw, in order.
func eachElement(raw json.RawMessage, path string, fn func(i int, path string, v json.RawMessage) error) error {
	if kind(raw) != '[' {
		return wrongKind(path, "an array", raw)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // [
		return syntaxError(err)
	}
	for i := 0; dec.More(); i++ {
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return syntaxError(err)
		}
		if err := fn(i, path+"["+strconv.Itoa(i)+"]", v); err != nil {
			return err
		}
	}
	return nil
}

// memberPath extends path by an object key: .key for names that read as identifiers,
// ["key"] (JSON-quoted) for others, as the store's validation paths do.
func memberPath(path, key string) string {
	if isIdent(key) {
		if path == "" {
			return key
		}
		return path + "." + key
	}
	q, _ := json.Marshal(key)
	return path + "[" + string(q) + "]"
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z':
		case '0' <= r && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

func unknownField(path string) error {
	return &requestError{Code: codeUnknownField, Path: path, Message: path + ": unknown field"}
}

// kind returns the first byte of a well-formed JSON value: '{', '[', '"', 'n', 't', 'f', or
// a number's first character.
func kind(raw json.RawMessage) byte {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return 0
	}
	return raw[0]
}

func isNull(raw json.RawMessage) bool { return kind(raw) == 'n' }

func wrongKind(path, want string, raw json.RawMessage) error {
	if path == "" {
		return &requestError{Code: codeInvalidRequest, Message: "request body must be a JSON object, got " + describe(raw)}
	}
	return invalidAt(path, "must be %s, got %s", want, describe(raw))
}

func describe(raw json.RawMessage) string {
	switch kind(raw) {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}

func requiredString(path string, raw json.RawMessage) (string, error) {
	if kind(raw) != '"' {
		return "", wrongKind(path, "a string", raw)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", syntaxError(err)
	}
	return s, nil
}

// optionalString reads a string member where null means absent.
func optionalString(path string, raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	return requiredString(path, raw)
}

func quoteShort(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return strconv.Quote(s)
}
