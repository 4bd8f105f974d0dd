package subscription_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/netproxy"
	"github.com/pgjet/pgjet/internal/relay"
	"github.com/pgjet/pgjet/subscription"
)

// orderLog checks what an ordered group's members handle: each stream's versions exactly
// once, in order, and never two events of one stream at the same time.
type orderLog struct {
	mu         sync.Mutex
	last       map[string]int64
	inFlight   map[string]int
	violations []string
	repeats    int // at-least-once: an event handled again right after itself
	total      int
	byMember   map[int]int
}

func newOrderLog() *orderLog {
	return &orderLog{last: map[string]int64{}, inFlight: map[string]int{}, byMember: map[int]int{}}
}

func (l *orderLog) handler(member int, fail func(subscription.Event) error) subscription.Handler {
	return func(_ context.Context, ev subscription.Event) error {
		l.mu.Lock()
		l.inFlight[ev.StreamID]++
		if l.inFlight[ev.StreamID] > 1 {
			l.violations = append(l.violations, fmt.Sprintf("%s/%d handled while another event of its stream was", ev.StreamID, ev.Version))
		}
		l.mu.Unlock()
		var err error
		if fail != nil {
			err = fail(ev)
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		l.inFlight[ev.StreamID]--
		if err != nil {
			return err
		}
		if ev.Version == l.last[ev.StreamID] {
			l.repeats++
			return nil
		}
		if want := l.last[ev.StreamID] + 1; ev.Version != want {
			l.violations = append(l.violations, fmt.Sprintf("%s: got version %d, want %d (member %d)", ev.StreamID, ev.Version, want, member))
		}
		l.last[ev.StreamID] = ev.Version
		l.total++
		l.byMember[member]++
		return nil
	}
}

func (l *orderLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

func (l *orderLog) of(member int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byMember[member]
}

func (l *orderLog) version(stream string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last[stream]
}

func orderedCfg(group string, h subscription.Handler) subscription.Config {
	return subscription.Config{Group: group, Ordered: true, Partitions: 6, PartitionLease: time.Second, Handler: h, AckWait: 5 * time.Second}
}

// Members of an ordered group each get whole streams: every stream's events arrive once,
// in version order, never two at a time, while a member leaves and another joins mid-run.
func TestOrderedGroupKeepsStreamOrderAcrossRebalances(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	log := newOrderLog()
	reg := prometheus.NewRegistry()
	stops := map[int]func(){}
	for i := range 3 {
		cfg := orderedCfg("ordered", log.handler(i, nil))
		if i == 0 {
			cfg.Registerer = reg
		}
		stops[i] = run(t, newSub(t, e.js, cfg))
	}
	const streams = 24
	published := 0
	publishRound := func() {
		for s := range streams {
			e.publish(t, fmt.Sprintf("order-%d", s), placed)
			published++
		}
	}
	// Until member 0 has had some work: the partitions are leased, and on a loaded machine
	// the other two may hold all of them while the first rounds are delivered.
	deadline := time.Now().Add(waitTimeout)
	for rounds := 0; rounds < 8 || log.of(0) < 10; rounds++ {
		require.True(t, time.Now().Before(deadline), "member 0 never got work")
		publishRound()
		eventually(t, "the round", func() bool { return log.count() >= published })
	}
	stops[0]() // leaves mid-stream
	require.Zero(t, metric(t, reg, "pgjet_subscription_partitions", map[string]string{"group": "ordered"}), "a leaving member releases its partitions")
	for range 4 {
		publishRound()
	}
	run(t, newSub(t, e.js, orderedCfg("ordered", log.handler(3, nil))))
	deadline = time.Now().Add(waitTimeout)
	for log.of(3) == 0 { // until the new member has partitions
		require.True(t, time.Now().Before(deadline), "the joining member never got work")
		publishRound()
		eventually(t, "the round", func() bool { return log.count() >= published })
	}
	for range 2 {
		publishRound()
	}
	eventually(t, "every event", func() bool { return log.count() >= published })
	log.mu.Lock()
	defer log.mu.Unlock()
	require.Empty(t, log.violations)
	require.Zero(t, log.repeats, "no event twice")
	require.Equal(t, published, log.total)
	for s := range streams {
		require.Equal(t, int64(published/streams), log.last[fmt.Sprintf("order-%d", s)])
	}
	for _, m := range []int{0, 1, 2, 3} {
		require.Positive(t, log.byMember[m], "member %d handled nothing", m)
	}
}

// A member whose connection dies keeps its partitions only until its leases expire; its
// unacknowledged event is redelivered to the new owner, and every stream stays in order.
func TestOrderedGroupSurvivesMemberConnectionLoss(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	log := newOrderLog()
	victimConn, victimJS := natstest.Connect(t, e.srv)
	cfg := orderedCfg("crash", log.handler(0, nil))
	cfg.AckWait = time.Second
	victim := newSub(t, victimJS, cfg)
	victimDone := make(chan error, 1)
	go func() { victimDone <- victim.Run(context.Background()) }()
	cfg.Handler = log.handler(1, nil)
	run(t, newSub(t, e.js, cfg))
	const streams = 12
	published := 0
	deadline := time.Now().Add(waitTimeout)
	for log.of(0) < 5 || log.of(1) == 0 {
		require.True(t, time.Now().Before(deadline), "the members never both got work")
		for s := range streams {
			e.publish(t, fmt.Sprintf("order-%d", s), placed)
			published++
		}
		eventually(t, "the round", func() bool { return log.count() >= published })
	}
	victimConn.Close()
	require.ErrorIs(t, <-victimDone, nats.ErrConnectionClosed)
	for range 5 {
		for s := range streams {
			e.publish(t, fmt.Sprintf("order-%d", s), placed)
			published++
		}
	}
	eventually(t, "every event", func() bool { return log.count() >= published })
	log.mu.Lock()
	defer log.mu.Unlock()
	require.Empty(t, log.violations)
	for s := range streams {
		require.Equal(t, int64(published/streams), log.last[fmt.Sprintf("order-%d", s)])
	}
}

// A dead-lettered event parks its stream: later events of the stream are held while the
// other streams of the same partition flow; re-driving after the fix hands the parked
// event and then the held ones to the group in order, and the stream flows again.
func TestOrderedGroupParksPoisonedStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	log := newOrderLog()
	var healed atomic.Bool
	poison := func(ev subscription.Event) error {
		if ev.StreamID == "order-bad" && ev.Version == 2 && !healed.Load() {
			return errors.New("cannot ship to the moon")
		}
		return nil
	}
	reg := prometheus.NewRegistry()
	cfg := orderedCfg("parking", log.handler(0, poison))
	cfg.Partitions = 1 // every stream shares the poisoned one's partition
	cfg.MaxDeliver = 3
	cfg.Registerer = reg
	run(t, newSub(t, e.js, cfg))
	for range 5 {
		e.publish(t, "order-bad", placed)
		for s := range 4 {
			e.publish(t, fmt.Sprintf("order-%d", s), placed)
		}
	}
	eventually(t, "the other streams", func() bool {
		for s := range 4 {
			if log.version(fmt.Sprintf("order-%d", s)) != 5 {
				return false
			}
		}
		return true
	})
	var dls []subscription.DeadLetter
	eventually(t, "the parked and held events", func() bool {
		var err error
		dls, err = subscription.ListDeadLetters(t.Context(), e.js, subscription.DeadLetterConfig{}, "parking")
		return err == nil && len(dls) == 4
	})
	require.Equal(t, int64(1), log.version("order-bad"))
	for i, dl := range dls {
		require.Equal(t, "order-bad", dl.StreamID)
		require.Equal(t, int64(i+2), dl.Version)
		require.True(t, dl.Parked)
		require.Equal(t, i > 0, dl.Held, "dead letter %d", i)
		require.Equal(t, "pgjet.events.order.pgjet:demo:order:OrderPlaced.order-bad", dl.Subject, "the original subject")
		require.Equal(t, subscription.DefaultStream, dl.Stream)
	}
	require.Equal(t, "cannot ship to the moon", dls[0].Reason)
	require.Equal(t, 3, dls[0].Deliveries)
	require.Equal(t, 1.0, metric(t, reg, "pgjet_subscription_parked_streams_total", nil))
	require.Equal(t, 3.0, metric(t, reg, "pgjet_subscription_events_total", map[string]string{"result": "held"}))

	e.publish(t, "order-bad", placed) // version 6: held too
	e.publish(t, "order-0", placed)   // flows
	eventually(t, "order-0 v6", func() bool { return log.version("order-0") == 6 })
	eventually(t, "order-bad v6 held", func() bool {
		dls, err := subscription.ListDeadLetters(t.Context(), e.js, subscription.DeadLetterConfig{}, "parking")
		return err == nil && len(dls) == 5
	})
	require.Equal(t, int64(1), log.version("order-bad"))

	healed.Store(true)
	dl, err := subscription.Redrive(t.Context(), e.js, subscription.DeadLetterConfig{}, dls[2].Sequence) // any of the stream's
	require.NoError(t, err)
	require.True(t, dl.Parked)
	eventually(t, "the parked stream replayed", func() bool { return log.version("order-bad") == 6 })
	eventually(t, "the dead letters gone", func() bool {
		dls, err := subscription.ListDeadLetters(t.Context(), e.js, subscription.DeadLetterConfig{}, "parking")
		return err == nil && len(dls) == 0
	})
	kv, err := e.js.KeyValue(t.Context(), subscription.ParkedBucket)
	require.NoError(t, err)
	eventually(t, "the stream unparked", func() bool {
		lister, err := kv.ListKeysFiltered(t.Context(), "parking.*")
		if err != nil {
			return false
		}
		n := 0
		for range lister.Keys() {
			n++
		}
		return n == 0
	})
	e.publish(t, "order-bad", placed) // version 7 flows again
	eventually(t, "order-bad v7", func() bool { return log.version("order-bad") == 7 })
	log.mu.Lock()
	defer log.mu.Unlock()
	require.Empty(t, log.violations)
}

// Ordered groups read a partitioned mirror, never touching the events stream's config,
// and members must agree on the partition count.
func TestOrderedGroupConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	log := newOrderLog()
	run(t, newSub(t, e.js, orderedCfg("cfg", log.handler(0, nil))))
	e.publish(t, "order-1", placed)
	eventually(t, "the event", func() bool { return log.count() == 1 })
	s, err := e.js.Stream(t.Context(), subscription.PartitionedStream(subscription.DefaultStream, 6))
	require.NoError(t, err)
	require.Equal(t, subscription.DefaultStream, s.CachedInfo().Config.Mirror.Name)
	events, err := e.js.Stream(t.Context(), subscription.DefaultStream)
	require.NoError(t, err)
	require.Empty(t, events.CachedInfo().Config.SubjectTransform)

	// NewOnly: every partition starts where the group began, whenever it is first claimed.
	fresh := newOrderLog()
	cfg := orderedCfg("fresh", fresh.handler(0, nil))
	cfg.Start = subscription.NewOnly()
	run(t, newSub(t, e.js, cfg))
	eventually(t, "the group's start", func() bool {
		kv, err := e.js.KeyValue(t.Context(), subscription.PartitionBucket)
		if err != nil {
			return false
		}
		_, err = kv.Get(t.Context(), "fresh.start")
		return err == nil
	})
	for s := range 6 {
		e.publish(t, fmt.Sprintf("order-%d", s+2), placed)
	}
	eventually(t, "the new events", func() bool { return fresh.count() == 6 })
	fresh.mu.Lock()
	require.Empty(t, fresh.violations)
	require.NotContains(t, fresh.last, "order-1", "an event from before the group began")
	fresh.mu.Unlock()

	cfg = orderedCfg("cfg", log.handler(1, nil))
	cfg.Partitions = 4
	err = newSub(t, e.js, cfg).Run(t.Context())
	require.ErrorContains(t, err, "Config.Partitions")

	h := func(context.Context, subscription.Event) error { return nil }
	_, err = subscription.New(e.js, subscription.Config{Ordered: true, Handler: h})
	require.ErrorContains(t, err, "Config.Ordered")
	_, err = subscription.New(e.js, subscription.Config{Ordered: true, Group: "g", Partitions: 2000, PartitionLease: time.Millisecond,
		BatchHandler: func(context.Context, []subscription.Event) error { return nil }})
	for _, f := range []string{"Config.Partitions", "Config.PartitionLease", "Config.BatchHandler"} {
		require.ErrorContains(t, err, f)
	}
}

