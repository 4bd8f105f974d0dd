package subscription_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"github.com/synadia-io/orbit.go/jetstreamext"
	"go.uber.org/zap/zaptest"

	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/pgtest"
	"github.com/pgjet/pgjet/internal/relay"
	"github.com/pgjet/pgjet/subscription"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const (
	placed    = "pgjet.demo.order.OrderPlaced"
	shipped   = "pgjet.demo.order.OrderShipped"
	captured  = "pgjet.demo.payment.PaymentCaptured"
	cancelled = "pgjet.demo.order.OrderCancelled"
)

// A single handler sees every event once, in stream order, with the contract headers.
func TestHandlerSeesEveryEventWithHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := range 30 {
		e.publish(t, fmt.Sprintf("order-%d", i%3), placed)
	}
	var rec recorder
	s := newSub(t, e.js, subscription.Config{Group: "all", Handler: rec.handle})
	run(t, s)
	eventually(t, "30 events", func() bool { return rec.len() == 30 })

	evs := rec.all()
	for i, ev := range evs {
		require.Equal(t, uint64(i+1), ev.Sequence)
		require.Equal(t, int64(i+1), ev.Position)
		require.Equal(t, int64(i/3+1), ev.Version, "event %d", i)
		require.Equal(t, fmt.Sprintf("order-%d", i%3), ev.StreamID)
		require.Equal(t, placed, ev.Type)
		require.Equal(t, 7, ev.SchemaID)
		require.Equal(t, uint64(1), ev.Delivered)
		require.NotEmpty(t, ev.ID)
		require.NotEmpty(t, ev.Traceparent)
		require.WithinDuration(t, time.Now(), ev.Time, time.Minute)
		require.Equal(t, []byte{0, 0, 0, 0, 7, 0}, ev.Raw)
		require.Nil(t, ev.Data)
	}
	info, err := e.js.Consumer(t.Context(), subscription.DefaultStream, "all")
	require.NoError(t, err)
	eventually(t, "all acknowledged", func() bool {
		ci, err := info.Info(t.Context())
		return err == nil && ci.AckFloor.Stream == 30 && ci.NumAckPending == 0
	})
}

// Each kind of filter, and several at once, selects exactly the matching events.
func TestFilters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	type pub struct{ stream, typ string }
	pubs := []pub{
		{"order-1", placed}, {"order-1", shipped}, {"order-2", placed}, {"order-2", cancelled},
		{"payment-1", captured}, {"payment-2", captured}, {"order-1", cancelled}, {"order 7.1", placed},
	}
	for _, p := range pubs {
		e.publish(t, p.stream, p.typ)
	}
	tests := []struct {
		name    string
		filters []subscription.Filter
		want    []string
	}{
		{"none", nil, []string{"order-1/1", "order-1/2", "order-2/1", "order-2/2", "payment-1/1", "payment-2/1", "order-1/3", "order 7.1/1"}},
		{"category", []subscription.Filter{{Category: "payment"}}, []string{"payment-1/1", "payment-2/1"}},
		{"type", []subscription.Filter{{Type: placed}}, []string{"order-1/1", "order-2/1", "order 7.1/1"}},
		{"stream", []subscription.Filter{{Stream: "order-1"}}, []string{"order-1/1", "order-1/2", "order-1/3"}},
		{"escaped stream", []subscription.Filter{{Stream: "order 7.1"}}, []string{"order 7.1/1"}},
		{"category and type", []subscription.Filter{{Category: "order", Type: cancelled}}, []string{"order-2/2", "order-1/3"}},
		{"stream and type", []subscription.Filter{{Stream: "order-1", Type: shipped}}, []string{"order-1/2"}},
		{"several", []subscription.Filter{{Stream: "order-2"}, {Type: captured}}, []string{"order-2/1", "order-2/2", "payment-1/1", "payment-2/1"}},
		{"overlapping", []subscription.Filter{{Category: "payment"}, {Stream: "payment-2"}, {Category: "payment", Type: captured}}, []string{"payment-1/1", "payment-2/1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rec recorder
			s := newSub(t, e.js, subscription.Config{Filters: tt.filters, Handler: rec.handle})
			stop := run(t, s)
			eventually(t, "the matching events", func() bool { return rec.len() >= len(tt.want) })
			// Nothing else arrives: a marker published after is the next event seen, if any.
			stop()
			require.Equal(t, tt.want, keys(rec.all()))
		})
	}
}

