package registry

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/natstest"
)

// TestNATSHandlerPanicIsAServerError: nats.go runs message handlers without recovering,
// so a panicking handler would end the process that serves the registry; it is answered
// with a 500 instead, and the service goes on answering.
func TestNATSHandlerPanicIsAServerError(t *testing.T) {
	t.Parallel()
	nc, _ := natstest.Connect(t, natstest.Server(t))
	svc, err := NewNATSService(NATSConfig{Registry: &Registry{}, Conn: nc, Prefix: "reg"})
	require.NoError(t, err)
	calls := 0
	sub, err := nc.Subscribe("reg.boom", func(msg *nats.Msg) {
		svc.serve(context.Background(), msg, func(context.Context, []byte) (any, error) {
			if calls++; calls == 1 {
				panic("boom")
			}
			return map[string]int{"ok": 1}, nil
		})
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	msg, err := nc.Request("reg.boom", []byte(`{}`), 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, "500", msg.Header.Get(NATSStatusHeader))
	require.Contains(t, string(msg.Data), strconv.Itoa(codeStore))
	msg, err = nc.Request("reg.boom", []byte(`{}`), 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, "200", msg.Header.Get(NATSStatusHeader))
}
