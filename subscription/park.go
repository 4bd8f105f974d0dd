package subscription

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet/internal/subject"
)

// ParkedBucket is the JetStream key-value bucket of the streams ordered groups parked,
// one key per group and stream: "<group>.<base64url of the stream id>", holding a JSON
// record of the event that parked it.
const ParkedBucket = "PGJET_PARKED"

// Headers of the dead letters of ordered groups.
const (
	// HeaderDeadParked is "head" on the dead letter of the event that parked its stream and
	// "held" on the later events of the stream set aside behind it.
	HeaderDeadParked = "pgjet-dl-parked"
	// HeaderDeadPartition is the partition of the stream in its ordered group.
	HeaderDeadPartition = "pgjet-dl-partition"
)

// Parking.
//
// In an ordered group, the dead letter of an event (after MaxDeliver failures) goes to
// "<DeadLetterPrefix>.<group>.<stream token>" and its stream is parked: a record in
// ParkedBucket. Before handling an event, the partition's owner looks its stream up
// there; the later events of a parked stream are held: published to the same subject
// (marked "held") and acknowledged, so the partition, and the other streams in it, keep
// flowing. The dead-letter subject thus holds the stream's events from the parked one
// on, in version order.
//
// Redrive of such a dead letter (any of the stream's) does not re-publish: it marks the
// record for replay. The partition's owner notices within a rebalance round, replays the
// subject in order through the handler (each event with up to MaxDeliver attempts,
// deleting each dead letter once handled) between two live events, and deletes the
// record; live events of the stream flow again after that. If an event fails again, the
// stream stays parked from it on.

// parkRecord is the value of a parked stream's key.
type parkRecord struct {
	Group     string    `json:"group"`
	Stream    string    `json:"stream"`
	Partition int       `json:"partition"`
	EventID   string    `json:"event_id"`
	Version   int64     `json:"version"`
	Sequence  uint64    `json:"sequence"`
	Reason    string    `json:"reason"`
	Time      time.Time `json:"time"`
	// Replay asks the partition's owner to replay the parked events and unpark.
	Replay bool `json:"replay"`
}

// openParked opens ParkedBucket, creating it if missing with the given replicas, so that
// its reads are answered by the leader of its stream: a member that finds direct gets on
// (nats.go's CreateKeyValue turns them on) turns them off. See holdIfParked for why.
func openParked(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	if _, err := bucket(ctx, js, ParkedBucket, "pgjet ordered groups: parked streams", replicas); err != nil {
		return nil, err
	}
	st, err := js.Stream(ctx, parkedStream)
	if err != nil {
		return nil, err
	}
	if cfg := st.CachedInfo().Config; cfg.AllowDirect {
		cfg.AllowDirect = false
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("turning direct gets off on %s (reads of parked streams must come from its leader; the NATS user needs $JS.API.STREAM.UPDATE.%s): %w",
				parkedStream, parkedStream, err)
		}
	}
	// Opened again: nats.go sends a Get to the leader ($JS.API.STREAM.MSG.GET) only when
	// the stream info it read on opening says AllowDirect false.
	return js.KeyValue(ctx, ParkedBucket)
}

// parkedStream is the JetStream stream of ParkedBucket.
const parkedStream = "KV_" + ParkedBucket

func parkKey(group, stream string) string {
	return group + "." + base64.RawURLEncoding.EncodeToString([]byte(stream))
}

func parkedSubject(prefix, group, stream string) string {
	return prefix + "." + group + "." + subject.EncodeToken(stream)
}

// parkedSet holds the parked streams of an ordered group whose replay was asked for,
// by key, with their partition.
type parkedSet struct {
	mu        sync.Mutex
	requested map[string]int
}

func (ps *parkedSet) of(partition int) []string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var keys []string
	for k, p := range ps.requested {
		if p == partition {
			keys = append(keys, k)
		}
	}
	return keys
}

func (ps *parkedSet) forget(key string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	delete(ps.requested, key)
}

