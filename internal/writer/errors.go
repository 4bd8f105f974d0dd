package writer

import (
	"errors"
	"net/http"

	"github.com/pgjet/pgjet"
)

// errorEnvelope is the body of every error reply: {"error": {...}}.
type errorEnvelope struct {
	Error errorBody `json:"error"`
}

// errorBody describes a failed request. Code is a stable snake_case word to branch on;
// Message is for humans; the other members appear where they apply.
type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Status is the HTTP status, repeated in the body of NATS replies only.
	Status int `json:"status,omitempty"`
	// Path names the offending member of the request body (request errors).
	Path string `json:"path,omitempty"`
	// Parameter names the offending query parameter (invalid_query).
	Parameter string `json:"parameter,omitempty"`
	// Stream, Expected and Actual describe a wrong_expected_version conflict.
	Stream   string                 `json:"stream,omitempty"`
	Expected *pgjet.ExpectedVersion `json:"expected,omitempty"`
	Actual   *int64                 `json:"actual,omitempty"`
	// Limit is the byte limit a request_too_large body broke.
	Limit int64 `json:"limit,omitempty"`
	// Fields lists every failing field of a validation_failed append.
	Fields []pgjet.FieldError `json:"fields,omitempty"`
}

// Error codes that are not request errors (see request.go for those).
const (
	codeInvalidStreamID      = "invalid_stream_id"
	codeInvalidAppend        = "invalid_append"
	codeInvalidEventType     = "invalid_event_type"
	codeStreamNotFound       = "stream_not_found"
	codeUnknownEventType     = "unknown_event_type"
	codeWrongExpectedVersion = "wrong_expected_version"
	codeEventIDReused        = "event_id_reused"
	codeRequestTooLarge      = "request_too_large"
	codeTooLarge             = "too_large"
	codeUnsupportedMediaType = "unsupported_media_type"
	codeValidationFailed     = "validation_failed"
	codeNotFound             = "not_found"
	codeMethodNotAllowed     = "method_not_allowed"
	codeInternal             = "internal"
)

// errorResponse maps an error of the decoders or the store to an HTTP status and an error
// body. It is the one place that does so, for HTTP and NATS alike. Statuses of 500 and up
// carry a generic message: the caller logs the error itself.
func errorResponse(err error) (int, errorBody) {
	var (
		reqErr   *requestError
		tooLarge *bodyTooLargeError
		maxBytes *http.MaxBytesError
		conflict *pgjet.WrongExpectedVersionError
		invalid  *pgjet.ValidationError
	)
	msg := err.Error()
	switch {
	case errors.As(err, &reqErr):
		return http.StatusBadRequest, errorBody{Code: reqErr.Code, Message: reqErr.Message, Path: reqErr.Path, Parameter: reqErr.Param}
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, errorBody{Code: codeRequestTooLarge, Message: msg, Limit: tooLarge.Limit}
	case errors.As(err, &maxBytes):
		tl := &bodyTooLargeError{Limit: maxBytes.Limit}
		return http.StatusRequestEntityTooLarge, errorBody{Code: codeRequestTooLarge, Message: tl.Error(), Limit: tl.Limit}
	case errors.As(err, &conflict):
		expected, actual := conflict.Expected, conflict.Actual
		return http.StatusConflict, errorBody{
			Code: codeWrongExpectedVersion, Message: msg,
			Stream: conflict.Stream, Expected: &expected, Actual: &actual,
		}
	case errors.As(err, &invalid):
		return http.StatusUnprocessableEntity, errorBody{
			Code: codeValidationFailed, Message: "event data does not match its schema", Fields: invalid.Fields,
		}
	case errors.Is(err, pgjet.ErrInvalidStreamID):
		return http.StatusBadRequest, errorBody{Code: codeInvalidStreamID, Message: msg}
	case errors.Is(err, pgjet.ErrInvalidEventType):
		return http.StatusBadRequest, errorBody{Code: codeInvalidEventType, Message: msg}
	case errors.Is(err, pgjet.ErrInvalidAppend):
		return http.StatusBadRequest, errorBody{Code: codeInvalidAppend, Message: msg}
	case errors.Is(err, pgjet.ErrInvalidRead):
		return http.StatusBadRequest, errorBody{Code: codeInvalidQuery, Message: msg}
	case errors.Is(err, pgjet.ErrStreamNotFound):
		return http.StatusNotFound, errorBody{Code: codeStreamNotFound, Message: msg}
	case errors.Is(err, pgjet.ErrUnknownEventType):
		return http.StatusNotFound, errorBody{Code: codeUnknownEventType, Message: msg}
	case errors.Is(err, pgjet.ErrEventIDReused):
		return http.StatusConflict, errorBody{Code: codeEventIDReused, Message: msg}
	case errors.Is(err, pgjet.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, errorBody{Code: codeTooLarge, Message: msg}
	}
	return http.StatusInternalServerError, errorBody{Code: codeInternal, Message: "internal error; the writer logged the details"}
}