// A handler cut off by the shutdown (DrainTimeout after Run's context) has not failed its
// event: with MaxDeliver 1 nothing is dead-lettered or parked. In an ordered member the
// events of the other partitions, fetched and waiting for the handler, are returned
// without reaching it. The next member gets every event at once, not after AckWait.
func TestShutdownReturnsEventsWithoutFailingThem(t *testing.T) {
	t.Parallel()
	for _, ordered := range []bool{false, true} {
		t.Run(fmt.Sprintf("ordered=%v", ordered), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			group := fmt.Sprintf("shutdown-%v", ordered)
			reg := prometheus.NewRegistry()
			var (
				mu       sync.Mutex
				stopping bool
				late     []string
			)
			entered := make(chan struct{}, 1)
			blocking := func(ctx context.Context, ev subscription.Event) error {
				mu.Lock()
				if stopping {
					late = append(late, fmt.Sprintf("%s/%d", ev.StreamID, ev.Version))
				}
				mu.Unlock()
				select {
				case entered <- struct{}{}:
				default:
				}
				<-ctx.Done() // a long job that honours its context
				return ctx.Err()
			}
			cfg := subscription.Config{Group: group, Handler: blocking, MaxDeliver: 1, DrainTimeout: 200 * time.Millisecond,
				AckWait: time.Minute, Registerer: reg}
			if ordered {
				cfg.Ordered, cfg.Partitions, cfg.PartitionLease = true, 4, time.Second
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- newSub(t, e.js, cfg).Run(ctx) }()
			for i := range 8 {
				e.publish(t, fmt.Sprintf("order-%d", i), placed)
			}
			<-entered
			if ordered { // every partition's worker holds its first event, waiting for the handler
				name, err := subscription.EnsurePartitionedStream(t.Context(), e.js, subscription.DefaultStream, "pgjet.events", 4)
				require.NoError(t, err)
				eventually(t, "a waiting event in every partition", func() bool {
					stream, err := e.js.Stream(t.Context(), name)
					if err != nil {
						return false
					}
					waiting, n := 0, 0
					for info := range stream.ListConsumers(t.Context()).Info() {
						n++
						if info.NumAckPending == 1 || info.NumPending == 0 {
							waiting++
						}
					}
					return n == 4 && waiting == 4
				})
			}
			mu.Lock()
			stopping = true
			mu.Unlock()
			cancel()
			require.NoError(t, <-done)
			mu.Lock()
			require.Empty(t, late, "handler calls begun after Run's context was cancelled")
			mu.Unlock()
			dls, err := subscription.ListDeadLetters(t.Context(), e.js, subscription.DeadLetterConfig{}, group)
			require.NoError(t, err)
			require.Empty(t, dls)
			require.Zero(t, metric(t, reg, "pgjet_subscription_events_total", map[string]string{"result": "failed"}))

			var next recorder
			cfg.Handler, cfg.Registerer = next.handle, nil
			run(t, newSub(t, e.js, cfg))
			eventually(t, "every event", func() bool { return next.len() == 8 })
		})
	}
}

