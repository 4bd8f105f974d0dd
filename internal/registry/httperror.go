package registry

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Error codes of the HTTP API: Confluent Schema Registry's, so that clients branching on
// them behave as they do against Confluent. Generic HTTP failures (400, 404 for an
// unknown path, 405, 413, 415, and 422 for a missing body) carry the status as their
// code, as Confluent's REST layer does.
const (
	codeSubjectNotFound      = 40401
	codeVersionNotFound      = 40402
	codeSchemaNotFound       = 40403
	codeSubjectLevelNotSet   = 40408
	codeIncompatible         = 409 // what Confluent 5.x-7.x send; its newest releases send 40901
	codeInvalidSchema        = 42201
	codeInvalidVersion       = 42202
	codeInvalidCompatibility = 42203
	codeNotPermitted         = 42205 // Confluent's "operation not permitted": here, import
	codeStore                = 50001
)

const (
	invalidCompatibilityMessage  = "Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive"
	backendErrorMessage          = "Error in the backend data store"
	incompatibleMessagePrefix    = "Schema being registered is incompatible with an earlier schema for subject"
	unsupportedReferencesMessage = "Schema references are not supported by this registry: send a self-contained Avro schema"
)

// apiError is an error reply in Confluent's shape: {"error_code": N, "message": "..."}.
type apiError struct {
	status  int
	Code    int    `json:"error_code"`
	Message string `json:"message"`
}

func (e *apiError) Error() string { return e.Message }

func newAPIError(status, code int, format string, args ...any) *apiError {
	return &apiError{status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// httpError is a generic HTTP failure whose error_code is its status.
func httpError(status int, message string) *apiError {
	return &apiError{status: status, Code: status, Message: message}
}

func subjectNotFound(subject string) *apiError {
	return newAPIError(http.StatusNotFound, codeSubjectNotFound, "Subject '%s' not found.", subject)
}

func invalidVersion(raw string) *apiError {
	return newAPIError(http.StatusUnprocessableEntity, codeInvalidVersion,
		`The specified version '%s' is not a valid version id. Allowed values are between [1, 2^31-1] and the string "latest"`, raw)
}

func invalidSchema(detail string) *apiError {
	return newAPIError(http.StatusUnprocessableEntity, codeInvalidSchema, "Invalid schema: %s", detail)
}

// target names what a request was about, for error messages.
type target struct {
	subject string
	version int
	id      int
}

// toAPIError maps a registry error to its reply. ok is false for errors that are not the
// caller's fault; they become 500 with code 50001 and must be logged.
func toAPIError(err error, t target) (ae *apiError, ok bool) {
	var incompatible *IncompatibleError
	switch {
	case errors.As(err, &ae):
		return ae, ae.status < 500
	case errors.As(err, &incompatible):
		return newAPIError(http.StatusConflict, codeIncompatible, "%s %q, details: %s",
			incompatibleMessagePrefix, t.subject, incompatibleDetails(incompatible)), true
	case errors.Is(err, ErrSubjectNotFound):
		return subjectNotFound(t.subject), true
	case errors.Is(err, ErrVersionNotFound):
		return newAPIError(http.StatusNotFound, codeVersionNotFound, "Version %d not found.", t.version), true
	case errors.Is(err, ErrSchemaNotFound):
		if t.id > 0 {
			return newAPIError(http.StatusNotFound, codeSchemaNotFound, "Schema %d not found", t.id), true
		}
		return newAPIError(http.StatusNotFound, codeSchemaNotFound, "Schema not found"), true
	case errors.Is(err, ErrInvalidSchema):
		return invalidSchema(schemaProblem(err)), true
	case errors.Is(err, ErrInvalidVersion):
		return invalidVersion(fmt.Sprint(t.version)), true
	case errors.Is(err, ErrInvalidCompatibility):
		return newAPIError(http.StatusUnprocessableEntity, codeInvalidCompatibility, invalidCompatibilityMessage), true
	}
	return newAPIError(http.StatusInternalServerError, codeStore, backendErrorMessage), false
}

// schemaProblem is the parser's complaint inside an ErrInvalidSchema error.
func schemaProblem(err error) string {
	msg := err.Error()
	if _, rest, ok := strings.Cut(msg, ErrInvalidSchema.Error()+": "); ok {
		return rest
	}
	return msg
}

// incompatibleDetails says, for a 409 reply, under which level and how each version breaks.
func incompatibleDetails(e *IncompatibleError) string {
	msgs := make([]string, len(e.Breaks))
	for i, b := range e.Breaks {
		msgs[i] = b.String()
	}
	return fmt.Sprintf("[%s] (compatibility level %s)", strings.Join(msgs, "; "), e.Level)
}
