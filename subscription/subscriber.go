package subscription

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

// ErrRunning is returned by Run on a Subscriber that is already running.
var ErrRunning = errors.New("subscription: already running")

// maxRemembered caps how many handled sequences above the group's acknowledgement floor a
// subscriber remembers to skip after it had to recreate its consumer.
const maxRemembered = 100_000

// Subscriber delivers the events of one subscription to its handler. Create it with New,
// run it with Run. A Subscriber runs once at a time; run several (in one process or many)
// with the same Group to share the work.
type Subscriber struct {
	cfg     Config
	js      jetstream.JetStream
	filters []string
	name    string
	log     *zap.Logger
	metrics *metrics
	tracer  trace.Tracer
	running atomic.Bool

	// main is the group's consumer; ordered groups read one feed per owned partition.
	main *feed
	// handleMu serialises handler calls of an ordered member's partitions.
	handleMu sync.Mutex
	// Ordered groups: the partitioned stream and its prefix's token count, the buckets of
	// leases and parked streams, and the parked streams to replay.
	partStream   string
	prefixTokens int
	newStart     uint64 // where a NewOnly ordered group starts
	leases       jetstream.KeyValue
	parkedKV     jetstream.KeyValue
	parked       *parkedSet

	// After a replay from Postgres: the highest version replayed per stream, and the
	// JetStream sequence live delivery starts at.
	replayed  map[string]int64
	liveStart uint64
}

// New checks cfg, fills in its defaults and returns a Subscriber on js. It does not touch
// the server: Run creates or binds the consumer.
func New(js jetstream.JetStream, cfg Config) (*Subscriber, error) {
	cfg.setDefaults()
	filters, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	if js == nil {
		return nil, errors.New("subscription: JetStream is nil")
	}
	name := cfg.Group
	if name == "" {
		name = "pgjet-sub-" + nuid.Next()
	}
	m, err := newMetrics(cfg.Registerer, cfg.Group)
	if err != nil {
		return nil, fmt.Errorf("subscription: registering metrics: %w", err)
	}
	fields := []zap.Field{zap.String("consumer", name), zap.String("jetstream", cfg.Stream)} // "stream" is an event's stream id
	if cfg.Group != "" {
		fields = append(fields, zap.String("group", cfg.Group))
	}
	s := &Subscriber{
		cfg: cfg, js: js, filters: dedupeFilters(filters), name: name, metrics: m,
		log:    cfg.Logger.With(fields...),
		tracer: cfg.TracerProvider.Tracer("github.com/pgjet/pgjet/subscription"),
	}
	s.main = &feed{stream: cfg.Stream, name: name, filters: s.filters, maxAckPending: cfg.MaxAckPending, partition: -1,
		handled: map[uint64]struct{}{}}
	return s, nil
}