// refreshParked reads which of the group's parked streams are to be replayed.
func (s *Subscriber) refreshParked(ctx context.Context) {
	lister, err := s.parkedKV.ListKeysFiltered(ctx, s.cfg.Group+".*")
	if err != nil {
		return
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	requested := map[string]int{}
	for _, k := range keys {
		e, err := s.parkedKV.Get(ctx, k)
		if err != nil {
			continue
		}
		var rec parkRecord
		if json.Unmarshal(e.Value(), &rec) == nil && rec.Replay {
			requested[k] = rec.Partition
		}
	}
	s.parked.mu.Lock()
	s.parked.requested = requested
	s.parked.mu.Unlock()
}

// parkedLetter is the dead letter of m, an event of stream ev.StreamID in partition f,
// marked kind ("head" or "held").
func (s *Subscriber) parkedLetter(f *feed, m jetstream.Msg, ev Event, kind string) letter {
	l := s.letter(f, m)
	l.to = parkedSubject(s.cfg.DeadLetterPrefix, s.name, ev.StreamID)
	l.header = nats.Header{}
	l.header.Set(HeaderDeadParked, kind)
	l.header.Set(HeaderDeadPartition, strconv.Itoa(f.partition))
	return l
}

// park dead-letters m, which failed for good, and parks its stream.
func (s *Subscriber) park(ctx context.Context, f *feed, m jetstream.Msg, ev Event, reason error) error {
	if err := deadLetter(ctx, s.js, s.parkedLetter(f, m, ev, "head"), m, reason); err != nil {
		return err
	}
	rec, _ := json.Marshal(parkRecord{Group: s.name, Stream: ev.StreamID, Partition: f.partition, EventID: ev.ID,
		Version: ev.Version, Sequence: ev.Sequence, Reason: reason.Error(), Time: time.Now().UTC()})
	if _, err := s.parkedKV.Create(ctx, parkKey(s.name, ev.StreamID), rec); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("parking stream %q: %w", ev.StreamID, err)
	}
	s.metrics.parked.Inc()
	s.log.Warn("stream parked", zap.String("stream", ev.StreamID), zap.String("event_id", ev.ID),
		zap.Int64("version", ev.Version), zap.Int("partition", f.partition), zap.Error(reason))
	return nil
}

// holdIfParked sets m aside (dead-letters it as held and acknowledges it) when its stream
// is parked, and reports whether it did, or could not tell (then m is naked).
//
// The read must see every park acknowledged before it: the stream's previous event may
// have parked it a moment ago, on this member or on the partition's previous owner. A
// direct get need not. With AllowDirect every replica of the bucket's stream answers
// direct gets from its own store, with no leader or currency check (nats-server v2.15.2
// stream.go:5289-5311 and 6323); the queue group hands a request to any of them
// (client.go:5646-5712); a follower joins it once current or 90% caught up and stays in
// it while it lags (jetstream_cluster.go:4789-4826). The leader acknowledges a write
// once a quorum stored it and it applied it; followers apply it on the next heartbeat
// (raft.go:5315-5320), or later when slow or catching up. So a direct get right after a
// park can read "not parked" and hand the stream's next event to the handler, out of
// order. nats-server says so itself (issues 4710 and 6557: "Since introducing Direct Get
// we lost our ... read-after-write consistency in KV stores").
//
// openParked therefore turns direct gets off: nats.go then sends Get to
// $JS.API.STREAM.MSG.GET (nats.go v1.55.0 jetstream/stream.go:565-605), which only the
// stream leader answers (jetstream_api.go:3956-3959, jetstream_cluster.go:1619), and a
// new leader counts as one only once it has applied what its predecessor committed
// (raft.go:1600-1613, 6315-6321). What is left is a deposed leader that has not noticed
// yet during a network partition, the gap nats-server issue 6557 is about.
func (s *Subscriber) holdIfParked(ctx context.Context, f *feed, m jetstream.Msg, ev Event) bool {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	e, err := s.parkedKV.Get(actx, parkKey(s.name, ev.StreamID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false
	}
	if err == nil {
		var rec parkRecord
		_ = json.Unmarshal(e.Value(), &rec)
		reason := fmt.Errorf("held: stream %s is parked at version %d (event %s)", ev.StreamID, rec.Version, rec.EventID)
		if err = deadLetter(actx, s.js, s.parkedLetter(f, m, ev, "held"), m, reason); err == nil {
			if err := m.DoubleAck(actx); err != nil {
				s.log.Warn("ack of a held event failed", zap.String("event_id", ev.ID), zap.Error(err))
			}
			f.remember(ev.Sequence)
			s.metrics.events.WithLabelValues("held").Inc()
			s.log.Info("event held behind its parked stream", zap.String("event_id", ev.ID), zap.String("stream", ev.StreamID),
				zap.Int64("version", ev.Version))
			return true
		}
	}
	s.log.Warn("checking for a parked stream failed; the event will be redelivered", zap.String("event_id", ev.ID), zap.Error(err))
	_ = m.NakWithDelay(s.cfg.BackoffMin)
	return true
}

// replayParked replays the parked streams of f's partition whose replay was asked for.
func (s *Subscriber) replayParked(ctx, hctx context.Context, f *feed) {
	for _, key := range s.parked.of(f.partition) {
		s.handleMu.Lock()
		s.replayStream(ctx, hctx, f, key)
		s.handleMu.Unlock()
	}
}

// replayStream hands the dead letters of the parked stream of key to the handler in
// order and unparks the stream once all are handled.
func (s *Subscriber) replayStream(ctx, hctx context.Context, f *feed, key string) {
	for ctx.Err() == nil && f.leased() {
		e, err := s.parkedKV.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			s.parked.forget(key)
			return
		}
		if err != nil {
			return // tried again on the next wake-up
		}
		var rec parkRecord
		if err := json.Unmarshal(e.Value(), &rec); err != nil || !rec.Replay {
			s.parked.forget(key)
			return
		}
		dls, err := listDeadLetters(ctx, s.js, s.deadLetters(), parkedSubject(s.cfg.DeadLetterPrefix, s.name, rec.Stream))
		if err != nil {
			s.log.Warn("reading a parked stream failed", zap.String("stream", rec.Stream), zap.Error(err))
			return
		}
		s.log.Info("replaying a parked stream", zap.String("stream", rec.Stream), zap.Int("events", len(dls)))
		dlStream, err := s.js.Stream(ctx, s.deadLetters().withDefaults().Stream)
		if err != nil {
			return
		}
		for _, dl := range dls {
			if !f.leased() {
				// The lease ran out (it could not be renewed): the partition's next owner
				// replays the stream, and must be the only one handing out its events.
				s.log.Warn("replay of a parked stream left to the partition's next owner", zap.String("stream", rec.Stream))
				return
			}
			ev, err := parseHeaders(dl.Header)
			ev.Subject, ev.Sequence, ev.Delivered, ev.Raw = dl.Subject, dl.StreamSequence, 1, dl.Data
			if err == nil {
				err = s.replayOne(ctx, hctx, ev)
			}
			if err == nil {
				// Deleted even when the member is stopping meanwhile, as a handled live
				// event is acknowledged: the next owner must not hand it over again.
				dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				if err := dlStream.DeleteMsg(dctx, dl.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
					s.log.Warn("deleting a replayed dead letter failed", zap.Uint64("sequence", dl.Sequence), zap.Error(err))
				}
				cancel()
			}
			if ctx.Err() != nil {
				return // the next owner of the partition goes on
			}
			if err != nil {
				rec.Replay, rec.EventID, rec.Version, rec.Sequence, rec.Reason, rec.Time = false, ev.ID, ev.Version, ev.Sequence, err.Error(), time.Now().UTC()
				v, _ := json.Marshal(rec)
				if _, err := s.parkedKV.Update(ctx, key, v, e.Revision()); err != nil {
					s.log.Warn("recording a failed replay failed", zap.Error(err))
				}
				s.parked.forget(key)
				s.log.Warn("replay of a parked stream failed; it stays parked", zap.String("stream", rec.Stream),
					zap.String("event_id", ev.ID), zap.Error(err))
				return
			}
		}
		if err := s.parkedKV.Delete(ctx, key, jetstream.LastRevision(e.Revision())); err == nil {
			s.parked.forget(key)
			s.log.Info("stream unparked", zap.String("stream", rec.Stream))
			return
		}
		// The record changed meanwhile (asked again): look again.
	}
}