// The predicate's rejections are acknowledged and counted, never handled.
func TestPredicateSkipsAndCounts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := range 10 {
		e.publish(t, fmt.Sprintf("order-%d", i), placed)
	}
	reg := prometheus.NewRegistry()
	var rec recorder
	s := newSub(t, e.js, subscription.Config{
		Group: "even", Handler: rec.handle, Registerer: reg,
		Predicate: func(ev subscription.Event) bool { return ev.Sequence%2 == 0 },
	})
	run(t, s)
	eventually(t, "every event acknowledged", func() bool {
		cons, err := e.js.Consumer(t.Context(), subscription.DefaultStream, "even")
		return err == nil && cons.CachedInfo().AckFloor.Stream == 10
	})
	require.Len(t, rec.all(), 5)
	for _, ev := range rec.all() {
		require.Zero(t, ev.Sequence%2)
	}
	require.Equal(t, 5.0, metric(t, reg, "pgjet_subscription_events_total", map[string]string{"group": "even", "result": "skipped"}))
	require.Equal(t, 5.0, metric(t, reg, "pgjet_subscription_events_total", map[string]string{"group": "even", "result": "handled"}))
}

// Every start position; and a durable consumer resumes where it was, ignoring Start.
func TestStartPositions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for range 5 {
		e.publish(t, "order-1", placed)
	}
	stream, err := e.js.Stream(t.Context(), subscription.DefaultStream)
	require.NoError(t, err)
	fourth, err := stream.GetMsg(t.Context(), 4)
	require.NoError(t, err)

	seqs := func(r *recorder) []uint64 {
		var out []uint64
		for _, ev := range r.all() {
			out = append(out, ev.Sequence)
		}
		return out
	}
	for _, tt := range []struct {
		name  string
		start subscription.Start
		want  []uint64
	}{
		{"beginning", subscription.FromBeginning(), []uint64{1, 2, 3, 4, 5}},
		{"zero value", subscription.Start{}, []uint64{1, 2, 3, 4, 5}},
		{"sequence", subscription.FromSequence(3), []uint64{3, 4, 5}},
		{"time", subscription.FromTime(fourth.Time), []uint64{4, 5}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var rec recorder
			stop := run(t, newSub(t, e.js, subscription.Config{Start: tt.start, Handler: rec.handle}))
			eventually(t, "the events", func() bool { return rec.len() >= len(tt.want) })
			stop()
			require.Equal(t, tt.want, seqs(&rec))
		})
	}

	t.Run("new only, then durable resume", func(t *testing.T) {
		var rec recorder
		cfg := subscription.Config{Group: "fresh", Start: subscription.NewOnly(), Handler: rec.handle}
		stop := run(t, newSub(t, e.js, cfg))
		eventually(t, "the consumer", func() bool {
			_, err := e.js.Consumer(t.Context(), subscription.DefaultStream, "fresh")
			return err == nil
		})
		e.publish(t, "order-1", placed) // 6
		eventually(t, "event 6", func() bool { return rec.len() == 1 })
		stop()
		e.publish(t, "order-1", placed)          // 7, while the group is away
		cfg.Start = subscription.FromSequence(1) // ignored: the durable consumer exists
		run(t, newSub(t, e.js, cfg))
		eventually(t, "event 7", func() bool { return rec.len() == 2 })
		require.Equal(t, []uint64{6, 7}, seqs(&rec))
	})
}

// Events published while a subscription catches up on history are seen exactly once, in
// order, across the seam between the backlog and live delivery.
func TestCatchUpToLiveSeam(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const backlog, live = 300, 300
	for i := range backlog {
		e.publish(t, fmt.Sprintf("order-%d", i%7), placed)
	}
	var rec recorder
	run(t, newSub(t, e.js, subscription.Config{Group: "seam", Handler: rec.handle}))
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range live {
			e.publish(t, fmt.Sprintf("order-%d", i%7), placed)
		}
	})
	wg.Wait()
	eventually(t, "every event", func() bool { return rec.len() >= backlog+live })
	evs := rec.all()
	require.Len(t, evs, backlog+live)
	for i, ev := range evs {
		require.Equal(t, uint64(i+1), ev.Sequence, "no gap or duplicate at %d", i)
	}
}

