package subscription

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// feed is one JetStream consumer a subscriber reads: the group's (or the ephemeral)
// consumer on the events stream, or, in an ordered group, the consumer of one partition
// on the partitioned stream. It remembers what the subscriber acknowledged on it, so a
// consumer re-created after a loss neither loses nor repeats events.
type feed struct {
	stream        string
	name          string
	filters       []string
	maxAckPending int
	// partition is the partition of an ordered group's feed, -1 for a plain one.
	partition int
	// prefixTokens is how many tokens the events' prefix has; a partitioned subject has
	// the partition number right after them.
	prefixTokens int
	// leaseUntil is when this member's claim on the partition runs out (Unix nanoseconds):
	// past it, the feed hands no event to the handler.
	leaseUntil atomic.Int64
	// giveBack holds events fetched and not handled because the subscription is stopping;
	// release naks them once the pull has ended (a nak while it stands could be redelivered
	// into it and wait out AckWait). Only the feed's consume loop touches it.
	giveBack []jetstream.Msg

	mu      sync.Mutex
	floor   uint64              // the consumer's acknowledgement floor, last we looked
	handled map[uint64]struct{} // sequences above floor this subscriber acknowledged
	// created is when the stream the floor and handled sequences belong to was created (zero
	// for a partition's feed, whose mirror keeps the events stream's sequences): a stream
	// created anew numbers other events with them.
	created time.Time
}

// restart forgets the floor and the handled sequences: they belong to a stream that is
// gone.
func (f *feed) restart() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.floor = 0
	clear(f.handled)
}

// original returns the events-stream subject of subj, a subject of f's stream.
func (f *feed) original(subj string) string {
	if f.partition < 0 {
		return subj
	}
	i := 0
	for range f.prefixTokens {
		j := strings.IndexByte(subj[i:], '.')
		if j < 0 {
			return subj
		}
		i += j + 1
	}
	j := strings.IndexByte(subj[i:], '.')
	if j < 0 {
		return subj
	}
	return subj[:i] + subj[i+j+1:]
}

// leased reports whether this member may hand f's events to the handler now.
func (f *feed) leased() bool {
	return f.partition < 0 || time.Now().UnixNano() < f.leaseUntil.Load()
}

// setFloor records the consumer's acknowledgement floor and forgets handled sequences at
// or below it.
func (f *feed) setFloor(floor uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if floor < f.floor {
		return
	}
	f.floor = floor
	for seq := range f.handled {
		if seq <= floor {
			delete(f.handled, seq)
		}
	}
}

// seen reports whether the subscriber acknowledged seq above the floor.
func (f *feed) seen(seq uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if seq <= f.floor {
		return false // acked by the group before; the server redelivers only what it must
	}
	_, ok := f.handled[seq]
	return ok
}

func (f *feed) remember(seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if seq > f.floor && len(f.handled) < maxRemembered {
		f.handled[seq] = struct{}{}
	}
}

// next returns the next message of iter. A partition's feed wakes up at least every
// second (with context.DeadlineExceeded) to look for re-driven parked streams.
func (s *Subscriber) next(ctx context.Context, f *feed, iter jetstream.MessagesContext) (jetstream.Msg, error) {
	if f.partition < 0 {
		return iter.Next(jetstream.NextContext(ctx))
	}
	wctx, cancel := context.WithTimeout(ctx, min(s.cfg.Heartbeat, time.Second))
	defer cancel()
	return iter.Next(jetstream.NextContext(wctx))
}
