package registry_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/registry"
)

// TestHTTPBadInput sends each class of bad input to the HTTP API: every one gets a clear
// 4xx and changes nothing (no schema, no version, no compatibility level).
func TestHTTPBadInput(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	c := newAPI(t, newRegistry(t, pool))
	ok := `{"schema": "{\"type\":\"record\",\"name\":\"Ev\",\"namespace\":\"t\",\"fields\":[]}"}`
	counts := func() [3]int {
		var n [3]int
		require.NoError(t, pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM pgjet.schemas),
			(SELECT count(*) FROM pgjet.subject_versions), (SELECT count(*) FROM pgjet.registry_config)`).Scan(&n[0], &n[1], &n[2]))
		return n
	}
	before := counts()
	long := strings.Repeat("s", registry.MaxSubjectLength+1)
	for _, tc := range []struct {
		name, method, path, body string
		status, code             int
	}{
		{"body not UTF-8", "POST", "/subjects/t.Ev/versions", "{\"schema\": \"{\\\"type\\\":\\\"record\\\",\\\"name\\\":\\\"Ev\\\",\\\"doc\\\":\\\"\xff\\\",\\\"fields\\\":[]}\"}", 400, 400},
		{"body ends inside a character", "POST", "/subjects/t.Ev/versions", ok + "\xe2\x82", 400, 400},
		{"body too large", "POST", "/subjects/t.Ev/versions", `{"schema": "` + strings.Repeat(" ", registry.MaxBodyBytes) + `"}`, 413, 413},
		{"subject too long", "POST", "/subjects/" + long + "/versions", ok, 422, 42208},
		{"subject not UTF-8", "POST", "/subjects/t.%FF/versions", ok, 422, 42208},
		{"subject with NUL", "POST", "/subjects/t.%00/versions", ok, 422, 42208},
		{"subject with CRLF", "POST", "/subjects/t.%0D%0AEv/versions", ok, 422, 42208},
		{"read subject not UTF-8", "GET", "/subjects/t.%FF/versions", "", 422, 42208},
		{"lookup subject with NUL", "POST", "/subjects/t.%00", ok, 422, 42208},
		{"config subject with NUL", "PUT", "/config/t.%00", `{"compatibility": "NONE"}`, 422, 42208},
		{"config body not UTF-8", "PUT", "/config/t.Ev", "{\"compatibility\": \"NONE\xff\"}", 400, 400},
		{"compatibility subject too long", "POST", "/compatibility/subjects/" + long + "/versions/latest", ok, 422, 42208},
		// Parsers disagree about which of two equal keys wins: Go's and Jackson's take the
		// last, others the first, so a proxy that vetted one would see another registered.
		{"schema given twice", "POST", "/subjects/t.Ev/versions", `{"schema": "{\"type\":\"record\",\"name\":\"Ev\",\"namespace\":\"t\",\"fields\":[]}", "schema": "{\"type\":\"record\",\"name\":\"Ev\",\"namespace\":\"u\",\"fields\":[]}"}`, 400, 400},
		{"schema given twice, once escaped", "POST", "/subjects/t.Ev/versions", `{"schema": "{}", "sch\u0065ma": ` + ok[len(`{"schema": `):], 400, 400},
		{"compatibility given twice", "PUT", "/config/t.Ev", `{"compatibility": "NONE", "compatibility": "FULL"}`, 400, 400},
		// Go's decoder would store U+FFFD in place of the lone surrogate: another schema.
		{"lone surrogate in schema", "POST", "/subjects/t.Ev/versions", `{"schema": "{\"type\":\"record\",\"name\":\"Ev\",\"namespace\":\"t\",\"doc\":\"\ud800\",\"fields\":[]}"}`, 400, 400},
		// Confluent refuses a given id outside its IMPORT mode, which pgjet does not have;
		// ignoring it would register the schema under another id than the client's.
		{"import with an id", "POST", "/subjects/t.Ev/versions", withMember(ok, `"id": 42`), 422, 42205},
		{"import with id 0", "POST", "/subjects/t.Ev/versions", withMember(ok, `"id": 0`), 422, 42205},
		{"id not an integer", "POST", "/subjects/t.Ev/versions", withMember(ok, `"id": "42"`), 400, 400},
		{"id beyond 32 bits", "POST", "/subjects/t.Ev/versions", withMember(ok, `"id": -4294967296`), 400, 400},
		// A version must be the one the registration gets, as in Confluent (42201).
		{"version not the next", "POST", "/subjects/t.Ev/versions", withMember(ok, `"version": 7`), 422, 42201},
		{"version not an integer", "POST", "/subjects/t.Ev/versions", withMember(ok, `"version": 1.5`), 400, 400},
		{"lone low surrogate in schema", "POST", "/subjects/t.Ev/versions", `{"schema": "{\"type\":\"record\",\"name\":\"Ev\",\"namespace\":\"t\",\"doc\":\"\udc00\ud800\",\"fields\":[]}"}`, 400, 400},
	} {
		r := c.do(tc.method, tc.path, registry.ContentType, tc.body)
		r.requireError(t, tc.status, tc.code)
		require.Equal(t, before, counts(), "%s changed the registry", tc.name)
	}

	// The limits are inclusive, and a valid UTF-8 body split anywhere is read whole.
	r := c.do("POST", "/subjects/"+strings.Repeat("s", registry.MaxSubjectLength)+"/versions", registry.ContentType,
		`{"schema": "{\"type\":\"record\",\"name\":\"Ev\",\"namespace\":\"t\",\"doc\":\"café ☃ 😀\",\"fields\":[]}"}`)
	require.Equal(t, http.StatusOK, r.status, r.body)

	// A surrogate pair is one character; an escaped backslash before "ud800" is text.
	r = c.do("POST", "/subjects/t.Pair/versions", registry.ContentType,
		`{"schema": "{\"type\":\"record\",\"name\":\"Pair\",\"namespace\":\"t\",\"doc\":\"\ud83d\ude00 \\\\ud800\",\"fields\":[]}"}`)
	require.Equal(t, http.StatusOK, r.status, r.body)
	var id struct{ ID int }
	r.json(t, &id)
	require.Equal(t, `{"type":"record","name":"Pair","namespace":"t","doc":"😀 \\ud800","fields":[]}`,
		c.get(fmt.Sprintf("/schemas/ids/%d/schema", id.ID)).body)
}

// withMember adds a member to a JSON object's text.
func withMember(object, member string) string {
	return strings.TrimSuffix(object, "}") + ", " + member + "}"
}

// TestNATSBadInput does the same over the NATS API.
func TestNATSBadInput(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	reg := newRegistry(t, newPool(t))
	_, err := reg.Register(ctx, "t.Ev", record(fID))
	require.NoError(t, err)
	nc, _ := natstest.Connect(t, natstest.Server(t))
	svc, err := registry.NewNATSService(registry.NATSConfig{Registry: reg, Conn: nc, Prefix: "reg", MaxRequestBytes: 4096})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	_, bySubject, validate := svc.Subjects()
	for _, tc := range []struct {
		name, subject, body string
		status              string
	}{
		{"request not UTF-8", bySubject, "{\"subject\": \"t.Ev\xff\"}", "400"},
		{"request too large", validate, `{"type": "t.Ev", "data": {"id": "` + strings.Repeat("x", 4096) + `"}}`, "413"},
		{"subject with NUL", bySubject, `{"subject": "t.\u0000"}`, "422"},
		{"subject too long", bySubject, `{"subject": "` + strings.Repeat("s", registry.MaxSubjectLength+1) + `"}`, "422"},
		{"validate type with CRLF", validate, `{"type": "t.Ev\r\n", "data": {"id": "x"}}`, "422"},
		{"data not UTF-8", validate, "{\"type\": \"t.Ev\", \"data\": {\"id\": \"\xff\"}}", "400"},
		// Which of two equal keys wins is the parser's choice: no answer for either.
		{"subject given twice", bySubject, `{"subject": "t.Nope", "subject": "t.Ev"}`, "400"},
		{"type given twice", validate, `{"type": "t.Nope", "data": {"id": "x"}, "type": "t.Ev"}`, "400"},
	} {
		var msg *nats.Msg
		for range 50 { // the service may still be subscribing
			msg, err = nc.Request(tc.subject, []byte(tc.body), 5*time.Second)
			if err != nats.ErrNoResponders {
				break
			}
			require.NoError(t, nc.Flush())
		}
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.status, msg.Header.Get(registry.NATSStatusHeader), "%s: %s", tc.name, msg.Data)
	}
}
