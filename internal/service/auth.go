package service

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"

	"go.uber.org/zap"
)

// BearerAuth guards HTTP APIs with a shared bearer token. With Token set, requests that
// change state (every method but GET, HEAD and OPTIONS) need the header
// `Authorization: Bearer <Token>`; with Reads set too, every request does. A request
// without the right token is answered 401 with a WWW-Authenticate challenge (RFC 6750) and
// never reaches the API. With Token empty, Wrap returns handlers unchanged.
type BearerAuth struct {
	// Token is the shared secret. Default: empty, no authentication.
	Token string
	// Reads requires the token for GET, HEAD and OPTIONS too. Default: false, reads are
	// open.
	Reads bool
	// Realm names the protected space in the challenge. Default: "pgjet".
	Realm string
	// Logger receives a debug line per refused request (method and reason, never the
	// token). Default: none.
	Logger *zap.Logger
}

// Unauthorized writes a 401 reply in an API's own error shape; message says what is wrong.
type Unauthorized func(w http.ResponseWriter, r *http.Request, message string)

// Wrap returns h guarded by a. deny writes the refusals; nil writes
// [AppendAPIUnauthorized]'s shape.
func (a *BearerAuth) Wrap(h http.Handler, deny Unauthorized) http.Handler {
	if a.Token == "" {
		return h
	}
	if deny == nil {
		deny = AppendAPIUnauthorized
	}
	want := sha256.Sum256([]byte(a.Token))
	realm := a.Realm
	if realm == "" {
		realm = "pgjet"
	}
	log := a.Logger
	if log == nil {
		log = zap.NewNop()
	}
	reads := a.Reads
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !reads && isRead(r.Method) {
			h.ServeHTTP(w, r)
			return
		}
		got, ok := bearerToken(r.Header.Get("Authorization"))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`"`)
			log.Debug("refused a request without a bearer token", zap.String("method", r.Method))
			deny(w, r, "this request needs the header `Authorization: Bearer <token>`")
			return
		}
		// Comparing digests keeps the time independent of the token's length too.
		sum := sha256.Sum256([]byte(got))
		if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`", error="invalid_token"`)
			log.Debug("refused a request with a wrong bearer token", zap.String("method", r.Method))
			deny(w, r, "the bearer token is not valid")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func isRead(method string) bool {
	return method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions
}

// bearerToken extracts the token of an "Authorization: Bearer <token>" header; the scheme
// is case-insensitive.
func bearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// AppendAPIUnauthorized answers 401 in the append API's error shape:
// {"error": {"code": "unauthorized", "message": ...}} (docs/errors.md).
func AppendAPIUnauthorized(w http.ResponseWriter, _ *http.Request, message string) {
	writeJSON(w, http.StatusUnauthorized, map[string]any{
		"error": map[string]string{"code": "unauthorized", "message": message},
	})
}

// RegistryUnauthorized answers 401 in the schema registry's Confluent error shape:
// {"error_code": 401, "message": ...}.
func RegistryUnauthorized(w http.ResponseWriter, _ *http.Request, message string) {
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(map[string]any{"error_code": http.StatusUnauthorized, "message": message})
}