// Batches fill up to BatchSize and wait at most BatchWait for stragglers.
func TestBatches(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for range 25 {
		e.publish(t, "order-1", placed)
	}
	var mu sync.Mutex
	var sizes []int
	var all []uint64
	handler := func(_ context.Context, evs []subscription.Event) error {
		mu.Lock()
		defer mu.Unlock()
		sizes = append(sizes, len(evs))
		for _, ev := range evs {
			all = append(all, ev.Sequence)
		}
		return nil
	}
	run(t, newSub(t, e.js, subscription.Config{Group: "batches", BatchHandler: handler, BatchSize: 10, BatchWait: 200 * time.Millisecond}))
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(all) }
	eventually(t, "25 events", func() bool { return count() == 25 })
	e.publish(t, "order-1", placed) // alone: handed over after BatchWait
	eventually(t, "26 events", func() bool { return count() == 26 })
	mu.Lock()
	defer mu.Unlock()
	for _, n := range sizes {
		require.LessOrEqual(t, n, 10)
	}
	require.Equal(t, 1, sizes[len(sizes)-1])
	require.Len(t, sizes, 4, "sizes %v: a backlog fills whole batches", sizes)
	for i, seq := range all {
		require.Equal(t, uint64(i+1), seq)
	}
}

// A failing event is naked with backoff, redelivered, dead-lettered after MaxDeliver with
// its reason, and others keep flowing; a re-drive delivers it to its group again and other
// groups skip it.
func TestNakBackoffDeadLetterAndRedrive(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	var (
		mu         sync.Mutex
		deliveries []uint64
		ok         []uint64
		healed     atomic.Bool
	)
	handler := func(_ context.Context, ev subscription.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if ev.StreamID == "order-bad" && !healed.Load() {
			deliveries = append(deliveries, ev.Delivered)
			return errors.New("boom")
		}
		ok = append(ok, ev.Sequence)
		return nil
	}
	var other recorder
	run(t, newSub(t, e.js, subscription.Config{Group: "other", Handler: other.handle}))
	run(t, newSub(t, e.js, subscription.Config{Group: "fragile", Handler: handler, MaxDeliver: 3, Registerer: reg}))
	e.publish(t, "order-1", placed)
	badSeq := e.publish(t, "order-bad", placed)
	e.publish(t, "order-2", placed)

	var dls []subscription.DeadLetter
	eventually(t, "a dead letter", func() bool {
		var err error
		dls, err = subscription.ListDeadLetters(t.Context(), e.js, subscription.DeadLetterConfig{}, "fragile")
		return err == nil && len(dls) == 1
	})
	mu.Lock()
	require.Equal(t, []uint64{1, 2, 3}, deliveries)
	require.ElementsMatch(t, []uint64{1, 3}, ok)
	mu.Unlock()
	dl := dls[0]
	require.Equal(t, "fragile", dl.Group)
	require.Equal(t, subscription.DefaultStream, dl.Stream)
	require.Equal(t, badSeq, dl.StreamSequence)
	require.Equal(t, "order-bad", dl.StreamID)
	require.Equal(t, int64(1), dl.Version)
	require.Equal(t, "boom", dl.Reason)
	require.Equal(t, 3, dl.Deliveries)
	require.Equal(t, "pgjet.events.order.pgjet:demo:order:OrderPlaced.order-bad", dl.Subject)
	eventually(t, "metrics", func() bool {
		return metric(t, reg, "pgjet_subscription_dead_letters_total", nil) == 1 &&
			metric(t, reg, "pgjet_subscription_redeliveries_total", nil) == 2
	})
	all, err := subscription.ListDeadLetters(t.Context(), e.js, subscription.DeadLetterConfig{}, "")
	require.NoError(t, err)
	require.Len(t, all, 1)
	none, err := subscription.ListDeadLetters(t.Context(), e.js, subscription.DeadLetterConfig{}, "other")
	require.NoError(t, err)
	require.Empty(t, none)

	eventually(t, "the other group", func() bool { return other.len() == 3 })
	healed.Store(true)
	_, err = subscription.Redrive(t.Context(), e.js, subscription.DeadLetterConfig{}, dl.Sequence)
	require.NoError(t, err)
	eventually(t, "the re-driven event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ok) == 3
	})
	left, err := subscription.ListDeadLetters(t.Context(), e.js, subscription.DeadLetterConfig{}, "fragile")
	require.NoError(t, err)
	require.Empty(t, left)
	// The other group acknowledged the re-driven copy without handling it.
	cons, err := e.js.Consumer(t.Context(), subscription.DefaultStream, "other")
	require.NoError(t, err)
	eventually(t, "the other group to pass the copy", func() bool {
		ci, err := cons.Info(t.Context())
		return err == nil && ci.AckFloor.Stream == 4
	})
	require.Equal(t, 3, other.len())
}