// A member stopped while its handler replays a parked stream lets the handler finish and
// deletes the dead letter it handled, as it acknowledges a live event: the next owner goes
// on with the rest of the stream and does not hand the event over again.
func TestParkedReplayStoppedMidwayRepeatsNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	log := newOrderLog()
	var healed, blocked atomic.Bool
	entered, release := make(chan struct{}), make(chan struct{})
	poison := func(ev subscription.Event) error {
		if ev.StreamID != "order-bad" || ev.Version != 1 {
			return nil
		}
		if !healed.Load() {
			return errors.New("not yet")
		}
		if blocked.CompareAndSwap(false, true) {
			close(entered)
			<-release
		}
		return nil
	}
	cfg := orderedCfg("replay-stop", log.handler(0, poison))
	cfg.Partitions, cfg.MaxDeliver = 1, 1
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- newSub(t, e.js, cfg).Run(ctx) }()
	e.publish(t, "order-bad", placed) // parks the stream
	e.publish(t, "order-bad", placed) // held
	var dls []subscription.DeadLetter
	eventually(t, "the parked and the held event", func() bool {
		var err error
		dls, err = subscription.ListDeadLetters(t.Context(), e.js, subscription.DeadLetterConfig{}, "replay-stop")
		return err == nil && len(dls) == 2
	})
	healed.Store(true)
	_, err := subscription.Redrive(t.Context(), e.js, subscription.DeadLetterConfig{}, dls[0].Sequence)
	require.NoError(t, err)
	<-entered // the replay of version 1 is in the handler
	cancel()
	close(release)
	require.NoError(t, <-done)
	left, err := subscription.ListDeadLetters(t.Context(), e.js, subscription.DeadLetterConfig{}, "replay-stop")
	require.NoError(t, err)
	require.Equal(t, []int64{2}, func() (vs []int64) {
		for _, dl := range left {
			vs = append(vs, dl.Version)
		}
		return vs
	}(), "the handled dead letter is deleted")

	cfg.Handler = log.handler(1, poison)
	run(t, newSub(t, e.js, cfg))
	eventually(t, "the rest of the stream", func() bool { return log.version("order-bad") == 2 })
	log.mu.Lock()
	defer log.mu.Unlock()
	require.Empty(t, log.violations)
	require.Zero(t, log.repeats, "an event handed over twice")
}

