package writer

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/natstest"
)

const requestTimeout = 30 * time.Second

// runService runs a NATS service until the test ends and returns once it answers requests.
func runService(t *testing.T, cfg NATSConfig) {
	t.Helper()
	svc, err := NewNATSService(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	errc := make(chan error, 1)
	go func() { errc <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-errc)
	})
	waitForResponders(t, cfg.Conn, cmpOr(cfg.Subject, "pgjet.api.append"))
}

// waitForResponders polls until a request to subject gets a reply: the subscription is live.
func waitForResponders(t *testing.T, nc *nats.Conn, subject string) {
	t.Helper()
	deadline := time.Now().Add(requestTimeout)
	for {
		_, err := nc.Request(subject, []byte(`{}`), requestTimeout)
		if err == nil {
			return
		}
		require.ErrorIs(t, err, nats.ErrNoResponders)
		require.True(t, time.Now().Before(deadline), "no responders on %s", subject)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// request sends an append request and checks the reply's status header against its body.
func request(t *testing.T, nc *nats.Conn, subject string, data []byte, headers map[string]string) (int, []byte) {
	t.Helper()
	msg := nats.NewMsg(subject)
	msg.Data = data
	for k, v := range headers {
		msg.Header.Set(k, v)
	}
	reply, err := nc.RequestMsg(msg, requestTimeout)
	require.NoError(t, err)
	status, err := strconv.Atoi(reply.Header.Get(StatusHeader))
	require.NoError(t, err, "%s header", StatusHeader)
	if status != 200 {
		e := decodeError(t, reply.Data)
		require.Equal(t, status, e.Status, "status in the body")
		require.Equal(t, e.Code, reply.Header.Get("Nats-Service-Error"))
		require.Equal(t, strconv.Itoa(status), reply.Header.Get("Nats-Service-Error-Code"))
	}
	return status, reply.Data
}

func TestNATS(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	srv := natstest.Server(t)
	nc, _ := natstest.Connect(t, srv)
	runService(t, NATSConfig{Store: store, Conn: nc, MaxRequestBytes: testMaxBody})
	tr := func(t *testing.T, stream, body string, headers map[string]string) (int, []byte) {
		return request(t, nc, "pgjet.api.append", []byte(withStream(stream, body)), headers)
	}

	t.Run("success", func(t *testing.T) { testSharedSuccess(t, store, pool, tr) })
	t.Run("errors", func(t *testing.T) { testSharedErrors(t, store, pool, tr) })

	t.Run("no stream", func(t *testing.T) {
		t.Parallel()
		status, raw := request(t, nc, "pgjet.api.append", []byte(body(t, nil, event(orderPlaced, placed(1)))), nil)
		require.Equal(t, 400, status)
		require.Equal(t, codeInvalidStreamID, decodeError(t, raw).Code)
	})

	t.Run("validation reply over max payload", func(t *testing.T) {
		t.Parallel()
		svc, err := NewNATSService(NATSConfig{Store: store, Conn: nc})
		require.NoError(t, err)
		eb := errorBody{Code: codeValidationFailed, Message: "event data does not match its schema", Status: 422}
		for i := range 20000 {
			eb.Fields = append(eb.Fields, pgjet.FieldError{
				Path: "events[0].data.items[" + strconv.Itoa(i) + "].quantity", Rule: "type", Message: "must be an int, got a string", Value: `"two"`,
			})
		}
		b := svc.errorReply(eb)
		require.Less(t, int64(len(b)), nc.MaxPayload())
		e := decodeError(t, b)
		require.NotEmpty(t, e.Fields)
		require.Less(t, len(e.Fields), 20000)
		require.Equal(t, eb.Fields[:len(e.Fields)], e.Fields)
		require.Contains(t, e.Message, "20000 failures")
	})

	t.Run("same answers as http", func(t *testing.T) {
		t.Parallel()
		h, err := NewHandler(HandlerConfig{Store: store})
		require.NoError(t, err)
		seed(t, store, "order-both", 2)
		for _, b := range []string{
			body(t, 1, event(orderPlaced, placed(1))),
			`{"events": [{"type": "` + orderPlaced + `", "data": {"order_id": 1}}]}`,
			`{"events": [{"type": "nope", "data": {}}]}`,
		} {
			hs, hb := serve(t, h, "POST", "/streams/order-both", b, nil)
			ns, nb := tr(t, "order-both", b, nil)
			require.Equal(t, hs, ns)
			he, ne := decodeError(t, hb), decodeError(t, nb)
			ne.Status = 0
			require.Equal(t, he, ne)
		}
	})
}

func TestNATSQueueGroupAndShutdown(t *testing.T) {
	t.Parallel()
	store, _ := newStore(t)
	srv := natstest.Server(t)
	nc, _ := natstest.Connect(t, srv)
	subject := "test.append"

	// Two services in one queue group: every request is answered exactly once.
	var runs sync.WaitGroup
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errs := make(chan error, 2)
	for range 2 {
		svc, err := NewNATSService(NATSConfig{Store: store, Conn: nc, Subject: subject, Concurrency: 2})
		require.NoError(t, err)
		runs.Go(func() { errs <- svc.Run(ctx) })
	}
	waitForResponders(t, nc, subject)

	inbox := nats.NewInbox()
	replies, err := nc.SubscribeSync(inbox)
	require.NoError(t, err)
	const n = 20
	for i := range n {
		msg := nats.NewMsg(subject)
		msg.Reply = inbox
		msg.Data = []byte(withStream("order-q-"+strconv.Itoa(i), body(t, "no_stream", event(orderPlaced, placed(1)))))
		require.NoError(t, nc.PublishMsg(msg))
	}
	for range n {
		reply, err := replies.NextMsg(requestTimeout)
		require.NoError(t, err)
		require.Equal(t, "200", reply.Header.Get(StatusHeader), "%s", reply.Data)
	}
	_, err = replies.NextMsg(100 * time.Millisecond)
	require.ErrorIs(t, err, nats.ErrTimeout, "a request was answered twice")

	// A request without a reply subject is not appended.
	require.NoError(t, nc.Publish(subject, []byte(withStream("order-q-silent", body(t, nil, event(orderPlaced, placed(1)))))))
	require.NoError(t, nc.Flush())

	cancel()
	runs.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	_, err = nc.Request(subject, []byte(`{}`), requestTimeout)
	require.ErrorIs(t, err, nats.ErrNoResponders, "the services unsubscribed")
	_, err = store.StreamVersion(t.Context(), "order-q-silent")
	require.ErrorIs(t, err, pgjet.ErrStreamNotFound)
}

func TestNATSConnectionClosed(t *testing.T) {
	t.Parallel()
	store, _ := newStore(t)
	srv := natstest.Server(t)
	nc, _ := natstest.Connect(t, srv)
	svc, err := NewNATSService(NATSConfig{Store: store, Conn: nc})
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- svc.Run(t.Context()) }()
	waitForResponders(t, nc, "pgjet.api.append")
	nc.Close()
	select {
	case err := <-errc:
		require.ErrorContains(t, err, "connection closed")
	case <-time.After(requestTimeout):
		t.Fatal("Run did not return after the connection closed")
	}
}

func TestNewNATSServiceConfig(t *testing.T) {
	t.Parallel()
	nc := &nats.Conn{}
	for _, tc := range []struct {
		cfg  NATSConfig
		want string
	}{
		{NATSConfig{Conn: nc}, "Store"},
		{NATSConfig{Store: &pgjet.Store{}}, "Conn"},
		{NATSConfig{Store: &pgjet.Store{}, Conn: nc, Subject: "a b"}, "Subject"},
		{NATSConfig{Store: &pgjet.Store{}, Conn: nc, Queue: "a b"}, "Queue"},
		{NATSConfig{Store: &pgjet.Store{}, Conn: nc, MaxRequestBytes: -1}, "MaxRequestBytes"},
		{NATSConfig{Store: &pgjet.Store{}, Conn: nc, Concurrency: -1}, "Concurrency"},
	} {
		_, err := NewNATSService(tc.cfg)
		require.ErrorContains(t, err, tc.want)
	}
	_, err := NewNATSService(NATSConfig{Store: &pgjet.Store{}, Conn: nc})
	require.NoError(t, err)
}

// With the nats-server gone (the client reconnecting), a shutdown does not wait for a
// drain the server cannot confirm: Run returns at once.
func TestNATSShutdownWhileDisconnected(t *testing.T) {
	t.Parallel()
	store, _ := newStore(t)
	srv := natstest.Server(t)
	nc, _ := natstest.Connect(t, srv)
	svc, err := NewNATSService(NATSConfig{Store: store, Conn: nc})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- svc.Run(ctx) }()
	waitForResponders(t, nc, "pgjet.api.append")
	srv.Shutdown()
	require.Eventually(t, func() bool { return !nc.IsConnected() }, 10*time.Second, 10*time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-errc:
		require.NoError(t, err)
		t.Logf("Run returned %s after the cancel", time.Since(start))
	case <-time.After(5 * time.Second):
		t.Fatal("Run waited for a drain the absent server cannot confirm")
	}
}