// Members of a group share the events; a member stopped mid-stream loses none and
// causes none to be handled twice.
func TestGroupSharesWorkWhenMemberStops(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const total = 600
	var (
		mu      sync.Mutex
		seen    = map[uint64]int{}
		members [3]atomic.Int64
	)
	member := func(i int) subscription.Handler {
		return func(ctx context.Context, ev subscription.Event) error {
			mu.Lock()
			seen[ev.Sequence]++
			mu.Unlock()
			members[i].Add(1)
			return nil
		}
	}
	stops := make([]func(), 3)
	for i := range 3 {
		stops[i] = run(t, newSub(t, e.js, subscription.Config{Group: "workers", Handler: member(i), AckWait: 5 * time.Second}))
	}
	waitMembers(t, e.js, "workers", 3)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range total {
			e.publish(t, fmt.Sprintf("order-%d", i%11), placed)
		}
	})
	eventually(t, "member 0 at work", func() bool { return members[0].Load() >= 20 })
	stops[0]()
	wg.Wait()
	eventually(t, "every event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == total
	})
	mu.Lock()
	defer mu.Unlock()
	for seq, n := range seen {
		require.Equal(t, 1, n, "sequence %d handled %d times", seq, n)
	}
	require.Positive(t, members[1].Load())
	require.Positive(t, members[2].Load())
}

// A restart of the NATS server is survived: the subscription resumes by itself and
// nothing is lost.
func TestRecoversFromServerRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	var rec recorder
	run(t, newSub(t, e.js, subscription.Config{Group: "restart", Handler: rec.handle, Registerer: reg, Heartbeat: 500 * time.Millisecond}))
	for range 10 {
		e.publish(t, "order-1", placed)
	}
	eventually(t, "10 events", func() bool { return rec.len() == 10 })
	require.NoError(t, e.srv.Restart())
	for range 10 {
		e.publish(t, "order-1", placed)
	}
	eventually(t, "20 events", func() bool { return rec.len() >= 20 })
	seqs := map[uint64]bool{}
	for _, ev := range rec.all() {
		seqs[ev.Sequence] = true
	}
	require.Len(t, seqs, 20)
}

// A deleted consumer is recreated where the group's acknowledgements left off: nothing is
// lost and nothing handled is handled again.
func TestRecoversFromDeletedConsumer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	var rec recorder
	run(t, newSub(t, e.js, subscription.Config{Group: "deleted", Handler: rec.handle, Registerer: reg, Heartbeat: 500 * time.Millisecond, Logger: zaptest.NewLogger(t)}))
	for range 50 {
		e.publish(t, "order-1", placed)
	}
	eventually(t, "50 events", func() bool { return rec.len() == 50 })
	require.NoError(t, e.js.DeleteConsumer(t.Context(), subscription.DefaultStream, "deleted"))
	eventually(t, "a recovery", func() bool { return metric(t, reg, "pgjet_subscription_recoveries_total", nil) >= 1 })
	for range 50 {
		e.publish(t, "order-1", placed)
	}
	eventually(t, "100 events", func() bool { return rec.len() >= 100 })
	evs := rec.all()
	require.Len(t, evs, 100)
	for i, ev := range evs {
		require.Equal(t, uint64(i+1), ev.Sequence)
	}
}

