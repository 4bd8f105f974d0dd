package registry_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/avro"
	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/registry"
)

func TestNATSService(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	reg := newRegistry(t, newPool(t))
	v1, err := reg.Register(ctx, "t.Ev", record(fID, `{"name":"n","type":"int","minimum":1}`))
	require.NoError(t, err)
	v2, err := reg.Register(ctx, "t.Ev", record(fID, `{"name":"n","type":"int","minimum":1}`, fNoteDefault))
	require.NoError(t, err)

	nc, _ := natstest.Connect(t, natstest.Server(t))
	svc, err := registry.NewNATSService(registry.NATSConfig{Registry: reg, Conn: nc, Prefix: "reg"})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	byID, bySubject, validate := svc.Subjects()
	require.Equal(t, "reg.validate", validate)

	ask := func(subject, body string) (int, map[string]any) {
		t.Helper()
		// The service may still be subscribing: retry while nobody answers.
		var (
			msg *nats.Msg
			err error
		)
		for range 50 {
			msg, err = nc.Request(subject, []byte(body), 2*time.Second)
			if err != nats.ErrNoResponders {
				break
			}
			require.NoError(t, nc.Flush())
		}
		require.NoError(t, err)
		var out map[string]any
		require.NoError(t, json.Unmarshal(msg.Data, &out), string(msg.Data))
		status, err := strconv.Atoi(msg.Header.Get(registry.NATSStatusHeader))
		require.NoError(t, err)
		return status, out
	}

	status, out := ask(byID, `{"id":`+strconv.Itoa(v1.ID)+`}`)
	require.Equal(t, 200, status)
	require.Equal(t, float64(v1.ID), out["id"])
	require.Contains(t, out["schema"], `"minimum":1`)

	status, out = ask(bySubject, `{"subject":"t.Ev"}`)
	require.Equal(t, 200, status)
	require.Equal(t, float64(v2.ID), out["id"])
	require.Equal(t, float64(2), out["version"])
	status, out = ask(bySubject, `{"subject":"t.Ev","version":1}`)
	require.Equal(t, 200, status)
	require.Equal(t, float64(v1.ID), out["id"])
	for _, latest := range []string{`"latest"`, `"LATEST"`, `-1`, `"-1"`, `null`} {
		status, out = ask(bySubject, `{"subject":"t.Ev","version":`+latest+`}`)
		require.Equal(t, 200, status, latest)
		require.Equal(t, float64(2), out["version"], latest)
	}

	status, out = ask(validate, `{"type":"t.Ev","data":{"id":"a","n":2}}`)
	require.Equal(t, 200, status, out)
	require.Equal(t, true, out["valid"])
	wire, err := base64.StdEncoding.DecodeString(out["payload"].(string))
	require.NoError(t, err)
	id, payload, err := avro.SplitWire(wire)
	require.NoError(t, err)
	require.Equal(t, uint32(v2.ID), id)
	js, err := v2.Schema.DecodeJSON(payload)
	require.NoError(t, err)
	require.JSONEq(t, `{"id":"a","n":2,"note":""}`, string(js))

	status, out = ask(validate, `{"type":"t.Ev","data":{"id":1,"n":0}}`)
	require.Equal(t, 422, status)
	require.Equal(t, float64(registry.CodeInvalidData), out["error_code"])
	fields := out["fields"].([]any)
	require.Len(t, fields, 2)
	require.Equal(t, "id", fields[0].(map[string]any)["path"])
	require.Equal(t, "minimum", fields[1].(map[string]any)["rule"])

	for _, c := range []struct {
		subject, body string
		status, code  int
	}{
		{byID, `{"id":999999}`, 404, 40403},
		{byID, `{"id":99999999999}`, 404, 40403},
		{byID, `{"id":"x"}`, 400, 400},
		{byID, `not json`, 400, 400},
		{byID, `{"id":1}}]]`, 400, 400},
		{byID, `{"id":1} {}`, 400, 400},
		{bySubject, `{"subject":"t.Ev","version":99999999999}`, 422, 42202},
		{bySubject, `{"subject":"t.Ev","version":0}`, 422, 42202},
		{bySubject, `{"subject":"t.Ev","version":true}`, 422, 42202},
		{bySubject, `{"subject":"no.Such"}`, 404, 40401},
		{bySubject, `{"subject":"t.Ev","version":9}`, 404, 40402},
		{bySubject, `{"subject":"t.Ev","version":"zero"}`, 422, 42202},
		{bySubject, `{"subject":""}`, 400, 400},
		{validate, `{"type":"no.Such","data":{}}`, 404, 40401},
		{validate, `{"type":"t.Ev"}`, 400, 400},
		{validate, `{"type":"t.Ev","data":{},"extra":1}`, 400, 400},
	} {
		status, out := ask(c.subject, c.body)
		require.Equal(t, c.status, status, c.body)
		require.Equal(t, float64(c.code), out["error_code"], c.body)
		require.NotEmpty(t, out["message"], c.body)
	}
}
