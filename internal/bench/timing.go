package bench

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// timing is one measured event of the latency scenario: when its append returned (its
// commit, as the appender saw it), when the JetStream consumer first received it and when
// the projector first committed it; zero until then.
type timing struct{ committed, delivered, projected time.Time }

// timings records the latency scenario's measured events by event id. An event is added
// before its append, so that a delivery or projection that comes before the appending
// goroutine has seen its append return is kept (as a latency of 0), not left out of the
// sample as an event of the warm-up would be. A redelivery does not count again.
type timings struct {
	mu     sync.Mutex
	events map[string]*timing
}

func newTimings() *timings { return &timings{events: map[string]*timing{}} }

// add registers a measured event, before its append.
func (t *timings) add(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events[id] = &timing{}
}

func (t *timings) committedAt(id string, at time.Time) bool {
	return t.set(id, at, func(e *timing) *time.Time { return &e.committed })
}

func (t *timings) deliveredAt(id string, at time.Time) bool {
	return t.set(id, at, func(e *timing) *time.Time { return &e.delivered })
}

// projectedAt records the projection of id and reports whether id is a measured event.
func (t *timings) projectedAt(id string, at time.Time) bool {
	return t.set(id, at, func(e *timing) *time.Time { return &e.projected })
}

// set sets the field of id's timing to at unless it is set already, and reports whether
// id is a measured event.
func (t *timings) set(id string, at time.Time, field func(*timing) *time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.events[id]
	if ok {
		if f := field(e); f.IsZero() {
			*f = at
		}
	}
	return ok
}

// count returns how many measured events there are.
func (t *timings) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.events)
}

// pending returns how many measured events have not been both delivered and projected.
func (t *timings) pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, e := range t.events {
		if e.delivered.IsZero() || e.projected.IsZero() {
			n++
		}
	}
	return n
}

// samples returns the latencies from commit to delivery and to projection of the events
// that have all three times, and how many measured events have not. A time before the
// commit (the appending goroutine saw its append return late) counts as 0.
func (t *timings) samples() (delivered, projected []time.Duration, missing int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.events {
		if e.committed.IsZero() || e.delivered.IsZero() || e.projected.IsZero() {
			missing++
			continue
		}
		delivered = append(delivered, max(0, e.delivered.Sub(e.committed)))
		projected = append(projected, max(0, e.projected.Sub(e.committed)))
	}
	return delivered, projected, missing
}

// quantile returns the q-quantile of d by the nearest-rank method: the smallest value with
// at least a fraction q of d at or below it (for 100 values, p99 is the 99th smallest and
// p50 the 50th). It fails when d has fewer than 1/(1-q) values (100 for a p99, 2 for a
// p50): with fewer, the largest value would be the p99, and one outlier the figure.
func quantile(d []time.Duration, q float64) (time.Duration, error) {
	if q <= 0 || q >= 1 {
		return 0, fmt.Errorf("quantile %g is not between 0 and 1", q)
	}
	// The small slack keeps a product that floating point puts a hair above a whole
	// number (0.07*100 = 7.000000000000001) on that number.
	const slack = 1e-9
	if need := int(math.Ceil(1/(1-q) - slack)); len(d) < need {
		return 0, fmt.Errorf("%d samples are too few for a %g-quantile (%d needed)", len(d), q, need)
	}
	s := slices.Sorted(slices.Values(d))
	rank := max(1, int(math.Ceil(q*float64(len(s))-slack)))
	return s[rank-1], nil
}