// Subscribe is New followed by Run: it delivers events to handler until ctx is cancelled.
func Subscribe(ctx context.Context, js jetstream.JetStream, cfg Config, handler Handler) error {
	cfg.Handler = handler
	s, err := New(js, cfg)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// ConsumerName is the JetStream consumer the subscriber reads: the Group, or a generated
// name for an ephemeral subscription. Dead letters go to "<DeadLetterPrefix>.<name>".
func (s *Subscriber) ConsumerName() string { return s.name }

// Filters are the JetStream subject filters the consumer uses (empty: all events).
func (s *Subscriber) Filters() []string { return append([]string(nil), s.filters...) }

// Run creates or binds the consumer and delivers events until ctx is cancelled, then
// drains: the in-flight handler finishes (its context ends DrainTimeout after ctx), its
// events are acknowledged, and events fetched but not handled are returned to the server
// for other members. Lost consumers, missed heartbeats and server restarts are recovered
// from inside Run. It returns nil after a cancellation, and an error if the consumer
// cannot be set up at the start (a conflicting consumer; a missing stream is waited for)
// or the NATS connection is closed for good.
func (s *Subscriber) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer s.running.Store(false)

	// Handlers outlive ctx by up to DrainTimeout.
	hctx, stopHandlers := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		t := time.NewTimer(s.cfg.DrainTimeout)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			stopHandlers()
		}
	})
	defer func() {
		close(done)
		wg.Wait()
		stopHandlers()
	}()

	if s.cfg.Start.kind == startPosition {
		exists := true
		err := s.untilPassed(ctx, "looking up the consumer", func() error {
			_, err := s.js.Consumer(ctx, s.cfg.Stream, s.name)
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				exists, err = false, nil
			} else if err != nil {
				err = fmt.Errorf("consumer %q on stream %q: %w", s.name, s.cfg.Stream, err)
			}
			return err
		})
		if err == nil && !exists {
			s.replayed = map[string]int64{}
			s.liveStart, err = s.replay(ctx, hctx)
		}
		if err != nil {
			return s.quiet(ctx, fmt.Errorf("subscription: %w", err))
		}
	}

	// A missing stream or an unreachable server at the start is waited out (the relay
	// creates the stream); anything else is a mistake to report.
	var cons jetstream.Consumer
	for retry := 50 * time.Millisecond; ; retry = min(2*retry, s.cfg.RetryMax) {
		var err error
		if s.cfg.MaxDeliver > 0 {
			err = EnsureDeadLetterStream(ctx, s.js, s.deadLetters())
		}
		if err == nil {
			if s.cfg.Ordered {
				err = s.prepareOrdered(ctx)
			} else {
				cons, err = s.consumer(ctx, s.main, false)
			}
		}
		if err == nil {
			break
		}
		if !transient(err) {
			return s.quiet(ctx, fmt.Errorf("subscription: %w", err))
		}
		s.log.Info("waiting for the events stream", zap.Error(err), zap.Duration("retry_in", retry))
		if !sleep(ctx, retry) {
			return nil
		}
	}
	s.log.Info("subscribed", zap.Strings("filters", s.filters), zap.Bool("ordered", s.cfg.Ordered))
	if s.cfg.Ordered {
		return s.runOrdered(ctx, hctx)
	}
	return s.follow(ctx, hctx, s.main, cons)
}

// follow consumes f from cons until ctx is cancelled (nil), re-establishing the consumer
// whenever it is lost. It fails only when the NATS connection is closed for good. The
// delay before re-establishing doubles while losses follow each other, and starts again
// from 50ms after a consumer that lasted longer than RetryMax.
func (s *Subscriber) follow(ctx, hctx context.Context, f *feed, cons jetstream.Consumer) error {
	retry := time.Duration(0)
	for {
		since := time.Now()
		err := s.consume(ctx, hctx, f, cons)
		if ctx.Err() != nil {
			return nil
		}
		if s.js.Conn().IsClosed() {
			return fmt.Errorf("subscription: %w", nats.ErrConnectionClosed) // it never comes back
		}
		s.metrics.recoveries.Inc()
		if time.Since(since) > s.cfg.RetryMax {
			retry = 0
		}
		retry = min(max(2*retry, 50*time.Millisecond), s.cfg.RetryMax)
		s.log.Warn("consumer lost; re-establishing it", zap.String("feed", f.name), zap.Error(err), zap.Duration("retry_in", retry))
		for {
			if !sleep(ctx, retry) {
				return nil
			}
			if s.js.Conn().IsClosed() {
				return fmt.Errorf("subscription: %w", nats.ErrConnectionClosed)
			}
			if cons, err = s.consumer(ctx, f, true); err == nil {
				break
			}
			retry = min(2*retry, s.cfg.RetryMax)
			s.log.Warn("re-establishing consumer failed", zap.String("feed", f.name), zap.Error(err), zap.Duration("retry_in", retry))
		}
		s.log.Info("consumer re-established", zap.String("feed", f.name))
	}
}

// transient reports whether err may go away by itself.
func transient(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, nats.ErrConnectionReconnecting)
}