// The events stream is deleted and created again under a running member (then filled
// again, as verify -repair or new appends do). The member's acknowledgement floor and the
// sequences it handled belong to the old stream: a member that re-created its consumer
// after its old floor skipped the new stream's first 20 events. It must start the new
// consumer where Config.Start says (the beginning) and handle all of them.
func TestRecreatedStreamIsReadFromItsStart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	var rec recorder
	run(t, newSub(t, e.js, subscription.Config{Group: "recreated", Handler: rec.handle, Registerer: reg, Logger: zaptest.NewLogger(t)}))
	for range 20 {
		e.publish(t, "order-1", placed)
	}
	eventually(t, "20 events", func() bool { return rec.len() == 20 })

	require.NoError(t, e.js.DeleteStream(t.Context(), subscription.DefaultStream))
	_, err := relay.EnsureStream(t.Context(), e.js, relay.StreamConfig{})
	require.NoError(t, err)
	for range 25 {
		e.publish(t, "order-2", placed)
	}
	eventually(t, "the new stream's 25 events", func() bool { return rec.len() == 45 })
	time.Sleep(200 * time.Millisecond)
	evs := rec.all()
	require.Len(t, evs, 45, "nothing handled twice")
	for i, ev := range evs[20:] {
		require.Equal(t, "order-2", ev.StreamID)
		require.Equal(t, uint64(i+1), ev.Sequence)
	}
}

