package relay

import (
	"slices"
	"sync"
	"time"
)

// Holding a stream back: a stream whose publish failed is left out of its partition's reads
// until its retry time, which backs off per stream from minHold to maxHold; the worker
// draining the partition wakes then, without waiting for its poll. So an event
// that JetStream keeps refusing holds back its own stream (whose next event may not be
// stored before it) and nothing else. Before, every round of its relay failed and backed
// off, and once the stream had a batch of rows waiting, they filled every batch.
//
// A round that stored nothing while several streams failed looks like an outage, and its
// worker also backs off as a whole (from 50 ms). The streams are held back all the same,
// and for longer than that first back-off: the next round reads the other streams, and
// either they go through (the held-back streams were stuck on their own, as when both
// have more rows waiting than a batch holds) or they fail too, and the back-off grows. At
// most maxHeld streams are held back per relay; past that, failures are an outage, not bad
// events, and only the worker's back-off paces them. The first hold is short, so that a
// passing failure (a leader change, a dropped connection) costs its stream little.
const (
	minHold = 100 * time.Millisecond
	maxHold = 5 * time.Second
	maxHeld = 100
)

// held is one held-back stream.
type held struct {
	partition int16
	since     time.Time // its first failure
	failures  int
	hold      time.Duration // the latest hold
	retryAt   time.Time
}

// heldStreams are the streams this relay holds back, by stream id. A stream is only
// touched by the drain that holds its partition.
type heldStreams struct {
	mu sync.Mutex
	m  map[string]*held
	// count, when set, is told the number of held-back streams whenever it changes.
	count func(int)
}

// skip returns the streams of parts that a read at now leaves out (with the partition of
// each), and the held-back streams of parts due for a retry, which it reads. partitions
// and streams are never nil: pgx sends a nil slice as NULL, and BatchSQL would keep no row.
func (h *heldStreams) skip(parts []int16, now time.Time) (partitions []int16, streams, due []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	partitions, streams = []int16{}, []string{}
	for s, x := range h.m {
		switch {
		case !slices.Contains(parts, x.partition):
		case now.Before(x.retryAt):
			partitions, streams = append(partitions, x.partition), append(streams, s)
		default:
			due = append(due, s)
		}
	}
	return partitions, streams, due
}

// next returns the earliest retry time of the held-back streams of parts, zero when none is
// held back: the drain of parts is due then, whether or not a poll or an append wakes it.
func (h *heldStreams) next(parts []int16) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	var t time.Time
	for _, x := range h.m {
		if slices.Contains(parts, x.partition) && (t.IsZero() || x.retryAt.Before(t)) {
			t = x.retryAt
		}
	}
	return t
}

// hold holds stream back after a failed publish, or for longer if it is held already, and
// returns its state; false when maxHeld streams are held back already.
func (h *heldStreams) hold(stream string, partition int16, now time.Time) (held, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.m[stream]
	if s == nil {
		if len(h.m) >= maxHeld {
			return held{}, false
		}
		if h.m == nil {
			h.m = map[string]*held{}
		}
		s = &held{partition: partition, since: now}
		h.m[stream] = s
		h.changed()
	}
	s.failures++
	s.hold = min(max(2*s.hold, minHold), maxHold)
	s.retryAt = now.Add(s.hold)
	return *s, true
}

// release stops holding back the streams.
func (h *heldStreams) release(streams ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := len(h.m)
	for _, s := range streams {
		delete(h.m, s)
	}
	if len(h.m) != n {
		h.changed()
	}
}

// keep stops holding back the streams of partitions not in owned: another relay publishes
// them now.
func (h *heldStreams) keep(owned []int16) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := len(h.m)
	for s, x := range h.m {
		if !slices.Contains(owned, x.partition) {
			delete(h.m, s)
		}
	}
	if len(h.m) != n {
		h.changed()
	}
}

func (h *heldStreams) changed() {
	if h.count != nil {
		h.count(len(h.m))
	}
}
