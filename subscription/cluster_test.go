package subscription_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgjet/pgjet/internal/embednats"
	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/relay"
	"github.com/pgjet/pgjet/subscription"
)

// On a 3-node cluster with the events stream at R3, a group's subscriber keeps handling
// events while publishing goes on through leader changes: the stream's and its consumer's
// leaders step down, then the node leading the events stream is shut down and restarted
// on the same ports and store. Every published event is handled, and an event is handled
// again only as the package documents it: a redelivery after an acknowledgement that
// failed.
func TestRecoversFromLeaderChange(t *testing.T) {
	t.Parallel()
	testLeaderChange(t, false)
}

// TestOrderedGroupRecoversFromLeaderChange is TestRecoversFromLeaderChange for an ordered
// group, which reads a partitioned mirror of the events stream and keeps leases in
// key-value buckets: these take the events stream's replicas, so they are R3 too, and
// their leaders and those of every partition's consumer step down as well. Each stream's
// events must also arrive in version order.
//
// After the events stream's leader goes away the mirror stalls until nats-server's source
// health check (every 10s) re-creates its sourcing consumer, so this test takes 10-25s.
func TestOrderedGroupRecoversFromLeaderChange(t *testing.T) {
	t.Parallel()
	testLeaderChange(t, true)
}

func testLeaderChange(t *testing.T, ordered bool) {
	nodes := natstest.Cluster(t, 3)
	nc, js := natstest.Connect(t, nodes[0], nodes[1], nodes[2])
	eventually(t, "an R3 events stream", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		_, err := relay.EnsureStream(ctx, js, relay.StreamConfig{Replicas: 3})
		return err == nil
	})
	e := &env{nc: nc, js: js, versions: map[string]int64{}}

	const group = "leaders"
	reg := prometheus.NewRegistry()
	core, logs := observer.New(zap.InfoLevel)
	h := newHandledLog()
	cfg := subscription.Config{Group: group, Handler: h.handle, Registerer: reg, Logger: zap.New(core),
		AckWait: 2 * time.Second}
	read := subscription.DefaultStream // the stream the group's consumers read
	if ordered {
		cfg.Ordered, cfg.Partitions, cfg.PartitionLease = true, 3, time.Second
		read = subscription.PartitionedStream(subscription.DefaultStream, cfg.Partitions)
	}
	stopSub := run(t, newSub(t, js, cfg))
	defer func() {
		if t.Failed() {
			for _, l := range logs.All() {
				t.Logf("%s %s %s %v", l.Time.Format("15:04:05.000"), l.Level, l.Message, l.ContextMap())
			}
			dumpState(t, js, read)
		}
	}()

	pub := startPublisher(t, e, 8, 20*time.Millisecond)
	defer pub.finish()
	began := time.Now()
	caughtUp := func(what string) {
		t.Helper()
		want := pub.published()
		t0 := time.Now()
		// An ordered group's mirror may take nats-server's source health check (10s, and
		// 10s more to notice) to resume after the events stream's leader went away.
		deadline := time.NewTimer(2 * waitTimeout)
		defer deadline.Stop()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for !h.covers(want) {
			select {
			case <-deadline.C:
				t.Fatalf("timed out waiting for %s", what)
			case <-tick.C:
			}
		}
		t.Logf("%s: %d events handled after %s (at %s)", what, len(want), time.Since(t0).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	}
	pub.waitFor(t, 30)
	caughtUp("the events before the faults")

	// Leaders step down: the events stream's, the read stream's (the same for a plain group)
	// and every consumer's on it, and, for an ordered group, the buckets' streams.
	streams := []string{subscription.DefaultStream, read}
	if ordered {
		streams = append(streams, "KV_"+subscription.PartitionBucket, "KV_"+subscription.ParkedBucket)
	}
	streams = slices.Compact(streams)
	for _, stream := range streams {
		stepDown(t, nc, js, stream, "")
	}
	consumers := readConsumers(t, js, read)
	require.NotEmpty(t, consumers)
	for _, c := range consumers {
		stepDown(t, nc, js, read, c)
	}
	pub.waitFor(t, 30)
	caughtUp("the events after the step-downs")

	// The node leading the events stream goes away, and comes back on the same ports and
	// store.
	name := leaderOf(t, js, subscription.DefaultStream, "")
	leader := nodeNamed(t, nodes, name)
	leader.Shutdown()
	eventually(t, "a new leader of the events stream", func() bool {
		l, ok := tryLeaderOf(t, js, subscription.DefaultStream, "")
		return ok && l != name
	})
	pub.waitFor(t, 30)
	caughtUp("the events without the old leader")
	require.NoError(t, leader.Restart())
	for _, stream := range streams {
		natstest.WaitReplicasCurrent(t, js, stream)
	}
	pub.waitFor(t, 30)
	published := pub.finish()
	caughtUp("every event")
	stopSub()

	// Every event was handled; a repeat is a redelivery of an event whose ack failed. (A
	// plain group's redelivery may come after later events: only ordered groups keep order.)
	if ordered {
		require.Empty(t, h.violations(), "stream order")
	}
	ackFailures := len(logs.FilterMessage("ack failed; the event may be delivered again").All())
	repeats := h.repeats()
	for _, r := range repeats {
		require.Greater(t, r.Delivered, uint64(1), "%s/%d handled again without a redelivery", r.StreamID, r.Version)
	}
	require.LessOrEqual(t, len(repeats), ackFailures, "events handled again without a failed ack")
	t.Logf("%d events published and handled, %d handled again; metrics: recoveries %v, missed heartbeats %v, redeliveries %v; %d ack failures",
		len(published), len(repeats),
		metric(t, reg, "pgjet_subscription_recoveries_total", nil),
		metric(t, reg, "pgjet_subscription_missed_heartbeats_total", nil),
		metric(t, reg, "pgjet_subscription_redeliveries_total", nil), ackFailures)
}