// A member whose lease on a partition ran out while its handler replayed a parked stream
// (its network is cut, so it cannot renew) hands no further event of the replay to its
// handler: the partition's next owner replays the stream, and two members handing out one
// stream's events at once would break its order.
func TestParkedReplayStopsWhenTheLeaseRunsOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var (
		mu     sync.Mutex
		calls  = map[string][]int64{} // member -> versions of order-bad handed to it
		healed atomic.Bool
		held   atomic.Bool
	)
	entered, release := make(chan struct{}), make(chan struct{})
	handler := func(member string) subscription.Handler {
		return func(_ context.Context, ev subscription.Event) error {
			if ev.StreamID != "order-bad" {
				return nil
			}
			if ev.Version == 1 && !healed.Load() {
				return errors.New("not yet")
			}
			mu.Lock()
			calls[member] = append(calls[member], ev.Version)
			mu.Unlock()
			if member == "a" && held.CompareAndSwap(false, true) {
				close(entered)
				<-release
			}
			return nil
		}
	}
	versions := func(member string) []int64 {
		mu.Lock()
		defer mu.Unlock()
		return append([]int64(nil), calls[member]...)
	}
	cfg := orderedCfg("lease-replay", handler("a"))
	cfg.Partitions, cfg.MaxDeliver, cfg.DrainTimeout = 1, 1, time.Second
	logs, observed := observer.New(zap.WarnLevel)
	cfg.Logger = zap.New(logs)

	p := netproxy.New(t, strings.TrimPrefix(e.srv.ClientURL(), "nats://"), netproxy.Config{})
	aConn, err := nats.Connect("nats://"+p.Addr(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(aConn.Close)
	aJS, err := jetstream.New(aConn)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- newSub(t, aJS, cfg).Run(ctx) }()

	for range 3 {
		e.publish(t, "order-bad", placed) // 1 parks the stream, 2 and 3 are held
	}
	var dls []subscription.DeadLetter
	eventually(t, "the parked and the held events", func() bool {
		dls, err = subscription.ListDeadLetters(t.Context(), e.js, subscription.DeadLetterConfig{}, "lease-replay")
		return err == nil && len(dls) == 3
	})
	healed.Store(true)
	_, err = subscription.Redrive(t.Context(), e.js, subscription.DeadLetterConfig{}, dls[0].Sequence)
	require.NoError(t, err)
	<-entered // member a replays version 1
	p.Cut()   // and can renew nothing from now on

	cfg.Handler, cfg.Logger = handler("b"), nil
	run(t, newSub(t, e.js, cfg)) // takes the partition once a's lease has run out
	eventually(t, "member b to replay the stream", func() bool { return slices.Equal(versions("b"), []int64{1, 2, 3}) })

	close(release)
	// Member a's handler returns; deleting the dead letter fails for want of a connection.
	// Then a must not go on with the replay.
	eventually(t, "member a past the first event", func() bool {
		return observed.FilterMessage("deleting a replayed dead letter failed").Len() > 0 ||
			observed.FilterMessage("replay of a parked stream left to the partition's next owner").Len() > 0
	})
	p.Restore(t)
	cancel()
	require.NoError(t, <-done)
	require.Equal(t, []int64{1}, versions("a"), "events handed to a member whose lease had run out")
}