// replayOne hands one parked event to the handler, with up to MaxDeliver attempts.
func (s *Subscriber) replayOne(ctx, hctx context.Context, ev Event) error {
	if s.cfg.Decoder != nil {
		data, err := s.decode(hctx, ev)
		if err != nil {
			return fmt.Errorf("decoding %s %s: %w", ev.Type, ev.ID, err)
		}
		ev.Data = data
	}
	if want, err := s.wants(ev); err != nil {
		return err // the stream stays parked at this event
	} else if !want {
		s.metrics.events.WithLabelValues("skipped").Inc()
		return nil
	}
	for attempt := uint64(1); ; attempt++ {
		ev.Delivered = attempt
		start := time.Now()
		err := s.traced(hctx, []Event{ev})
		s.metrics.handleSeconds.Observe(time.Since(start).Seconds())
		if err == nil {
			s.metrics.events.WithLabelValues("handled").Inc()
			return nil
		}
		s.metrics.events.WithLabelValues("failed").Inc()
		if s.cfg.MaxDeliver > 0 && attempt >= uint64(s.cfg.MaxDeliver) {
			return err
		}
		if !sleep(ctx, backoff(s.cfg.BackoffMin, s.cfg.BackoffMax, attempt)) {
			return ctx.Err()
		}
	}
}

// requestReplay asks the owner of dl's parked stream to replay it (see Redrive). A stream
// whose record is gone (replayed before, with dead letters left) is parked again for it.
func requestReplay(ctx context.Context, js jetstream.JetStream, dl DeadLetter) error {
	kv, err := js.KeyValue(ctx, ParkedBucket)
	if err != nil {
		return fmt.Errorf("opening bucket %s: %w", ParkedBucket, err)
	}
	key := parkKey(dl.Group, dl.StreamID)
	for {
		e, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			v, _ := json.Marshal(parkRecord{Group: dl.Group, Stream: dl.StreamID, Partition: dl.Partition, EventID: dl.EventID,
				Version: dl.Version, Sequence: dl.StreamSequence, Reason: dl.Reason, Time: time.Now().UTC(), Replay: true})
			_, err = kv.Create(ctx, key, v)
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
			return err
		case err != nil:
			return err
		}
		var rec parkRecord
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			return fmt.Errorf("reading parked stream %q: %w", dl.StreamID, err)
		}
		if rec.Replay {
			return nil
		}
		rec.Replay = true
		v, _ := json.Marshal(rec)
		_, err = kv.Update(ctx, key, v, e.Revision())
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		return err
	}
}