// handledLog records which events a group handled, the ones handled again, and breaks of
// a stream's version order (a repeat of the version just handled is not one).
type handledLog struct {
	mu      sync.Mutex
	handled map[string]bool
	again   []subscription.Event
	last    map[string]int64
	broken  []string
}

func newHandledLog() *handledLog {
	return &handledLog{handled: map[string]bool{}, last: map[string]int64{}}
}

func (h *handledLog) handle(_ context.Context, ev subscription.Event) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	key := fmt.Sprintf("%s/%d", ev.StreamID, ev.Version)
	if h.handled[key] {
		h.again = append(h.again, ev)
	}
	h.handled[key] = true
	if last := h.last[ev.StreamID]; ev.Version != last && ev.Version != last+1 {
		h.broken = append(h.broken, fmt.Sprintf("%s: version %d after %d", ev.StreamID, ev.Version, last))
	}
	h.last[ev.StreamID] = ev.Version
	return nil
}

// covers reports whether every event of keys was handled.
func (h *handledLog) covers(keys []string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, k := range keys {
		if !h.handled[k] {
			return false
		}
	}
	return true
}

func (h *handledLog) repeats() []subscription.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.again)
}

// violations are the breaks of stream order.
func (h *handledLog) violations() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.broken)
}

// publisher publishes events round-robin over a few streams in the background, one at a
// time and each retried (with its message id, so JetStream stores it once) until stored.
type publisher struct {
	mu   sync.Mutex
	keys []string // "stream/version" of the events stored
	stop chan struct{}
	done chan struct{}
}

func startPublisher(t *testing.T, e *env, streams int, pace time.Duration) *publisher {
	p := &publisher{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(pace)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			stream := fmt.Sprintf("order-%d", i%streams)
			e.versions[stream]++ // only this goroutine publishes
			v := e.versions[stream]
			msg := contractMsg(t, stream, placed, v, e.pos.Add(1))
			deadline := time.Now().Add(waitTimeout)
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, err := e.js.PublishMsg(ctx, msg)
				cancel()
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("publishing %s/%d: %v", stream, v, err)
					return
				}
				select {
				case <-p.stop:
					return // not stored, as far as we know: not expected
				case <-tick.C:
				}
			}
			p.mu.Lock()
			p.keys = append(p.keys, fmt.Sprintf("%s/%d", stream, v))
			p.mu.Unlock()
		}
	}()
	return p
}