// quiet returns nil instead of err when ctx was cancelled.
func (s *Subscriber) quiet(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (s *Subscriber) deadLetters() DeadLetterConfig {
	return DeadLetterConfig{Stream: s.cfg.DeadLetterStream, Prefix: s.cfg.DeadLetterPrefix}
}

// letter says where the dead letter of m, delivered on f, comes from and goes.
func (s *Subscriber) letter(f *feed, m jetstream.Msg) letter {
	return letter{dl: s.deadLetters(), group: s.name, to: s.cfg.DeadLetterPrefix + "." + s.name,
		subject: f.original(m.Subject()), stream: s.cfg.Stream}
}

// consumer binds the existing consumer of f (updating what may be updated) or creates it.
// A consumer created while recovering starts after the acknowledgement floor of the one
// that was lost, not at Config.Start.
func (s *Subscriber) consumer(ctx context.Context, f *feed, recovering bool) (jetstream.Consumer, error) {
	cc := jetstream.ConsumerConfig{
		Name:          f.name,
		Durable:       s.cfg.Group,
		Description:   "pgjet subscription",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.AckWait,
		MaxAckPending: f.maxAckPending,
		MaxDeliver:    -1, // the subscriber dead-letters; the server must not drop silently
	}
	if s.cfg.Group == "" {
		cc.InactiveThreshold = s.cfg.InactiveThreshold
	} else {
		cc.Durable = f.name
	}
	if f.partition >= 0 {
		cc.Description = fmt.Sprintf("pgjet ordered subscription %s, partition %d", s.cfg.Group, f.partition)
	}
	switch len(f.filters) {
	case 0:
	case 1:
		cc.FilterSubject = f.filters[0]
	default:
		cc.FilterSubjects = f.filters
	}
	var created time.Time
	if f.partition < 0 {
		st, err := s.js.Stream(ctx, f.stream)
		if err != nil {
			return nil, fmt.Errorf("looking up stream %q: %w", f.stream, err)
		}
		created = st.CachedInfo().Created
	}
	f.mu.Lock()
	floor, was := f.floor, f.created
	f.mu.Unlock()
	if recovering && !was.IsZero() && !created.Equal(was) {
		// The stream was deleted and created again: its sequences name other events, so the
		// floor and the handled sequences say nothing of it. A member that went on after its
		// old floor skipped the new stream's first events. A start at a Postgres position,
		// whose replay ended at a sequence of the old stream, starts at the new one's first.
		s.log.Warn("the stream was created anew; the consumer starts where Config.Start says",
			zap.String("feed", f.name), zap.String("stream", f.stream), zap.Time("created", created), zap.Time("was_created", was))
		f.restart()
		recovering, floor, s.liveStart = false, 0, 0
	}
	switch {
	case recovering && floor > 0:
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, floor+1
	case recovering && s.cfg.Start.kind == startNew && f.partition < 0:
		// A floor of 0: the stream was empty when the lost consumer was created, so it began
		// at sequence 1. "New only" now would pass over what was stored since.
		cc.DeliverPolicy = jetstream.DeliverAllPolicy
	case s.cfg.Start.kind == startPosition && s.liveStart > 0:
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, s.liveStart
	case s.cfg.Start.kind == startSequence:
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, s.cfg.Start.seq
	case s.cfg.Start.kind == startTime:
		t := s.cfg.Start.time
		cc.DeliverPolicy, cc.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	case s.cfg.Start.kind == startNew && f.partition >= 0:
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, s.newStart
	case s.cfg.Start.kind == startNew:
		cc.DeliverPolicy = jetstream.DeliverNewPolicy
	default:
		cc.DeliverPolicy = jetstream.DeliverAllPolicy
	}

	cons, err := s.js.Consumer(ctx, f.stream, f.name)
	if f.partition >= 0 && errors.Is(err, jetstream.ErrStreamNotFound) {
		// The partitioned mirror is gone (deleted, or lost with a server's store), and
		// members make it only when they start: make it again. It refills from the events
		// stream with the same sequences, so the partition goes on after its floor.
		if _, err := EnsurePartitionedStream(ctx, s.js, s.cfg.Stream, s.cfg.Prefix, s.cfg.Partitions); err != nil {
			return nil, err
		}
		cons, err = s.js.Consumer(ctx, f.stream, f.name)
	}
	switch {
	case err == nil:
		// Keep where it starts (that cannot change); update the rest.
		old := cons.CachedInfo().Config
		cc.DeliverPolicy, cc.OptStartSeq, cc.OptStartTime = old.DeliverPolicy, old.OptStartSeq, old.OptStartTime
		if cons, err = s.js.UpdateConsumer(ctx, f.stream, cc); err != nil {
			return nil, fmt.Errorf("updating consumer %q on %q: %w", f.name, f.stream, err)
		}
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		cons, err = s.js.CreateConsumer(ctx, f.stream, cc)
		if errors.Is(err, jetstream.ErrConsumerExists) {
			cons, err = s.js.Consumer(ctx, f.stream, f.name) // another member was first
		}
		if err != nil {
			return nil, fmt.Errorf("creating consumer %q on %q: %w", f.name, f.stream, err)
		}
	default:
		return nil, fmt.Errorf("looking up consumer %q on %q: %w", f.name, f.stream, err)
	}
	f.setFloor(cons.CachedInfo().AckFloor.Stream)
	f.mu.Lock()
	f.created = created
	f.mu.Unlock()
	return cons, nil
}

// consume delivers events of f from cons until ctx ends (nil) or the consumer is lost
// (error).
func (s *Subscriber) consume(ctx, hctx context.Context, f *feed, cons jetstream.Consumer) error {
	prefetch := max(2*s.cfg.BatchSize, 32)
	if f.partition >= 0 {
		prefetch = 1 // MaxAckPending is 1: the server sends no more
	}
	iter, err := cons.Messages(
		jetstream.PullMaxMessages(prefetch),
		jetstream.PullHeartbeat(s.cfg.Heartbeat),
		jetstream.PullExpiry(max(30*time.Second, 4*s.cfg.Heartbeat)),
	)
	if err != nil {
		return fmt.Errorf("pulling: %w", err)
	}
	defer iter.Stop()
	lastInfo := time.Now()
	// A partition's Next ends at every wake-up, before nats.go can notice missed heartbeats
	// (it needs two within one Next), so a pull request lost in a consumer leader change
	// would never be renewed. unpulled counts checks in a row that found no pull request
	// standing at the server and no event in between.
	unpulled := 0
	for {
		if time.Since(lastInfo) > s.cfg.Heartbeat {
			lastInfo = time.Now()
			info, err := cons.Info(ctx)
			switch {
			case err == nil:
				f.setFloor(info.AckFloor.Stream)
				if f.partition < 0 || info.NumWaiting > 0 {
					unpulled = 0
				} else if unpulled++; unpulled >= 2 {
					s.metrics.missedBeats.Inc()
					return errors.New("the server holds no pull request of the partition")
				}
			case errors.Is(err, jetstream.ErrConsumerNotFound):
				return err
			}
		}
		if f.partition >= 0 {
			s.replayParked(ctx, hctx, f)
		}
		msg, err := s.next(ctx, f, iter)
		if err != nil {
			if ctx.Err() != nil {
				s.release(f, iter)
				return nil
			}
			if f.partition >= 0 && errors.Is(err, context.DeadlineExceeded) {
				continue // a periodic wake-up to look for re-driven parked streams
			}
			if errors.Is(err, jetstream.ErrNoHeartbeat) {
				s.metrics.missedBeats.Inc()
				s.log.Warn("missed idle heartbeats; checking the consumer")
				info, ierr := cons.Info(ctx)
				if ierr != nil {
					return fmt.Errorf("after missed heartbeats: %w", ierr)
				}
				f.setFloor(info.AckFloor.Stream)
				continue
			}
			return err
		}
		unpulled = 0
		batch := []jetstream.Msg{msg}
		if s.cfg.BatchSize > 1 {
			deadline := time.Now().Add(s.cfg.BatchWait)
			for len(batch) < s.cfg.BatchSize && ctx.Err() == nil {
				wait := time.Until(deadline)
				if wait <= 0 {
					break
				}
				m, err := iter.Next(jetstream.NextMaxWait(wait))
				if err != nil {
					break // a timeout ends the batch; anything else shows again on the next Next
				}
				batch = append(batch, m)
			}
		}
		if f.partition >= 0 {
			s.handleOrdered(ctx, hctx, f, msg)
		} else {
			s.handle(hctx, f, batch)
		}
		if ctx.Err() != nil {
			s.release(f, iter)
			return nil
		}
	}
}

// release stops pulling and naks what was fetched but not handled, so other members get
// it now rather than after AckWait. The naks follow the end of the pull's subscription:
// a nak while the pull request still stood could be redelivered into it and lost.
func (s *Subscriber) release(f *feed, iter jetstream.MessagesContext) {
	iter.Drain()
	left := f.giveBack
	f.giveBack = nil
	deadline := time.Now().Add(2 * time.Second)
	for {
		wait := time.Until(deadline)
		if wait <= 0 {
			break
		}
		m, err := iter.Next(jetstream.NextMaxWait(wait))
		if err != nil {
			break
		}
		left = append(left, m)
	}
	for _, m := range left {
		_ = m.Nak()
	}
	_ = s.js.Conn().FlushTimeout(2 * time.Second) // the naks reach the server before Run returns
}

// handle decodes, filters and hands msgs of f to the handler, then acks or naks each.
func (s *Subscriber) handle(ctx context.Context, f *feed, msgs []jetstream.Msg) {
	events := make([]Event, 0, len(msgs))
	taken := make([]jetstream.Msg, 0, len(msgs))
	for _, m := range msgs {
		ev, err := eventFrom(m)
		ev.Subject = f.original(ev.Subject)
		if ev.Delivered > 1 {
			s.metrics.redeliveries.Inc()
		}
		if err != nil {
			// Not an event of the contract: it will never succeed.
			s.fail(ctx, f, m, ev, fmt.Errorf("malformed event: %w", err), true)
			continue
		}
		if f.seen(ev.Sequence) || ev.Version <= s.replayed[ev.StreamID] {
			s.skip(m)
			continue
		}
		if g := ev.Header.Get(HeaderRedriveGroup); g != "" && g != s.name {
			s.skip(m) // re-driven for another group
			continue
		}
		if f.partition >= 0 && s.holdIfParked(ctx, f, m, ev) {
			continue
		}
		if s.cfg.Decoder != nil {
			data, err := s.decode(ctx, ev)
			if err != nil {
				s.fail(ctx, f, m, ev, fmt.Errorf("decoding %s %s: %w", ev.Type, ev.ID, err), false)
				continue
			}
			ev.Data = data
		}
		if want, err := s.wants(ev); err != nil {
			s.fail(ctx, f, m, ev, err, false)
			continue
		} else if !want {
			s.skip(m)
			continue
		}
		events = append(events, ev)
		taken = append(taken, m)
	}
	if len(events) == 0 {
		return
	}
	start := time.Now()
	err := s.traced(ctx, events)
	s.metrics.handleSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		for i, m := range taken {
			s.fail(ctx, f, m, events[i], err, false)
		}
		return
	}
	// Acks are processed in order on one connection: confirming the last confirms all. An
	// answer later than AckWait is of no use (the server has redelivered by then), and
	// waiting for it would hold up the member, e.g. while the server restarts.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(s.cfg.AckWait, 5*time.Second))
	defer cancel()
	for i, m := range taken {
		var err error
		if i == len(taken)-1 {
			err = m.DoubleAck(actx)
		} else {
			err = m.Ack()
		}
		if err != nil {
			s.log.Warn("ack failed; the event may be delivered again", zap.String("event_id", events[i].ID), zap.Error(err))
		}
		f.remember(events[i].Sequence)
	}
	s.metrics.events.WithLabelValues("handled").Add(float64(len(events)))
	last := events[len(events)-1]
	s.metrics.lagSeconds.Set(time.Since(last.Time).Seconds())
	if md, err := taken[len(taken)-1].Metadata(); err == nil {
		s.metrics.pending.Set(float64(md.NumPending))
	}
}