// Cancelling Run lets the in-flight handler finish and acknowledges its event; prefetched
// events go back to the server at once.
func TestCancellationDrainsInFlightHandler(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for range 5 {
		e.publish(t, "order-1", placed)
	}
	entered := make(chan struct{})
	release := make(chan struct{})
	var handled atomic.Int64
	var handlerCtxErr atomic.Value
	s := newSub(t, e.js, subscription.Config{Group: "drain", AckWait: time.Minute, Handler: func(ctx context.Context, ev subscription.Event) error {
		if ev.Sequence == 1 {
			close(entered)
			<-release
			if err := ctx.Err(); err != nil {
				handlerCtxErr.Store(err)
			}
		}
		handled.Add(1)
		return nil
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	<-entered
	cancel()
	select {
	case <-done:
		t.Fatal("Run returned while its handler was busy")
	default:
	}
	close(release)
	require.NoError(t, <-done)
	require.Equal(t, int64(1), handled.Load())
	require.Nil(t, handlerCtxErr.Load(), "the handler's context outlives Run's by DrainTimeout")
	cons, err := e.js.Consumer(t.Context(), subscription.DefaultStream, "drain")
	require.NoError(t, err)
	ci, err := cons.Info(t.Context())
	require.NoError(t, err)
	require.Equal(t, uint64(1), ci.AckFloor.Stream)
	// Prefetched events were returned: the next member gets them long before AckWait.
	var next recorder
	run(t, newSub(t, e.js, subscription.Config{Group: "drain", AckWait: time.Minute, Handler: next.handle}))
	eventually(t, "the prefetched events", func() bool { return next.len() == 4 })
}

// An ephemeral subscription's consumer is removed by the server after InactiveThreshold.
func TestEphemeralConsumerIsRemoved(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var rec recorder
	s := newSub(t, e.js, subscription.Config{Handler: rec.handle, InactiveThreshold: 300 * time.Millisecond})
	stop := run(t, s)
	e.publish(t, "order-1", placed)
	eventually(t, "the event", func() bool { return rec.len() == 1 })
	stop()
	eventually(t, "the consumer to go", func() bool {
		_, err := e.js.Consumer(t.Context(), subscription.DefaultStream, s.ConsumerName())
		return errors.Is(err, jetstream.ErrConsumerNotFound)
	})
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	h := func(context.Context, subscription.Event) error { return nil }
	for _, tt := range []struct {
		name string
		cfg  subscription.Config
		want []string
	}{
		{"no handler", subscription.Config{}, []string{"Config.Handler"}},
		{"both handlers", subscription.Config{Handler: h, BatchHandler: func(context.Context, []subscription.Event) error { return nil }}, []string{"Config.Handler"}},
		{"bad group", subscription.Config{Handler: h, Group: "a.b"}, []string{"Config.Group"}},
		{"bad filters", subscription.Config{Handler: h, Filters: []subscription.Filter{{Category: "a-b"}, {Type: "not a type"}, {Category: "order", Stream: "payment-1"}}},
			[]string{"Config.Filters[0]", "Config.Filters[1]", "Config.Filters[2]"}},
		{"bad prefix and sequence", subscription.Config{Handler: h, Prefix: "a.*", Start: subscription.FromSequence(0)}, []string{"Config.Prefix", "Config.Start"}},
		{"dead letters inside events", subscription.Config{Handler: h, DeadLetterPrefix: "pgjet.events.dead"}, []string{"Config.DeadLetterPrefix"}},
		{"negative durations", subscription.Config{Handler: h, InactiveThreshold: -1, BatchWait: -1, AckWait: -1, BackoffMin: -1, DrainTimeout: -1, RetryMax: -time.Second},
			[]string{"Config.InactiveThreshold", "Config.BatchWait", "Config.AckWait", "Config.BackoffMin", "Config.DrainTimeout", "Config.RetryMax: -1s is negative"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := subscription.New(nil, tt.cfg)
			require.Error(t, err)
			for _, w := range tt.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
	s, err := subscription.New(nil, subscription.Config{Handler: h})
	require.Nil(t, s)
	require.ErrorContains(t, err, "JetStream is nil")
}

// A dead-letter stream that does not take the dead letters' subjects (an operator's, or a
// changed DeadLetterPrefix) stops Run at the start: every dead letter would fail, and its
// event be redelivered for ever.
func TestDeadLetterStreamMustTakeTheDeadLetters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, err := e.js.CreateStream(t.Context(), jetstream.StreamConfig{Name: subscription.DefaultDeadLetterStream, Subjects: []string{"elsewhere.>"}})
	require.NoError(t, err)
	s := newSub(t, e.js, subscription.Config{Group: "mismatch", Handler: func(context.Context, subscription.Event) error { return nil }})
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	err = s.Run(ctx)
	require.ErrorContains(t, err, `takes [elsewhere.>], not the dead letters' subjects pgjet.deadletter.>`)

	// One that takes them, limits of its own and all, is used as it is.
	_, err = e.js.UpdateStream(t.Context(), jetstream.StreamConfig{Name: subscription.DefaultDeadLetterStream, Subjects: []string{"elsewhere.>", "pgjet.deadletter.>"}, MaxMsgs: 1000})
	require.NoError(t, err)
	require.NoError(t, subscription.EnsureDeadLetterStream(t.Context(), e.js, subscription.DeadLetterConfig{}))
}

// A member whose connection dies mid-stream loses no event: what it had in flight goes to
// the other members after AckWait.
func TestGroupSurvivesMemberConnectionLoss(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const total = 300
	var (
		mu   sync.Mutex
		seen = map[uint64]bool{}
		vict atomic.Int64
	)
	handler := func(victim bool) subscription.Handler {
		return func(ctx context.Context, ev subscription.Event) error {
			if victim {
				vict.Add(1)
			}
			mu.Lock()
			seen[ev.Sequence] = true
			mu.Unlock()
			return nil
		}
	}
	victimConn, victimJS := natstest.Connect(t, e.srv)
	cfg := subscription.Config{Group: "fragile-members", AckWait: time.Second}
	cfg.Handler = handler(true)
	victimDone := make(chan error, 1)
	victim := newSub(t, victimJS, cfg)
	go func() { victimDone <- victim.Run(context.Background()) }()
	cfg.Handler = handler(false)
	run(t, newSub(t, e.js, cfg))
	waitMembers(t, e.js, "fragile-members", 2)
	// Publish until the victim is busy, then kill its connection and publish more.
	published := 0
	deadline := time.Now().Add(waitTimeout)
	for vict.Load() < 10 {
		require.True(t, time.Now().Before(deadline), "the victim never got to work")
		e.publish(t, fmt.Sprintf("order-%d", published%5), placed)
		published++
	}
	victimConn.Close()
	require.ErrorIs(t, <-victimDone, nats.ErrConnectionClosed, "a closed connection ends Run")
	for range total {
		e.publish(t, fmt.Sprintf("order-%d", published%5), placed)
		published++
	}
	eventually(t, "every event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == published
	})
}

// panickingDecoder panics on every payload, as a decoder (or a user's upcaster inside it)
// may on data it does not expect.
type panickingDecoder struct{}

func (panickingDecoder) Decode(context.Context, []byte, string) (map[string]any, error) {
	panic("upcaster: field note is not a string")
}

// A decoder that panics on a payload fails that event like a decoding error (naked, then
// dead-lettered with the reason) instead of crashing the process, as a handler's panic does.
func TestDecoderPanicIsAFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.publish(t, "order-1", placed)
	var rec recorder
	s := newSub(t, e.js, subscription.Config{Group: "panicky", Handler: rec.handle, Decoder: panickingDecoder{}, MaxDeliver: 2})
	dls := runUntilDeadLettered(t, e, s, "panicky", func() bool { return true })
	require.Contains(t, dls[0].Reason, "field note is not a string")
	require.Equal(t, 2, dls[0].Deliveries)
	require.Zero(t, rec.len())
}

// runUntilDeadLettered runs s until group has a dead letter and also done holds, failing
// the test if Run panics or ends first, then stops it and checks that it ended cleanly.
func runUntilDeadLettered(t *testing.T, e *env, s *subscription.Subscriber, group string, done func() bool) []subscription.DeadLetter {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ended := make(chan any, 1)
	go func() {
		defer func() { ended <- recover() }()
		_ = s.Run(ctx)
	}()
	var dls []subscription.DeadLetter
	deadline := time.Now().Add(waitTimeout)
	for len(dls) == 0 || !done() {
		select {
		case r := <-ended:
			t.Fatalf("Run ended before the event was dead-lettered (panic: %v)", r)
		case <-time.After(20 * time.Millisecond):
		}
		require.True(t, time.Now().Before(deadline), "no dead letter, or not done")
		var err error
		dls, err = subscription.ListDeadLetters(t.Context(), e.js, subscription.DeadLetterConfig{}, group)
		require.NoError(t, err)
	}
	cancel()
	require.Nil(t, <-ended)
	return dls
}

// A panicking Predicate fails its event as a handler's error does (redelivered, then
// dead-lettered) instead of crashing Run, and the events after it are handled.
func TestPredicatePanicIsAFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.publish(t, "order-1", placed)
	e.publish(t, "order-2", placed)
	var rec recorder
	s := newSub(t, e.js, subscription.Config{Group: "picky", Handler: rec.handle, MaxDeliver: 2,
		Predicate: func(ev subscription.Event) bool {
			if ev.StreamID == "order-1" {
				panic("no order-1, please")
			}
			return true
		}})
	dls := runUntilDeadLettered(t, e, s, "picky", func() bool { return rec.len() > 0 })
	require.Contains(t, dls[0].Reason, "predicate panicked")
	require.Contains(t, dls[0].Subject, "order-1")
	require.Equal(t, 1, rec.len(), "order-2 handled")
}

// A NewOnly group whose consumer is lost before it acknowledged anything (its
// acknowledgement floor is still 0: the stream was empty when it was created) is re-created
// after that floor, not "new only" again: an event stored while the consumer was gone is
// not lost.
func TestNewOnlyGroupRecoversWithoutLoss(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	entered := make(chan struct{})
	release := make(chan struct{})
	var rec recorder
	handler := func(ctx context.Context, ev subscription.Event) error {
		if ev.Version == 1 {
			close(entered)
			<-release
		}
		return rec.handle(ctx, ev)
	}
	reg := prometheus.NewRegistry()
	run(t, newSub(t, e.js, subscription.Config{Group: "fresh-lost", Start: subscription.NewOnly(), Handler: handler, Registerer: reg}))
	eventually(t, "the consumer", func() bool {
		_, err := e.js.Consumer(t.Context(), subscription.DefaultStream, "fresh-lost")
		return err == nil
	})
	e.publish(t, "order-1", placed) // 1: in flight
	<-entered
	// The consumer is lost while the handler is busy; event 2 is stored meanwhile. The
	// subscriber re-creates the consumer once the handler returns.
	require.NoError(t, e.js.DeleteConsumer(t.Context(), subscription.DefaultStream, "fresh-lost"))
	e.publish(t, "order-1", placed) // 2
	close(release)
	eventually(t, "the consumer re-created", func() bool {
		_, err := e.js.Consumer(t.Context(), subscription.DefaultStream, "fresh-lost")
		return err == nil && metric(t, reg, "pgjet_subscription_recoveries_total", nil) >= 1
	})
	e.publish(t, "order-1", placed) // 3
	eventually(t, "event 3", func() bool {
		evs := rec.all()
		return len(evs) > 0 && evs[len(evs)-1].Version == 3
	})
	require.Equal(t, []string{"order-1/1", "order-1/2", "order-1/3"}, keys(rec.all()))
}

// A lone subscriber whose consumer is re-created does not hand an event it dead-lettered to
// its handler again: like one it handled, the event is done for the group. (Handed again,
// an event that now succeeded would also sit in the dead letters, and a re-drive would
// handle it twice.)
func TestRecoveryDoesNotRedeliverADeadLetteredEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var bad atomic.Int64
	var rec recorder
	handler := func(ctx context.Context, ev subscription.Event) error {
		if ev.StreamID == "order-bad" {
			bad.Add(1)
			return errors.New("boom")
		}
		return rec.handle(ctx, ev)
	}
	reg := prometheus.NewRegistry()
	// A long Heartbeat: the subscriber does not refresh the group's acknowledgement floor
	// before the consumer is lost.
	run(t, newSub(t, e.js, subscription.Config{Group: "dl-recover", Handler: handler, MaxDeliver: 1, Registerer: reg,
		Heartbeat: 30 * time.Second}))
	e.publish(t, "order-1", placed)
	e.publish(t, "order-bad", placed)
	e.publish(t, "order-1", placed)
	eventually(t, "the dead letter and the other events", func() bool {
		dls, err := subscription.ListDeadLetters(t.Context(), e.js, subscription.DeadLetterConfig{}, "dl-recover")
		return err == nil && len(dls) == 1 && rec.len() == 2
	})
	require.NoError(t, e.js.DeleteConsumer(t.Context(), subscription.DefaultStream, "dl-recover"))
	eventually(t, "the consumer re-created", func() bool {
		_, err := e.js.Consumer(t.Context(), subscription.DefaultStream, "dl-recover")
		return err == nil && metric(t, reg, "pgjet_subscription_recoveries_total", nil) >= 1
	})
	e.publish(t, "order-1", placed)
	eventually(t, "the next event", func() bool { return rec.len() == 3 })
	require.Equal(t, []string{"order-1/1", "order-1/2", "order-1/3"}, keys(rec.all()))
	require.Equal(t, int64(1), bad.Load(), "the dead-lettered event was handed to the handler again")
}

// An event the relay published in an atomic batch (relay.Config.AtomicPublish) is stored
// with the batch's Nats-Batch-* headers. Its dead letter and its re-driven copy are plain
// publishes: with those headers copied, JetStream would take them for parts of an atomic
// batch and refuse them ("atomic publish is disabled" on the dead-letter stream, an
// incomplete batch on the events stream), and the event would be redelivered for ever.
func TestDeadLetterAndRedriveOfAnAtomicBatchEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, err := relay.EnsureStream(t.Context(), e.js, relay.StreamConfig{AllowAtomicPublish: true})
	require.NoError(t, err)
	var msgs []*nats.Msg
	for i, s := range []string{"order-1", "order-bad", "order-2"} {
		msgs = append(msgs, contractMsg(t, s, placed, 1, int64(i+1)))
	}
	_, err = jetstreamext.PublishMsgBatch(t.Context(), e.js, msgs)
	require.NoError(t, err)

	var healed atomic.Bool
	var rec recorder
	handler := func(ctx context.Context, ev subscription.Event) error {
		if ev.StreamID == "order-bad" && !healed.Load() {
			return errors.New("boom")
		}
		return rec.handle(ctx, ev)
	}
	run(t, newSub(t, e.js, subscription.Config{Group: "fragile", Handler: handler, MaxDeliver: 2}))
	var dls []subscription.DeadLetter
	eventually(t, "a dead letter", func() bool {
		var err error
		dls, err = subscription.ListDeadLetters(t.Context(), e.js, subscription.DeadLetterConfig{}, "fragile")
		return err == nil && len(dls) == 1
	})
	require.Empty(t, dls[0].Header.Get(jetstreamext.BatchIDHeader))

	healed.Store(true)
	_, err = subscription.Redrive(t.Context(), e.js, subscription.DeadLetterConfig{}, dls[0].Sequence)
	require.NoError(t, err)
	eventually(t, "the re-driven event", func() bool { return rec.len() == 3 })
}
