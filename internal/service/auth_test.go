package service

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBearerAuth(t *testing.T) {
	t.Parallel()
	const token = "api-s3cret"
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	for _, tc := range []struct {
		name      string
		reads     bool
		method    string
		header    string
		status    int
		challenge string
	}{
		{"open read", false, http.MethodGet, "", http.StatusTeapot, ""},
		{"open head", false, http.MethodHead, "", http.StatusTeapot, ""},
		{"write without token", false, http.MethodPost, "", http.StatusUnauthorized, `Bearer realm="pgjet"`},
		{"put without token", false, http.MethodPut, "", http.StatusUnauthorized, `Bearer realm="pgjet"`},
		{"delete without token", false, http.MethodDelete, "", http.StatusUnauthorized, `Bearer realm="pgjet"`},
		{"write with token", false, http.MethodPost, "Bearer " + token, http.StatusTeapot, ""},
		{"scheme is case-insensitive", false, http.MethodPost, "bearer " + token, http.StatusTeapot, ""},
		{"wrong token", false, http.MethodPost, "Bearer nope", http.StatusUnauthorized, `Bearer realm="pgjet", error="invalid_token"`},
		{"token prefix", false, http.MethodPost, "Bearer " + token[:5], http.StatusUnauthorized, `Bearer realm="pgjet", error="invalid_token"`},
		{"token with suffix", false, http.MethodPost, "Bearer " + token + "x", http.StatusUnauthorized, `Bearer realm="pgjet", error="invalid_token"`},
		{"basic scheme", false, http.MethodPost, "Basic " + token, http.StatusUnauthorized, `Bearer realm="pgjet"`},
		{"empty bearer", false, http.MethodPost, "Bearer ", http.StatusUnauthorized, `Bearer realm="pgjet"`},
		{"closed read without token", true, http.MethodGet, "", http.StatusUnauthorized, `Bearer realm="pgjet"`},
		{"closed read with token", true, http.MethodGet, "Bearer " + token, http.StatusTeapot, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := BearerAuth{Token: token, Reads: tc.reads}
			for _, deny := range []Unauthorized{AppendAPIUnauthorized, RegistryUnauthorized} {
				rec := httptest.NewRecorder()
				req := httptest.NewRequest(tc.method, "/streams/order-1", nil)
				if tc.header != "" {
					req.Header.Set("Authorization", tc.header)
				}
				a.Wrap(ok, deny).ServeHTTP(rec, req)
				require.Equal(t, tc.status, rec.Code)
				require.Equal(t, tc.challenge, rec.Header().Get("WWW-Authenticate"))
				require.NotContains(t, rec.Body.String(), token)
			}
		})
	}
}

func TestBearerAuthErrorShapes(t *testing.T) {
	t.Parallel()
	a := BearerAuth{Token: "x"}
	never := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("the API ran without a token") })

	rec := httptest.NewRecorder()
	a.Wrap(never, AppendAPIUnauthorized).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/streams/order-1", nil))
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var appendErr struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &appendErr))
	require.Equal(t, "unauthorized", appendErr.Error.Code)
	require.Contains(t, appendErr.Error.Message, "Authorization: Bearer")

	rec = httptest.NewRecorder()
	a.Wrap(never, RegistryUnauthorized).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/subjects/x/versions", nil))
	require.Equal(t, "application/vnd.schemaregistry.v1+json", rec.Header().Get("Content-Type"))
	var regErr struct {
		Code    int    `json:"error_code"`
		Message string `json:"message"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &regErr))
	require.Equal(t, 401, regErr.Code)
	require.NotEmpty(t, regErr.Message)
}

// Without a token the handler is returned as is: no authentication.
func TestBearerAuthOff(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	(&BearerAuth{}).Wrap(http.NotFoundHandler(), nil).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	require.Equal(t, http.StatusNotFound, rec.Code)
}