func (p *publisher) published() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.keys)
}

// waitFor waits until n more events are stored than now.
func (p *publisher) waitFor(t *testing.T, n int) {
	t.Helper()
	target := len(p.published()) + n
	eventually(t, fmt.Sprintf("%d events published", target), func() bool { return len(p.published()) >= target })
}

// finish stops publishing and returns what was stored.
func (p *publisher) finish() []string {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
	return p.published()
}

// stepDown asks the leader of stream (or of its consumer, if not "") to step down and
// waits until another node leads it.
func stepDown(t *testing.T, nc *nats.Conn, js jetstream.JetStream, stream, consumer string) {
	t.Helper()
	old := leaderOf(t, js, stream, consumer)
	subj := "$JS.API.STREAM.LEADER.STEPDOWN." + stream
	if consumer != "" {
		subj = fmt.Sprintf("$JS.API.CONSUMER.LEADER.STEPDOWN.%s.%s", stream, consumer)
	}
	eventually(t, "a step-down of "+subj, func() bool {
		msg, err := nc.Request(subj, nil, 2*time.Second)
		if err != nil {
			return false
		}
		var resp struct {
			Success bool `json:"success"`
			Error   *struct {
				Description string `json:"description"`
			} `json:"error"`
		}
		require.NoError(t, json.Unmarshal(msg.Data, &resp))
		return resp.Success
	})
	eventually(t, "a new leader for "+subj, func() bool {
		l, ok := tryLeaderOf(t, js, stream, consumer)
		return ok && l != old
	})
}

// leaderOf waits until stream (or its consumer, if not "") has a leader and returns its
// name.
func leaderOf(t *testing.T, js jetstream.JetStream, stream, consumer string) string {
	t.Helper()
	var leader string
	eventually(t, fmt.Sprintf("a leader of %s %s", stream, consumer), func() bool {
		var ok bool
		leader, ok = tryLeaderOf(t, js, stream, consumer)
		return ok
	})
	return leader
}

func tryLeaderOf(t *testing.T, js jetstream.JetStream, stream, consumer string) (string, bool) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	var ci *jetstream.ClusterInfo
	if consumer == "" {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return "", false
		}
		info, err := s.Info(ctx)
		if err != nil {
			return "", false
		}
		ci = info.Cluster
	} else {
		c, err := js.Consumer(ctx, stream, consumer)
		if err != nil {
			return "", false
		}
		ci = c.CachedInfo().Cluster
	}
	if ci == nil || ci.Leader == "" {
		return "", false
	}
	return ci.Leader, true
}

// readConsumers returns the consumers of stream.
func readConsumers(t *testing.T, js jetstream.JetStream, stream string) []string {
	t.Helper()
	s, err := js.Stream(t.Context(), stream)
	require.NoError(t, err)
	var names []string
	l := s.ConsumerNames(t.Context())
	for n := range l.Name() {
		names = append(names, n)
	}
	require.NoError(t, l.Err())
	return names
}

func nodeNamed(t *testing.T, nodes []*embednats.Server, name string) *embednats.Server {
	t.Helper()
	for _, n := range nodes {
		if n.Running() && n.Name() == name {
			return n
		}
	}
	t.Fatalf("no running node %q", name)
	return nil
}

func dumpState(t *testing.T, js jetstream.JetStream, stream string) {
	ctx := context.Background()
	for _, name := range []string{subscription.DefaultStream, stream} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Logf("stream %s: %v", name, err)
			continue
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Logf("stream %s: %v", name, err)
			continue
		}
		t.Logf("stream %s: %+v cluster %+v mirror %+v", name, info.State, info.Cluster, info.Mirror)
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return
	}
	l := s.ListConsumers(ctx)
	for ci := range l.Info() {
		t.Logf("consumer %s: delivered %+v ackfloor %+v pending %d ackpending %d waiting %d redelivered %d leader %s",
			ci.Name, ci.Delivered, ci.AckFloor, ci.NumPending, ci.NumAckPending, ci.NumWaiting, ci.NumRedelivered, ci.Cluster.Leader)
	}
}
