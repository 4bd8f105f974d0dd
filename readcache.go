package pgjet

import (
	"bytes"
	"container/list"
	"context"
	"maps"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// The read cache (Config.ReadCacheBytes) keeps, per stream, one window of consecutive
// events [lo, hi] that ReadStream returned, and answers later reads of the stream from it.
//
// It cannot serve stale data because of what it keeps and what it asks:
//
//   - A stored event never changes (pgjet.events refuses UPDATE, DELETE and TRUNCATE), and a
//     stream's versions are gap-free and commit in version order (an append locks the
//     stream's row), so "the events of stream s with versions lo..hi" is a fact that stays
//     true once read. ReadStream reads through the pool, outside any caller transaction, so
//     everything it caches is committed.
//   - The only thing another process can change is what lies after hi. A read whose answer
//     lies entirely inside the window is served from memory; a read that reaches past hi
//     (a forward read to the end, a backward read from End) always asks Postgres for the
//     events after hi, in one round trip that returns them (usually none: one index probe)
//     and extends the window. So a read sees every event committed before it started, as
//     an uncached read does.
//
// Memory is bounded by Config.ReadCacheBytes over all streams, least recently read stream
// evicted first. The bound holds for the heap the windows take (eventCost, windowCost;
// TestReadCacheStaysWithinItsBudget measures it): a window's events share one stream id
// string, and a metadata map costs its fixed size. Events handed to callers are copies: a caller that modifies an event's
// Data or Metadata does not change what others read.
type readCache struct {
	maxBytes int64
	reads    *prometheus.CounterVec

	mu      sync.Mutex
	bytes   int64
	lru     *list.List               // of *cachedStream, most recently read first
	streams map[string]*list.Element // stream id -> element of lru
}

// cachedStream is one stream's window: events with versions lo..hi, ascending.
type cachedStream struct {
	id     string
	events []RecordedEvent
	bytes  int64
}

func (c *cachedStream) lo() int64 { return c.events[0].Version }
func (c *cachedStream) hi() int64 { return c.events[len(c.events)-1].Version }

// Read cache results, the values of pgjet_read_cache_reads_total's result label.
const (
	readHit  = "hit"  // answered from memory, no query
	readTail = "tail" // the window plus the events after it, read in one query
	readMiss = "miss" // read from Postgres as without a cache
)

// readBackwardFromToSQL reads a stream backward from version $2 down to version $3, $4
// events at most.
const readBackwardFromToSQL = `SELECT ` + eventColumns + ` FROM pgjet.events
	WHERE stream_id = $1 AND version <= $2 AND version >= $3 ORDER BY version DESC LIMIT $4`

// newReadCache returns a cache holding up to maxBytes of events; with maxBytes 0 it keeps
// none and only counts reads (as misses). Its counter is registered on reg either way, so
// dashboards see it.
func newReadCache(maxBytes int64, reg prometheus.Registerer) (*readCache, error) {
	reads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pgjet_read_cache_reads_total",
		Help: "ReadStream calls by how the read cache answered: hit (from memory, no query), tail (cached events plus the newer ones, in one query) or miss (read from Postgres; also every read when the cache is off).",
	}, []string{"result"})
	for _, r := range []string{readHit, readTail, readMiss} {
		reads.WithLabelValues(r)
	}
	if reg != nil {
		if err := reg.Register(reads); err != nil {
			return nil, err
		}
	}
	return &readCache{maxBytes: maxBytes, reads: reads, lru: list.New(), streams: map[string]*list.Element{}}, nil
}

// enabled reports whether the cache keeps events.
func (c *readCache) enabled() bool { return c.maxBytes > 0 }

// read answers ReadStream(stream, dir, from, limit) with from already normalised (End is
// MaxInt64), reading through db what the cache does not hold.
func (c *readCache) read(ctx context.Context, db querier, stream string, dir Direction, from int64, limit int) ([]RecordedEvent, error) {
	if dir == Forward {
		from = max(from, 1) // as Postgres reads "version >= from"
	}
	if c.enabled() && from >= 1 {
		var (
			events []RecordedEvent
			result string
			err    error
		)
		if dir == Forward {
			events, result, err = c.readForward(ctx, db, stream, from, int64(limit))
		} else {
			events, result, err = c.readBackward(ctx, db, stream, from, int64(limit))
		}
		if err != nil || result != readMiss {
			c.reads.WithLabelValues(result).Inc()
			if len(events) == 0 {
				events = nil // as from Postgres
			}
			return events, err
		}
	}
	c.reads.WithLabelValues(readMiss).Inc()
	events, err := readStreamDB(ctx, db, stream, dir, from, limit)
	if err != nil || !c.enabled() {
		return events, err
	}
	if dir == Backward {
		c.store(stream, reversed(events))
	} else {
		c.store(stream, events)
	}
	return events, nil
}