// An ordered group whose partitioned mirror is deleted under it (by an operator, or lost
// with a server's store) makes it again and goes on where each partition left off, rather
// than retrying its partitions' consumers on a stream that no member will ever create.
func TestOrderedGroupRecoversFromADeletedMirror(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	log := newOrderLog()
	cfg := orderedCfg("mirror-lost", log.handler(0, nil))
	cfg.Partitions = 2
	run(t, newSub(t, e.js, cfg))
	const streams = 4
	published := 0
	publishRound := func() {
		for s := range streams {
			e.publish(t, fmt.Sprintf("order-%d", s), placed)
			published++
		}
	}
	for range 3 {
		publishRound()
	}
	eventually(t, "the first rounds", func() bool { return log.count() == published })
	require.NoError(t, e.js.DeleteStream(t.Context(), subscription.PartitionedStream(subscription.DefaultStream, 2)))
	for range 3 {
		publishRound()
	}
	eventually(t, "every event", func() bool { return log.count() == published })
	log.mu.Lock()
	defer log.mu.Unlock()
	require.Empty(t, log.violations)
	require.Zero(t, log.repeats)
}

// troubleshooting.md's procedure for an ordered group after the events stream was
// re-created: stop the members, delete the partitioned mirror, start them. The first
// member makes the mirror anew from the new stream, and the group handles every event
// of it, in order.
func TestOrderedGroupAfterARecreatedStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	log := newOrderLog()
	cfg := orderedCfg("recreated", log.handler(0, nil))
	cfg.Partitions = 2
	stop := run(t, newSub(t, e.js, cfg))
	publishRound := func(prefix string) {
		for s := range 4 {
			e.publish(t, fmt.Sprintf("%s-%d", prefix, s), placed)
		}
	}
	for range 3 {
		publishRound("order")
	}
	eventually(t, "the old stream's events", func() bool { return log.count() == 12 })
	stop()

	require.NoError(t, e.js.DeleteStream(t.Context(), subscription.DefaultStream))
	_, err := relay.EnsureStream(t.Context(), e.js, relay.StreamConfig{})
	require.NoError(t, err)
	require.NoError(t, e.js.DeleteStream(t.Context(), subscription.PartitionedStream(subscription.DefaultStream, 2)))
	for range 2 {
		publishRound("fresh")
	}
	run(t, newSub(t, e.js, cfg))
	eventually(t, "the new stream's events", func() bool { return log.count() == 20 })
	log.mu.Lock()
	defer log.mu.Unlock()
	require.Empty(t, log.violations)
	require.Zero(t, log.repeats)
}