// recovered, deferred by a function that runs the user's code (what: handler, decoder,
// predicate), turns a panic there into the function's error: the event's failure, not the
// end of Run.
func recovered(what string, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%s panicked: %v", what, r)
	}
}

// call runs the handler, turning a panic into an error.
func (s *Subscriber) call(ctx context.Context, events []Event) (err error) {
	defer recovered("handler", &err)
	if s.cfg.BatchHandler != nil {
		return s.cfg.BatchHandler(ctx, events)
	}
	return s.cfg.Handler(ctx, events[0])
}

// decode runs the decoder on ev's payload, turning a panic (a user's upcaster meeting data
// it did not expect) into an error: a payload is outside input and must not crash Run.
func (s *Subscriber) decode(ctx context.Context, ev Event) (data map[string]any, err error) {
	defer recovered("decoder", &err)
	return s.cfg.Decoder.Decode(ctx, ev.Raw, ev.Type)
}

// wants reports whether Config.Predicate (if any) takes ev. A panic in it is the event's
// failure, as one in the decoder or the handler is, not the end of Run.
func (s *Subscriber) wants(ev Event) (want bool, err error) {
	if s.cfg.Predicate == nil {
		return true, nil
	}
	defer recovered("predicate", &err)
	return s.cfg.Predicate(ev), nil
}

