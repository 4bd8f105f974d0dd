package bench

import (
	"runtime"
	"sync"
	"syscall"
	"time"
)

// memSampler samples the Go heap in use while a phase runs, to show whether the relay and
// the projector (which run in this process during the relay and latency phases) keep
// their memory flat under load. The heap is the whole process's: the load's goroutines and,
// without NATS_URL, the embedded nats-server's are in it too.
type memSampler struct {
	mu   sync.Mutex
	peak uint64
	stop chan struct{}
	done chan struct{}
}

// sampleMemory starts sampling every interval, after a garbage collection: the heap in use
// counts spans that hold garbage until a collection sweeps them, and without one the
// garbage the previous phase left (the raw publishes' 50,000 messages, before the relay's
// drain) would count toward this phase's peak.
func sampleMemory(every time.Duration) *memSampler {
	runtime.GC()
	m := &memSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			m.sample()
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *memSampler) sample() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.mu.Lock()
	m.peak = max(m.peak, ms.HeapInuse)
	m.mu.Unlock()
}

// Stop ends sampling and returns the peak heap in use, in MiB.
func (m *memSampler) Stop() float64 {
	close(m.stop)
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return float64(m.peak) / (1 << 20)
}

// peakRSS is the process's peak resident set size in MiB (getrusage).
func peakRSS() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Maxrss) / 1024 // KiB on Linux
}
