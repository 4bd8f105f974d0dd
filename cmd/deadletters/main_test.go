package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
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

// The dead letters of an ordered group show as parked and held; re-driving them releases
// the stream, whose events the group then handles in order.
func TestRedriveReleasesParkedStream(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := natstest.Server(t)
	_, js := natstest.Connect(t, srv)
	_, err := relay.EnsureStream(ctx, js, relay.StreamConfig{})
	require.NoError(t, err)

	var healed atomic.Bool
	var mu sync.Mutex
	var handled []string
	s, err := subscription.New(js, subscription.Config{Group: "shipping", Ordered: true, Partitions: 1, PartitionLease: time.Second,
		MaxDeliver: 2, BackoffMin: 10 * time.Millisecond, BackoffMax: 10 * time.Millisecond,
		Handler: func(_ context.Context, ev subscription.Event) error {
			if ev.StreamID == "order-1" && ev.Version == 1 && !healed.Load() {
				return errors.New("carrier offline")
			}
			mu.Lock()
			defer mu.Unlock()
			handled = append(handled, fmt.Sprintf("%s/%d", ev.StreamID, ev.Version))
			return nil
		}})
	require.NoError(t, err)
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(sctx) }()
	t.Cleanup(func() { cancel(); <-done })

	publish := func(id, stream string, version int) {
		h := nats.Header{}
		for k, v := range map[string]string{"Nats-Msg-Id": id, "ce-id": id, "ce-type": "pgjet.demo.order.OrderShipped",
			"ce-subject": stream, "ce-time": time.Now().UTC().Format(time.RFC3339Nano), "ce-streamversion": strconv.Itoa(version), "ce-position": "1"} {
			h.Set(k, v)
		}
		_, err := js.PublishMsg(ctx, &nats.Msg{Subject: "pgjet.events.order.pgjet:demo:order:OrderShipped." + stream, Header: h, Data: []byte{0, 0, 0, 0, 1}})
		require.NoError(t, err)
	}
	publish("a-1", "order-1", 1)
	publish("a-2", "order-1", 2)
	publish("b-1", "order-2", 1)

	var out bytes.Buffer
	o := options{group: "shipping"}
	require.Eventually(t, func() bool {
		out.Reset()
		return list(ctx, js, o, &out) == nil && strings.Count(out.String(), "\n") == 3
	}, 20*time.Second, 20*time.Millisecond)
	require.Contains(t, out.String(), "parked")
	require.Contains(t, out.String(), "held")
	require.Contains(t, out.String(), "carrier offline")

	healed.Store(true)
	out.Reset()
	require.NoError(t, redrive(ctx, js, options{group: "shipping", all: true}, &out))
	require.Equal(t, "released parked stream order-1 for ordered group shipping: its dead letters are replayed in order\n", out.String())
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == 3
	}, 20*time.Second, 20*time.Millisecond)
	mu.Lock()
	require.Equal(t, []string{"order-2/1", "order-1/1", "order-1/2"}, handled)
	mu.Unlock()
	require.Eventually(t, func() bool {
		out.Reset()
		return list(ctx, js, o, &out) == nil && strings.Count(out.String(), "\n") == 1
	}, 20*time.Second, 20*time.Millisecond)
}

// Re-driving works from a list that went stale: a dead letter re-driven by someone else
// since is reported as gone, not failed, and the rest are re-driven. Of a parked stream
// only one dead letter is re-driven (the replay hands the group all of them).
func TestRedriveFromStaleList(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := natstest.Server(t)
	_, js := natstest.Connect(t, srv)
	_, err := relay.EnsureStream(ctx, js, relay.StreamConfig{})
	require.NoError(t, err)

	s, err := subscription.New(js, subscription.Config{Group: "billing", MaxDeliver: 1,
		Handler: func(context.Context, subscription.Event) error { return errors.New("ledger offline") }})
	require.NoError(t, err)
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(sctx) }()
	for i := 1; i <= 2; i++ {
		id := fmt.Sprintf("e-%d", i)
		h := nats.Header{}
		for k, v := range map[string]string{"Nats-Msg-Id": id, "ce-id": id, "ce-type": "pgjet.demo.order.OrderPlaced",
			"ce-subject": "order-" + id, "ce-time": time.Now().UTC().Format(time.RFC3339Nano), "ce-streamversion": "1", "ce-position": "1"} {
			h.Set(k, v)
		}
		_, err = js.PublishMsg(ctx, &nats.Msg{Subject: "pgjet.events.order.pgjet:demo:order:OrderPlaced.order-" + id, Header: h, Data: []byte{0, 0, 0, 0, 1}})
		require.NoError(t, err)
	}
	var dls []subscription.DeadLetter
	require.Eventually(t, func() bool {
		dls, err = subscription.ListDeadLetters(ctx, js, subscription.DeadLetterConfig{}, "billing")
		return err == nil && len(dls) == 2
	}, 20*time.Second, 20*time.Millisecond)
	cancel()
	require.NoError(t, <-done)

	// Someone else re-drives the first one after our list.
	_, err = subscription.Redrive(ctx, js, subscription.DeadLetterConfig{}, dls[0].Sequence)
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, redriveEach(ctx, js, subscription.DeadLetterConfig{}, pick(dls, options{all: true}), &out))
	require.Equal(t, fmt.Sprintf("dead letter %d is gone: re-driven or replayed since it was listed\nre-drove %d: e-2 order-e-2 v1 for group billing\n",
		dls[0].Sequence, dls[1].Sequence), out.String())

	parked := []subscription.DeadLetter{
		{Sequence: 7, Group: "shipping", StreamID: "order-1", Parked: true},
		{Sequence: 8, Group: "shipping", StreamID: "order-1", Parked: true, Held: true},
		{Sequence: 9, Group: "shipping", StreamID: "order-2", Parked: true},
		{Sequence: 10, Group: "other", StreamID: "order-1", Parked: true},
	}
	var seqs []uint64
	for _, d := range pick(parked, options{all: true}) {
		seqs = append(seqs, d.Sequence)
	}
	require.Equal(t, []uint64{7, 9, 10}, seqs)
	// -seq picks that one only, even among dead letters without an event id (a message
	// from outside pgjet has no ce-id).
	require.Equal(t, []subscription.DeadLetter{parked[1]}, pick(parked, options{seq: 8}))
}

const mainEnv = "PGJET_DEADLETTERS_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		os.Args = append([]string{"deadletters"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// -h exits 0 with the usage; a missing or unknown subcommand, a stray argument or a
// negative -seq exits 2.
func TestUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{args: []string{"-h"}, code: 0, want: "deadletters redrive [-group G]"},
		{args: []string{"list", "-h"}, code: 0, want: "-nats-url"},
		{args: nil, code: 2, want: "deadletters list"},
		{args: []string{"purge"}, code: 2, want: "deadletters list"},
		{args: []string{"redrive", "-group", "g", "all"}, code: 2, want: `unexpected argument "all"`},
		{args: []string{"redrive", "-seq", "-4"}, code: 2, want: "-seq must not be negative"},
	} {
		cmd := exec.Command(os.Args[0], tc.args...)
		cmd.Env = append(os.Environ(), mainEnv+"=1", "PGJET_DATA_DIR="+t.TempDir())
		out, _ := cmd.CombinedOutput()
		require.Equal(t, tc.code, cmd.ProcessState.ExitCode(), "%v: %s", tc.args, out)
		require.Contains(t, string(out), tc.want, "%v", tc.args)
	}
}
