package subscription

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.uber.org/zap"
)

// PartitionBucket is the JetStream key-value bucket in which ordered groups keep their
// members and partition leases:
//
//	<group>.partitions          the group's partition count
//	<group>.start               the events stream sequence a NewOnly group starts at
//	<group>.member.<member id>  a live member, until the Unix-nanosecond expiry it holds
//	<group>.lease.<partition>   "<member id> <expiry>": who owns the partition
const PartitionBucket = "PGJET_PARTITIONS"

// Ordered groups.
//
// The events stream's subjects carry no partition, and changing them would break every
// consumer of the NATS contract. An ordered group instead reads a mirror of the events
// stream, "<Stream>_P<Partitions>" (PartitionedStream), whose subject transform inserts
// the partition of each event's stream id after the prefix:
//
//	pgjet.events.order.<type>.order-7  ->  pgjet.events.<partition(N, stream id)>.order.<type>.order-7
//
// A mirror keeps the events stream's sequences, so start positions, dead letters and
// Event.Sequence mean the same as for any group. Each partition has its own durable
// consumer ("<group>-p<i>") with MaxAckPending 1: the server hands out a partition's next
// event only after the previous one is acknowledged (or terminated), so one stream's events
// are handled one at a time, in order, whatever happens to the members.
//
// Members share the partitions through leases in PartitionBucket. Each member
// announces itself and, every quarter of PartitionLease, lists the live members, sorts
// them and targets partition p to member p mod n. It renews the leases it holds, claims
// targeted partitions whose lease is free or expired (compare-and-set on the key's
// revision), and gives up partitions targeted elsewhere: it stops pulling, lets the
// in-flight handler finish and its ack be confirmed, returns prefetched events, and only
// then deletes the lease, so the next owner starts exactly where it stopped. A member that
// dies keeps its partitions until its leases expire; its unacknowledged event is
// redelivered after AckWait. A member whose lease has run out (it could not renew) hands
// no event to its handler.

// PartitionedStream is the name of the mirror of stream that ordered groups with the given
// number of partitions read.
func PartitionedStream(stream string, partitions int) string {
	return fmt.Sprintf("%s_P%d", stream, partitions)
}

// EnsurePartitionedStream creates the partitioned mirror of the events stream (see
// [Config.Ordered]) if it is missing, with the events stream's replicas and limits. The
// events stream itself is not changed. An existing mirror is left as it is.
func EnsurePartitionedStream(ctx context.Context, js jetstream.JetStream, stream, prefix string, partitions int) (string, error) {
	origin, err := js.Stream(ctx, stream)
	if err != nil {
		return "", fmt.Errorf("opening events stream %q: %w", stream, err)
	}
	oc := origin.CachedInfo().Config
	name := PartitionedStream(stream, partitions)
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        name,
		Description: fmt.Sprintf("pgjet events of %s partitioned by stream id into %d partitions, for ordered groups", stream, partitions),
		Storage:     jetstream.FileStorage,
		Replicas:    oc.Replicas,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      oc.MaxAge,
		MaxBytes:    oc.MaxBytes,
		Mirror: &jetstream.StreamSource{Name: stream, SubjectTransforms: []jetstream.SubjectTransformConfig{{
			Source:      prefix + ".*.*.*",
			Destination: fmt.Sprintf("%s.{{partition(%d,3)}}.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}", prefix, partitions),
		}}},
	})
	if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return "", fmt.Errorf("creating partitioned stream %q: %w", name, err)
	}
	return name, nil
}

// bucket opens the key-value bucket name, creating it if missing with the given replicas.
func bucket(ctx context.Context, js jetstream.JetStream, name, description string, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, name)
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return kv, err
	}
	kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: name, Description: description,
		Storage: jetstream.FileStorage, Replicas: replicas})
	if errors.Is(err, jetstream.ErrBucketExists) {
		return js.KeyValue(ctx, name)
	}
	return kv, err
}

