package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/relay"
	"github.com/pgjet/pgjet/subscription"
)

// A dead-lettered event is listed (as a table and as JSON) and re-driven by event id to
// its group, which then handles it.
func TestListAndRedrive(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := natstest.Server(t)
	_, js := natstest.Connect(t, srv)
	_, err := relay.EnsureStream(ctx, js, relay.StreamConfig{})
	require.NoError(t, err)

	var healed atomic.Bool
	var handled atomic.Int64
	s, err := subscription.New(js, subscription.Config{Group: "billing", MaxDeliver: 2, BackoffMin: 10 * time.Millisecond, BackoffMax: 10 * time.Millisecond,
		Handler: func(context.Context, subscription.Event) error {
			if !healed.Load() {
				return errors.New("ledger offline")
			}
			handled.Add(1)
			return nil
		}})
	require.NoError(t, err)
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(sctx) }()
	t.Cleanup(func() { cancel(); <-done })

	h := nats.Header{}
	for k, v := range map[string]string{"Nats-Msg-Id": "e-1", "ce-id": "e-1", "ce-type": "pgjet.demo.order.OrderPlaced",
		"ce-subject": "order-1", "ce-time": time.Now().UTC().Format(time.RFC3339Nano), "ce-streamversion": "1", "ce-position": "1"} {
		h.Set(k, v)
	}
	_, err = js.PublishMsg(ctx, &nats.Msg{Subject: "pgjet.events.order.pgjet:demo:order:OrderPlaced.order-1", Header: h, Data: []byte{0, 0, 0, 0, 1}})
	require.NoError(t, err)

	o := options{group: "billing"}
	var out bytes.Buffer
	require.Eventually(t, func() bool {
		out.Reset()
		return list(ctx, js, o, &out) == nil && strings.Count(out.String(), "\n") == 2
	}, 20*time.Second, 20*time.Millisecond)
	require.Contains(t, out.String(), "ledger offline")
	require.Contains(t, out.String(), "order-1")

	out.Reset()
	o.json = true
	require.NoError(t, list(ctx, js, o, &out))
	var l listed
	require.NoError(t, json.Unmarshal(out.Bytes(), &l))
	require.Equal(t, listed{Seq: 1, Group: "billing", EventID: "e-1", Stream: "order-1", Version: 1, Type: "pgjet.demo.order.OrderPlaced",
		Subject: "pgjet.events.order.pgjet:demo:order:OrderPlaced.order-1", Sequence: 1, Deliveries: 2, DeadAt: l.DeadAt, Reason: "ledger offline"}, l)

	require.ErrorContains(t, redrive(ctx, js, options{group: "billing"}, &out), "exactly one")
	require.ErrorContains(t, redrive(ctx, js, options{group: "other", all: true}, &out), "no matching")
	healed.Store(true)
	out.Reset()
	require.NoError(t, redrive(ctx, js, options{group: "billing", id: "e-1"}, &out))
	require.Contains(t, out.String(), "re-drove 1: e-1 order-1 v1 for group billing")
	require.Eventually(t, func() bool { return handled.Load() == 1 }, 20*time.Second, 20*time.Millisecond)
	out.Reset()
	o.json = false
	require.NoError(t, list(ctx, js, o, &out))
	require.Equal(t, 1, strings.Count(out.String(), "\n"), "only the header is left: %s", out.String())
}