// readForward answers a forward read of n events from version from when the window holds
// from: from memory when it holds all n, else with the events after it, read in one query.
// The query starts at the window's last event, which must come back unchanged: a stream
// whose events changed under the cache (a database restored from a backup) is dropped.
// It returns result readMiss, and no events, when the read must go to Postgres.
func (c *readCache) readForward(ctx context.Context, db querier, stream string, from, n int64) ([]RecordedEvent, string, error) {
	cached, last, ok := c.forward(stream, from, n)
	if !ok {
		return nil, readMiss, nil
	}
	if int64(len(cached)) == n {
		return cached, readHit, nil
	}
	rows, err := queryEvents(ctx, db, readForwardSQL, stream, last.Version, n-int64(len(cached))+1)
	if err != nil {
		return nil, readTail, err
	}
	if len(rows) == 0 || rows[0].Version != last.Version || rows[0].ID != last.ID {
		c.drop(stream)
		return nil, readMiss, nil
	}
	newer := rows[1:]
	c.store(stream, newer)
	return append(cached, newer...), readTail, nil
}

// readBackward answers a backward read of n events from version from (MaxInt64 for End)
// when the window holds enough of them: from memory when from is in the window, else with
// the events after the window (at most n, newest first) read in one query that also
// returns the window's last event, which must be unchanged, when fewer than n are newer.
// It returns result readMiss, and no events, when the read must go to Postgres.
func (c *readCache) readBackward(ctx context.Context, db querier, stream string, from, n int64) ([]RecordedEvent, string, error) {
	cached, last, ok := c.backward(stream, from, n)
	if !ok {
		return nil, readMiss, nil
	}
	if from <= last.Version {
		return cached, readHit, nil
	}
	rows, err := queryEvents(ctx, db, readBackwardFromToSQL, stream, from, last.Version, n+1)
	if err != nil {
		return nil, readTail, err
	}
	if int64(len(rows)) == n+1 && rows[n].Version > last.Version {
		// n newer events or more: the answer is the n newest, all read now.
		newer := rows[:n]
		c.store(stream, reversed(newer))
		return newer, readTail, nil
	}
	if len(rows) == 0 || rows[len(rows)-1].Version != last.Version || rows[len(rows)-1].ID != last.ID {
		c.drop(stream)
		return nil, readMiss, nil
	}
	newer := rows[:len(rows)-1]
	// The rest of the answer is the window's newest n-len(newer) events: all there when
	// the window holds that many or reaches down to version 1.
	rest := n - int64(len(newer))
	if int64(len(cached)) < rest && cached[len(cached)-1].Version > 1 {
		return nil, readMiss, nil
	}
	c.store(stream, reversed(newer))
	return append(newer, cached[:min(rest, int64(len(cached)))]...), readTail, nil
}

// forward returns copies of the cached events from version from on, at most n, and the
// window's last event. ok is false when the window does not start by from or ends before
// from-1.
func (c *readCache) forward(stream string, from, n int64) (events []RecordedEvent, last RecordedEvent, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs := c.touch(stream)
	if cs == nil || from < cs.lo() || from > cs.hi()+1 {
		return nil, RecordedEvent{}, false
	}
	i := from - cs.lo()
	j := min(int64(len(cs.events)), i+n)
	return copyEvents(cs.events[i:j], false), cs.events[len(cs.events)-1], true
}

// backward returns copies of the cached events from version min(from, hi) down, newest
// first, as far as the window reaches (at most n), and the window's last event. ok is
// false when the window does not hold min(from, hi) or, for from <= hi, not all n events
// below it (down to version 1).
func (c *readCache) backward(stream string, from, n int64) (events []RecordedEvent, last RecordedEvent, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs := c.touch(stream)
	if cs == nil || from < cs.lo() {
		return nil, RecordedEvent{}, false
	}
	top := min(from, cs.hi())
	bottom := max(top-n+1, cs.lo())
	if from <= cs.hi() && top-n+1 < cs.lo() && cs.lo() > 1 {
		return nil, RecordedEvent{}, false
	}
	return copyEvents(cs.events[bottom-cs.lo():top-cs.lo()+1], true), cs.events[len(cs.events)-1], true
}

// drop forgets the stream's window.
func (c *readCache) drop(stream string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.streams[stream]; ok {
		c.remove(e)
	}
}

