package soak

import (
	"context"
	"sync/atomic"
	"time"
)

// midBatch lets a fault kill a consumer while it is in the middle of a batch: the fault
// arms it; the next handler to reach the middle of a batch (some of its work done, nothing
// committed or acknowledged) reports which instance it runs in and waits until the fault
// has killed that instance, so whatever it does afterwards fails as in a crash.
type midBatch struct {
	armed atomic.Pointer[batchKill]
}

type batchKill struct {
	inBatch chan int      // the instance whose handler is in the batch
	killed  chan struct{} // closed once its connections are cut
}

// reached is called by a handler in the middle of a batch of the given instance. When a
// kill is armed it blocks until the kill is done (or a minute passes, if the fault gave up).
func (m *midBatch) reached(instance int) {
	k := m.armed.Swap(nil)
	if k == nil {
		return
	}
	k.inBatch <- instance
	select {
	case <-k.killed:
	case <-time.After(time.Minute):
	}
}

// kill arms m and waits up to wait for a handler to reach the middle of a batch; then it
// calls cut with that handler's instance, which must cut the instance's connections (and
// not wait for the handler), and lets the handler go on. It reports whether a batch was
// caught; if none was in flight within wait (or ctx ended) it disarms m and returns false.
func (m *midBatch) kill(ctx context.Context, wait time.Duration, cut func(instance int)) bool {
	k := &batchKill{inBatch: make(chan int, 1), killed: make(chan struct{})}
	m.armed.Store(k)
	t := time.NewTimer(wait)
	defer t.Stop()
	var instance int
	caught := false
	select {
	case instance = <-k.inBatch:
		caught = true
	case <-ctx.Done():
	case <-t.C:
	}
	if !caught {
		if m.armed.CompareAndSwap(k, nil) {
			return false // no handler took it
		}
		instance = <-k.inBatch // a handler took it just now; it sends at once
	}
	cut(instance)
	close(k.killed)
	return true
}