// prepareOrdered sets up what an ordered group needs on the server: the partitioned
// stream, the buckets, and the group's partition count, which every member must share.
func (s *Subscriber) prepareOrdered(ctx context.Context) error {
	name, err := EnsurePartitionedStream(ctx, s.js, s.cfg.Stream, s.cfg.Prefix, s.cfg.Partitions)
	if err != nil {
		return err
	}
	mirror, err := s.js.Stream(ctx, name)
	if err != nil {
		return fmt.Errorf("opening partitioned stream %q: %w", name, err)
	}
	replicas := mirror.CachedInfo().Config.Replicas
	if s.leases, err = bucket(ctx, s.js, PartitionBucket, "pgjet ordered groups: members and partition leases", replicas); err != nil {
		return fmt.Errorf("opening bucket %s: %w", PartitionBucket, err)
	}
	if s.parkedKV, err = openParked(ctx, s.js, replicas); err != nil {
		return fmt.Errorf("opening bucket %s: %w", ParkedBucket, err)
	}
	key := s.cfg.Group + ".partitions"
	want := strconv.Itoa(s.cfg.Partitions)
	if _, err := s.leases.Create(ctx, key, []byte(want)); err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("recording the partition count: %w", err)
		}
		e, err := s.leases.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("reading the partition count: %w", err)
		}
		if got := string(e.Value()); got != want {
			return fmt.Errorf("Config.Partitions: group %q is ordered with %s partitions, not %s", s.cfg.Group, got, want)
		}
	}
	s.partStream = name
	s.prefixTokens = strings.Count(s.cfg.Prefix, ".") + 1
	if s.cfg.Start.kind == startNew {
		// Partition consumers are created when first claimed, at different times: they
		// all start at the sequence that was next when the group began.
		if s.newStart, err = s.groupStart(ctx); err != nil {
			return err
		}
	}
	return nil
}

// groupStart returns the events stream sequence a NewOnly ordered group starts at,
// recording it for the group's other members if it is the first.
func (s *Subscriber) groupStart(ctx context.Context) (uint64, error) {
	stream, err := s.js.Stream(ctx, s.cfg.Stream)
	if err != nil {
		return 0, fmt.Errorf("reading stream %q: %w", s.cfg.Stream, err)
	}
	key := s.cfg.Group + ".start"
	next := strconv.FormatUint(stream.CachedInfo().State.LastSeq+1, 10)
	if _, err := s.leases.Create(ctx, key, []byte(next)); err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, fmt.Errorf("recording where the group starts: %w", err)
		}
		e, err := s.leases.Get(ctx, key)
		if err != nil {
			return 0, fmt.Errorf("reading where the group starts: %w", err)
		}
		next = string(e.Value())
	}
	return strconv.ParseUint(next, 10, 64)
}

// partitionFeed returns the feed of partition p.
func (s *Subscriber) partitionFeed(p int) *feed {
	filters := []string{fmt.Sprintf("%s.%d.>", s.cfg.Prefix, p)}
	if len(s.filters) > 0 {
		filters = filters[:0]
		for _, f := range s.filters {
			filters = append(filters, fmt.Sprintf("%s.%d.%s", s.cfg.Prefix, p, strings.TrimPrefix(f, s.cfg.Prefix+".")))
		}
	}
	return &feed{stream: s.partStream, name: fmt.Sprintf("%s-p%d", s.cfg.Group, p), filters: filters, maxAckPending: 1,
		partition: p, prefixTokens: s.prefixTokens, handled: map[uint64]struct{}{}}
}

// worker consumes one partition this member owns.
type worker struct {
	feed      *feed
	cancel    context.CancelFunc
	done      chan struct{}
	err       error  // why it stopped, set before done closes
	rev       uint64 // the lease key's revision this member last wrote
	releasing bool   // given up: delete the lease once done
	lost      bool   // someone else holds the lease: leave it alone
}

// member is one subscriber's part in an ordered group.
type member struct {
	id      string
	workers map[int]*worker
	wake    chan struct{}
}

// runOrdered takes part in the ordered group until ctx is cancelled.
func (s *Subscriber) runOrdered(ctx, hctx context.Context) error {
	m := &member{id: nuid.Next(), workers: map[int]*worker{}, wake: make(chan struct{}, 1)}
	s.parked = &parkedSet{requested: map[string]int{}}
	s.log.Info("joining ordered group", zap.String("member", m.id), zap.Int("partitions", s.cfg.Partitions))
	tick := s.cfg.PartitionLease / 4
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.leave(ctx, m)
			return nil
		case <-t.C:
		case <-m.wake:
			t.Stop()
		}
		if s.js.Conn().IsClosed() {
			s.leave(ctx, m)
			return fmt.Errorf("subscription: %w", nats.ErrConnectionClosed)
		}
		s.rebalance(ctx, hctx, m)
		t.Reset(tick)
	}
}

