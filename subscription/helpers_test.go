package subscription_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/avro"
	"github.com/pgjet/pgjet/internal/embednats"
	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/promtest"
	"github.com/pgjet/pgjet/internal/relay"
	"github.com/pgjet/pgjet/internal/subject"
	"github.com/pgjet/pgjet/subscription"
)

const waitTimeout = 20 * time.Second

// env is one test's NATS server, connection and events stream.
type env struct {
	srv *embednats.Server
	nc  *nats.Conn
	js  jetstream.JetStream
	pos atomic.Int64
	// versions counts published versions per stream.
	mu       sync.Mutex
	versions map[string]int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := natstest.Server(t)
	nc, js := natstest.Connect(t, srv)
	_, err := relay.EnsureStream(t.Context(), js, relay.StreamConfig{})
	require.NoError(t, err)
	return &env{srv: srv, nc: nc, js: js, versions: map[string]int64{}}
}

// publish publishes the next event of streamID per the NATS contract (with a wire-format
// payload that no decoder is asked to read) and returns its JetStream sequence.
func (e *env) publish(t *testing.T, streamID, eventType string) uint64 {
	t.Helper()
	e.mu.Lock()
	e.versions[streamID]++
	v := e.versions[streamID]
	e.mu.Unlock()
	msg := contractMsg(t, streamID, eventType, v, e.pos.Add(1))
	var ack *jetstream.PubAck
	require.Eventually(t, func() bool { // retried across server restarts
		var err error
		ack, err = e.js.PublishMsg(t.Context(), msg)
		return err == nil
	}, waitTimeout, 20*time.Millisecond)
	return ack.Sequence
}

func benchMsg(b *testing.B, streamID string, version, position int64) *nats.Msg {
	return contractMsg(b, streamID, cancelled, version, position)
}

func contractMsg(t testing.TB, streamID, eventType string, version, position int64) *nats.Msg {
	subj, err := subject.Scheme{}.For(streamID, eventType)
	require.NoError(t, err)
	id := uuid.NewString()
	h := nats.Header{}
	h.Set(jetstream.MsgIDHeader, id)
	h.Set("ce-specversion", "1.0")
	h.Set("ce-id", id)
	h.Set("ce-source", "pgjet")
	h.Set("ce-type", eventType)
	h.Set("ce-subject", streamID)
	h.Set("ce-time", time.Now().UTC().Format(time.RFC3339Nano))
	h.Set("ce-datacontenttype", "application/avro")
	h.Set("ce-schemaid", "7")
	h.Set("ce-streamversion", strconv.FormatInt(version, 10))
	h.Set("ce-position", strconv.FormatInt(position, 10))
	h.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	return &nats.Msg{Subject: subj, Header: h, Data: avro.AppendWire(nil, 7, []byte{0})}
}

// recorder records handled events.
type recorder struct {
	mu     sync.Mutex
	events []subscription.Event
}

func (r *recorder) handle(_ context.Context, ev subscription.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	return nil
}

func (r *recorder) all() []subscription.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]subscription.Event(nil), r.events...)
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// keys returns "stream/version" of each recorded event.
func keys(evs []subscription.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = fmt.Sprintf("%s/%d", ev.StreamID, ev.Version)
	}
	return out
}

// run runs s until the test ends (or stop is called) and returns stop, which cancels it
// and waits for Run to return, failing the test on an error.
func run(t *testing.T, s *subscription.Subscriber) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(waitTimeout):
				t.Errorf("Run did not return within %s of cancellation", waitTimeout)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func newSub(t *testing.T, js jetstream.JetStream, cfg subscription.Config) *subscription.Subscriber {
	t.Helper()
	cfg.Heartbeat = cmpDur(cfg.Heartbeat, 500*time.Millisecond)
	cfg.BackoffMin = cmpDur(cfg.BackoffMin, 10*time.Millisecond)
	cfg.BackoffMax = cmpDur(cfg.BackoffMax, 100*time.Millisecond)
	cfg.RetryMax = cmpDur(cfg.RetryMax, 200*time.Millisecond)
	s, err := subscription.New(js, cfg)
	require.NoError(t, err)
	return s
}

func cmpDur(a, b time.Duration) time.Duration {
	if a != 0 {
		return a
	}
	return b
}

// eventually polls cond every 10ms until it holds, failing after waitTimeout.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// metric returns the sum of the series of name whose labels include the given ones, or 0.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	var pairs []string
	for k, v := range labels {
		pairs = append(pairs, k, v)
	}
	return promtest.Value(t, reg, name, pairs...)
}

// waitMembers waits until n subscribers have pull requests waiting on the group's consumer.
func waitMembers(t *testing.T, js jetstream.JetStream, group string, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d members of %s", n, group), func() bool {
		cons, err := js.Consumer(t.Context(), subscription.DefaultStream, group)
		return err == nil && cons.CachedInfo().NumWaiting >= n
	})
}

// waitDirectGets waits until node answers direct gets of stream itself, failing after
// waitTimeout.
func waitDirectGets(t testing.TB, node *embednats.Server, stream string) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		sz, err := node.NATS().Subsz(&server.SubszOptions{Subscriptions: true})
		if err == nil && slices.ContainsFunc(sz.Subs, func(d server.SubDetail) bool { return d.Subject == "$JS.API.DIRECT.GET."+stream }) {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("node %s does not answer direct gets of %s", node.Name(), stream)
		case <-tick.C:
		}
	}
}