func (s *Subscriber) skip(m jetstream.Msg) {
	if err := m.Ack(); err != nil {
		s.log.Debug("ack of a skipped event failed", zap.Error(err))
	}
	s.metrics.events.WithLabelValues("skipped").Inc()
}

// fail naks m with backoff, or dead-letters it when it had its deliveries (or at once when
// permanent) and then terminates it. In an ordered group the dead letter parks its stream.
// A failure after the handlers' context ended (ctx: DrainTimeout after Run's) is the
// shutdown's, not the event's: m goes back to the server with the events fetched and not
// handled (see release), for another member or the next run, and is neither counted as
// failed nor dead-lettered.
func (s *Subscriber) fail(ctx context.Context, f *feed, m jetstream.Msg, ev Event, reason error, permanent bool) {
	if !permanent && ctx.Err() != nil {
		f.giveBack = append(f.giveBack, m)
		s.log.Info("handling cut off by the shutdown; the event goes back to the server", zap.String("event_id", ev.ID),
			zap.Uint64("sequence", ev.Sequence), zap.Error(reason))
		return
	}
	n := ev.Delivered
	if permanent || (s.cfg.MaxDeliver > 0 && n >= uint64(s.cfg.MaxDeliver)) {
		if s.cfg.MaxDeliver > 0 {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			var err error
			if f.partition >= 0 && ev.StreamID != "" {
				err = s.park(dctx, f, m, ev, reason)
			} else {
				err = deadLetter(dctx, s.js, s.letter(f, m), m, reason)
			}
			cancel()
			if err == nil {
				if err := m.Term(); err != nil {
					s.log.Warn("terminating a dead-lettered event failed", zap.Error(err))
				}
				f.remember(ev.Sequence) // done for the group, as a handled event is
				s.metrics.deadLetters.Inc()
				s.metrics.events.WithLabelValues("deadlettered").Inc()
				s.log.Warn("event dead-lettered", zap.String("event_id", ev.ID), zap.Uint64("sequence", ev.Sequence),
					zap.Uint64("deliveries", n), zap.Error(reason))
				return
			}
			s.log.Error("dead-lettering failed; the event will be redelivered", zap.String("event_id", ev.ID), zap.Error(err))
		}
	}
	delay := backoff(s.cfg.BackoffMin, s.cfg.BackoffMax, n)
	if err := m.NakWithDelay(delay); err != nil {
		s.log.Debug("nak failed; the event is redelivered after AckWait", zap.Error(err))
	}
	s.metrics.events.WithLabelValues("failed").Inc()
	s.log.Info("handler failed; event will be redelivered", zap.String("event_id", ev.ID), zap.Uint64("sequence", ev.Sequence),
		zap.Uint64("deliveries", n), zap.Duration("retry_in", delay), zap.Error(reason))
}

// backoff is lo doubled per earlier delivery, at most hi.
func backoff(lo, hi time.Duration, delivered uint64) time.Duration {
	d := lo
	for i := uint64(1); i < delivered && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// dedupeFilters drops filters that another filter already covers: JetStream rejects
// overlapping filter subjects.
func dedupeFilters(filters []string) []string {
	var out []string
	for i, f := range filters {
		covered := false
		for j, g := range filters {
			if i != j && covers(g, f) && (!covers(f, g) || j < i) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, f)
		}
	}
	return out
}

// covers reports whether filter g matches every subject filter f matches.
func covers(g, f string) bool {
	gt, ft := splitTokens(g), splitTokens(f)
	for i, t := range gt {
		if t == ">" {
			return i < len(ft)
		}
		if i >= len(ft) {
			return false
		}
		if t != "*" && t != ft[i] {
			return false
		}
		if t == "*" && ft[i] == ">" {
			return false
		}
	}
	return len(gt) == len(ft)
}

func splitTokens(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}