func (s *Subscriber) leaseKey(p int) string { return fmt.Sprintf("%s.lease.%d", s.cfg.Group, p) }

func (s *Subscriber) leaseValue(id string, until time.Time) []byte {
	return []byte(id + " " + strconv.FormatInt(until.UnixNano(), 10))
}

// parseLease splits a lease value into its holder and expiry.
func parseLease(v []byte) (string, time.Time) {
	id, exp, _ := strings.Cut(string(v), " ")
	n, _ := strconv.ParseInt(exp, 10, 64)
	return id, time.Unix(0, n)
}

// rebalance is one round of the ordered group's protocol (see the comment at the top).
func (s *Subscriber) rebalance(ctx, hctx context.Context, m *member) {
	now := time.Now()
	until := now.Add(s.cfg.PartitionLease)
	s.renew(ctx, m, now)
	memberKey := s.cfg.Group + ".member." + m.id
	if _, err := s.leases.Put(ctx, memberKey, []byte(strconv.FormatInt(until.UnixNano(), 10))); err != nil {
		s.log.Warn("announcing the member failed", zap.Error(err))
		return
	}
	live, err := s.liveMembers(ctx, now)
	if err != nil || !slices.Contains(live, m.id) {
		s.log.Warn("listing the members failed", zap.Error(err))
		return
	}
	s.refreshParked(ctx)
	for p := range s.cfg.Partitions {
		mine := live[p%len(live)] == m.id
		w := m.workers[p]
		switch {
		case w != nil && !mine && !w.releasing && !w.lost:
			s.log.Info("handing over a partition", zap.Int("partition", p))
			w.releasing = true
			w.cancel()
		case w == nil && mine:
			s.claim(ctx, hctx, m, p, now)
		}
	}
}

// renew renews the leases of m's workers and removes those that are done, deleting the
// lease of each one it gave up.
func (s *Subscriber) renew(ctx context.Context, m *member, now time.Time) {
	for p, w := range m.workers {
		select {
		case <-w.done:
			if !w.lost {
				if err := s.leases.Delete(ctx, s.leaseKey(p), jetstream.LastRevision(w.rev)); err != nil {
					s.log.Warn("releasing a partition lease failed; it expires", zap.Int("partition", p), zap.Error(err))
				}
			}
			if w.err != nil {
				s.log.Warn("partition worker stopped", zap.Int("partition", p), zap.Error(w.err))
			}
			delete(m.workers, p)
			s.metrics.partitions.Dec()
			continue
		default:
		}
		if w.lost {
			continue
		}
		rev, err := s.leases.Update(ctx, s.leaseKey(p), s.leaseValue(m.id, now.Add(s.cfg.PartitionLease)), w.rev)
		switch {
		case err == nil:
			w.rev = rev
			w.feed.leaseUntil.Store(now.Add(s.cfg.PartitionLease * 3 / 4).UnixNano())
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound):
			s.log.Warn("lost a partition lease", zap.Int("partition", p))
			w.lost = true
			w.feed.leaseUntil.Store(0)
			w.cancel()
		default:
			s.log.Warn("renewing a partition lease failed", zap.Int("partition", p), zap.Error(err))
		}
	}
}