// touch returns the stream's window, marked as most recently read, or nil. c.mu is held.
func (c *readCache) touch(stream string) *cachedStream {
	e, ok := c.streams[stream]
	if !ok {
		return nil
	}
	c.lru.MoveToFront(e)
	return e.Value.(*cachedStream)
}

// store merges events (consecutive versions, ascending) into the stream's window: their
// union when they overlap or touch it, else they replace it. Then it evicts the least
// recently read streams until the cache fits its budget. It keeps copies: the caller
// keeps events. Whatever happened to the window since the caller looked at it, the result
// is right: both hold only stored, immutable events.
func (c *readCache) store(stream string, events []RecordedEvent) {
	if len(events) == 0 {
		return
	}
	for i := 1; i < len(events); i++ {
		if events[i].Version != events[i-1].Version+1 {
			return // not consecutive: cannot happen for one stream; keep nothing rather than guess
		}
	}
	cost := windowCost(stream)
	for _, e := range events {
		cost += eventCost(e)
	}
	if cost > c.maxBytes/4 {
		// The window would hold at least these events: too many to keep (see below), so
		// they are not copied. The window, if any, stays as it is: still true.
		return
	}
	events = copyEvents(events, false)
	// The window keeps a copy of the id: the caller's may be part of a larger string (a
	// request body, a NATS subject) that the cache would otherwise keep alive uncounted.
	stream = strings.Clone(stream)
	for i := range events {
		// Each event read from Postgres has a string of its own; the window's events
		// share one, counted once (windowCost).
		events[i].StreamID = stream
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	window := events
	if e, ok := c.streams[stream]; ok {
		cs := e.Value.(*cachedStream)
		lo, hi := events[0].Version, events[len(events)-1].Version
		if lo <= cs.hi()+1 && hi >= cs.lo()-1 {
			window = merge(cs.events, events)
		}
		c.remove(e)
	}
	cs := &cachedStream{id: stream, events: window, bytes: windowCost(stream)}
	for _, e := range window {
		cs.bytes += eventCost(e)
	}
	if cs.bytes > c.maxBytes/4 {
		return // one stream may not take more than a quarter of the cache
	}
	c.streams[stream] = c.lru.PushFront(cs)
	c.bytes += cs.bytes
	for c.bytes > c.maxBytes {
		c.remove(c.lru.Back())
	}
}

// remove drops a window. c.mu is held.
func (c *readCache) remove(e *list.Element) {
	cs := e.Value.(*cachedStream)
	c.lru.Remove(e)
	delete(c.streams, cs.id)
	c.bytes -= cs.bytes
}

// merge returns the union of two overlapping or touching windows, ascending. Events of
// the same version are the same event, so either copy serves.
func merge(a, b []RecordedEvent) []RecordedEvent {
	if b[0].Version < a[0].Version {
		a, b = b, a
	}
	// a starts first; b starts within a or right after it.
	out := make([]RecordedEvent, 0, max(a[len(a)-1].Version, b[len(b)-1].Version)-a[0].Version+1)
	out = append(out, a...)
	if skip := a[len(a)-1].Version - b[0].Version + 1; skip < int64(len(b)) {
		out = append(out, b[skip:]...)
	}
	return out
}

// eventCost estimates the memory a cached event holds, in bytes: the RecordedEvent, its
// type, data and metadata. Its stream id is the window's (windowCost).
func eventCost(e RecordedEvent) int64 {
	n := int64(200 + len(e.Type) + len(e.Data))
	if e.Metadata != nil {
		n += 320 // a map's header and first group of 8 slots, even when it holds one entry
	}
	for k, v := range e.Metadata {
		n += int64(len(k) + len(v) + 48)
	}
	return n
}

// windowCost estimates the memory a stream's window holds besides its events, in bytes:
// its stream id (every event shares it), the map entry and the LRU element.
func windowCost(stream string) int64 { return int64(200 + len(stream)) }

// copyEvents returns deep copies of events (Data and Metadata included), reversed when
// asked.
func copyEvents(events []RecordedEvent, reverse bool) []RecordedEvent {
	out := make([]RecordedEvent, len(events))
	for i, e := range events {
		e.Data = bytes.Clone(e.Data)
		e.Metadata = maps.Clone(e.Metadata)
		if reverse {
			out[len(events)-1-i] = e
		} else {
			out[i] = e
		}
	}
	return out
}

// reversed returns events in the opposite order, sharing the events' Data and Metadata.
func reversed(events []RecordedEvent) []RecordedEvent {
	out := make([]RecordedEvent, len(events))
	for i, e := range events {
		out[len(events)-1-i] = e
	}
	return out
}