// liveMembers returns the ids of the group's unexpired members, sorted, and deletes
// expired ones.
func (s *Subscriber) liveMembers(ctx context.Context, now time.Time) ([]string, error) {
	lister, err := s.leases.ListKeysFiltered(ctx, s.cfg.Group+".member.*")
	if err != nil {
		return nil, err
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	var live []string
	for _, k := range keys {
		e, err := s.leases.Get(ctx, k)
		if err != nil {
			continue
		}
		exp, _ := strconv.ParseInt(string(e.Value()), 10, 64)
		if now.UnixNano() >= exp {
			_ = s.leases.Delete(ctx, k, jetstream.LastRevision(e.Revision()))
			continue
		}
		live = append(live, strings.TrimPrefix(k, s.cfg.Group+".member."))
	}
	slices.Sort(live)
	return live, nil
}

// claim takes partition p if its lease is free or expired, and starts its worker.
func (s *Subscriber) claim(ctx, hctx context.Context, m *member, p int, now time.Time) {
	key := s.leaseKey(p)
	val := s.leaseValue(m.id, now.Add(s.cfg.PartitionLease))
	var rev uint64
	e, err := s.leases.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		rev, err = s.leases.Create(ctx, key, val)
	case err != nil:
	default:
		if holder, exp := parseLease(e.Value()); holder != m.id && now.Before(exp) {
			return // another member's
		}
		rev, err = s.leases.Update(ctx, key, val, e.Revision())
	}
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			s.log.Warn("claiming a partition failed", zap.Int("partition", p), zap.Error(err))
		}
		return
	}
	f := s.partitionFeed(p)
	f.leaseUntil.Store(now.Add(s.cfg.PartitionLease * 3 / 4).UnixNano())
	wctx, cancel := context.WithCancel(ctx)
	w := &worker{feed: f, cancel: cancel, done: make(chan struct{}), rev: rev}
	m.workers[p] = w
	s.metrics.partitions.Inc()
	s.log.Info("claimed a partition", zap.Int("partition", p))
	go func() {
		defer func() {
			close(w.done)
			select {
			case m.wake <- struct{}{}:
			default:
			}
		}()
		w.err = s.work(wctx, hctx, f)
	}()
}

// work consumes partition feed f until ctx is cancelled.
func (s *Subscriber) work(ctx, hctx context.Context, f *feed) error {
	for retry := 50 * time.Millisecond; ; retry = min(2*retry, s.cfg.RetryMax) {
		cons, err := s.consumer(ctx, f, false)
		if err == nil {
			return s.follow(ctx, hctx, f, cons)
		}
		if s.js.Conn().IsClosed() {
			return fmt.Errorf("subscription: %w", nats.ErrConnectionClosed)
		}
		s.log.Warn("setting up a partition's consumer failed", zap.String("feed", f.name), zap.Error(err), zap.Duration("retry_in", retry))
		if !sleep(ctx, retry) {
			return nil
		}
	}
}

// leave stops every worker (renewing their leases while in-flight handlers finish),
// releases the leases and removes the member.
func (s *Subscriber) leave(ctx context.Context, m *member) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.DrainTimeout+10*time.Second)
	defer cancel()
	for _, w := range m.workers {
		w.releasing = true
		w.cancel()
	}
	for len(m.workers) > 0 && cctx.Err() == nil {
		s.renew(cctx, m, time.Now())
		if len(m.workers) == 0 {
			break
		}
		select {
		case <-m.wake:
		case <-time.After(s.cfg.PartitionLease / 4):
		case <-cctx.Done():
		}
	}
	// A handler that ignores its context outlives the leases; Run still returns only after
	// it (as a plain group's does), with its partition's lease left to expire.
	for p, w := range m.workers {
		s.log.Warn("a handler ignores its context past DrainTimeout; waiting for it", zap.Int("partition", p))
		<-w.done
		delete(m.workers, p)
		s.metrics.partitions.Dec()
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second) // cctx may be over
	defer cancel()
	if err := s.leases.Delete(dctx, s.cfg.Group+".member."+m.id); err != nil {
		s.log.Warn("removing the member failed; it expires", zap.Error(err))
	}
	s.log.Info("left ordered group", zap.String("member", m.id))
}

// handleOrdered handles msg of partition feed f, provided this member still holds the
// partition's lease and its worker has not been stopped (wctx) while msg waited: the
// partitions of one member take turns at the handler, and a member that is leaving returns
// the events still waiting, as it does those fetched and not handled.
func (s *Subscriber) handleOrdered(wctx, hctx context.Context, f *feed, msg jetstream.Msg) {
	s.handleMu.Lock()
	defer s.handleMu.Unlock()
	if wctx.Err() != nil {
		f.giveBack = append(f.giveBack, msg)
		return
	}
	if !f.leased() {
		_ = msg.NakWithDelay(s.cfg.PartitionLease / 4)
		return
	}
	s.handle(hctx, f, []jetstream.Msg{msg})
}
