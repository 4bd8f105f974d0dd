package relay_test

import (
	"context"
	"math/rand/v2"
	"net/url"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/netproxy"
	"github.com/pgjet/pgjet/internal/relay"
)

// Three relays split the 32 partitions fairly; when one stops its partitions move to the
// others, and a relay that joins takes its share from them, all while writers append. In
// the end every committed event is in JetStream once and in stream order.
func TestRelaysSharePartitionsAndHandOver(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := startWriters(t, e.store, 4, 400, 24)
	cfg := relay.Config{BatchSize: 40, Window: 16}
	relays := []*runningRelay{
		startOwnRelay(t, e.url, e.nc, cfg),
		startOwnRelay(t, e.url, e.nc, cfg),
		startOwnRelay(t, e.url, e.nc, cfg),
	}
	shared := func(n int) func() bool {
		return func() bool {
			total := 0
			for _, r := range relays {
				if r.r.Owned() > (32+n-1)/n {
					return false
				}
				total += r.r.Owned()
			}
			return total == 32 && fairlyShared(partitionHolders(t, e.pool), n)
		}
	}
	waitUntil(t, 10*time.Second, "3 relays share the partitions", shared(3))
	w.waitAppends(t, 50)

	relays[1].stop() // a relay leaves
	relays = []*runningRelay{relays[0], relays[2]}
	waitUntil(t, 10*time.Second, "2 relays take over the partitions of the third", shared(2))
	w.waitAppends(t, 50)

	relays = append(relays, startOwnRelay(t, e.url, e.nc, cfg)) // a relay joins
	waitUntil(t, 10*time.Second, "a joining relay gets its share", shared(3))
	w.waitAppends(t, 50)

	committed := w.finish()
	waitDrained(t, e.pool, 20*time.Second)
	t.Logf("%d events committed", len(committed))
	checkExactlyOnceInOrder(t, readAll(t, e.js), committed)
}

// Relay processes are SIGKILLed one at a time while two others keep running and writers
// append: the survivors take the dead relay's partitions, a replacement takes its share
// back, and nothing is lost, duplicated or reordered across the hand-overs.
func TestRelayProcessKilledHandsOverPartitions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := startWriters(t, e.store, 4, 600, 24)
	procs := []*childRelay{}
	for range 3 {
		procs = append(procs, &childRelay{cmd: startChildRelay(t, e.url, e.nurl)})
	}
	waitUntil(t, 10*time.Second, "3 relay processes share the partitions", func() bool {
		return fairlyShared(partitionHolders(t, e.pool), 3)
	})
	rng := rand.New(rand.NewPCG(7, 7))
	for round := range 3 {
		w.waitAppends(t, 20+rng.IntN(60))
		victim := rng.IntN(len(procs))
		require.NoError(t, procs[victim].cmd.Process.Kill())
		_ = procs[victim].cmd.Wait()
		waitUntil(t, 10*time.Second, "survivors take over after kill", func() bool {
			return fairlyShared(partitionHolders(t, e.pool), 2)
		})
		procs[victim] = &childRelay{cmd: startChildRelay(t, e.url, e.nurl)}
		waitUntil(t, 10*time.Second, "a replacement gets its share", func() bool {
			return fairlyShared(partitionHolders(t, e.pool), 3)
		})
		t.Logf("round %d: killed relay %d, partitions handed over and back", round, victim)
	}
	committed := w.finish()
	waitDrained(t, e.pool, 20*time.Second)
	for _, p := range procs {
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
		require.NoError(t, p.cmd.Wait())
	}
	t.Logf("%d events committed", len(committed))
	checkExactlyOnceInOrder(t, readAll(t, e.js), committed)
}

// A relay's network to Postgres freezes (a partition: its sessions stay open on both ends,
// nothing gets through, no RST). Its partition locks must not stay held forever: Postgres
// ends its idle lock session, the other relay takes over every partition, and when the
// network heals the relay rejoins; nothing is lost, duplicated or reordered.
func TestRelayCutOffFromPostgresLosesItsPartitions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u, err := url.Parse(e.url)
	require.NoError(t, err)
	p := netproxy.New(t, u.Host, netproxy.Config{})
	viaProxy := *u
	viaProxy.Host = p.Addr()
	cfg := relay.Config{BatchSize: 40, Window: 16}
	a := startOwnRelay(t, viaProxy.String(), e.nc, cfg)
	t.Cleanup(p.Cut) // before stopping a, which may hang on frozen sessions
	startOwnRelay(t, e.url, e.nc, cfg)
	waitUntil(t, 10*time.Second, "2 relays share the partitions", func() bool {
		return fairlyShared(partitionHolders(t, e.pool), 2)
	})
	w := startPacedWriters(t, e.store, 3, 100000, 16, 2*time.Millisecond)
	w.waitAppends(t, 50)

	p.Freeze()
	start := time.Now()
	waitUntil(t, 12*time.Second, "the reachable relay owns every partition", func() bool {
		return fairlyShared(partitionHolders(t, e.pool), 1)
	})
	t.Logf("partitions handed over %s after the freeze", time.Since(start))
	w.waitAppends(t, 50)

	// The network heals: the relay's stale batch (read before the freeze) completes, which
	// JetStream deduplicates; it notices its lost session and takes its share again.
	p.Heal()
	waitUntil(t, 10*time.Second, "the relay rejoins", func() bool {
		return fairlyShared(partitionHolders(t, e.pool), 2) && a.r.Owned() > 0
	})
	w.waitAppends(t, 50)
	committed := w.finish()
	waitDrained(t, e.pool, 15*time.Second)
	checkExactlyOnceInOrder(t, readAll(t, e.js), committed)
}

// As above, but the network heals only after the duplicate window has passed for the events
// the other relay published meanwhile: a stale batch the frozen relay read before the freeze
// must not be published again. The window (3 s) is longer than the take-over (2 s, the lock
// session's idle timeout at a 100 ms poll interval), as it must be: the relay that takes over
// re-publishes what the frozen one published but could not delete.
func TestRelayStaleBatchBeyondDuplicateWindow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u, err := url.Parse(e.url)
	require.NoError(t, err)
	p := netproxy.New(t, u.Host, netproxy.Config{})
	viaProxy := *u
	viaProxy.Host = p.Addr()
	cfg := relay.Config{BatchSize: 40, Window: 16, Stream: relay.StreamConfig{DuplicateWindow: 3 * time.Second}}
	a := startOwnRelay(t, viaProxy.String(), e.nc, cfg)
	t.Cleanup(p.Cut)
	startOwnRelay(t, e.url, e.nc, cfg)
	waitUntil(t, 10*time.Second, "2 relays share the partitions", func() bool {
		return fairlyShared(partitionHolders(t, e.pool), 2)
	})
	w := startPacedWriters(t, e.store, 3, 100000, 16, time.Millisecond)
	w.waitAppends(t, 100)
	p.Freeze()
	waitUntil(t, 12*time.Second, "the reachable relay owns every partition", func() bool {
		return fairlyShared(partitionHolders(t, e.pool), 1)
	})
	committed := w.finish()
	waitDrained(t, e.pool, 10*time.Second)
	// Let the duplicate window pass for every event the other relay published: a time
	// window in JetStream, not a condition a test could poll.
	time.Sleep(3500 * time.Millisecond)
	p.Heal()
	waitUntil(t, 10*time.Second, "the relay rejoins", func() bool {
		return fairlyShared(partitionHolders(t, e.pool), 2) && a.r.Owned() > 0
	})
	waitDrained(t, e.pool, 15*time.Second)
	checkExactlyOnceInOrder(t, readAll(t, e.js), committed)
}

// A relay that must give partitions to a relay that joined first waits for its batches in
// flight to finish. A batch can outlast the partition-lock session's idle_session_timeout
// (2 s at a 100 ms poll interval), and the session must stay alive through that wait:
// ended by Postgres, it would free every partition of the relay while it still publishes
// them, and the other relay would take them all.
func TestRebalanceKeepsTheLockSessionWhileABatchFinishes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	r, err := relay.New(relay.Config{Pool: e.pool, Conn: e.nc, PollInterval: 100 * time.Millisecond})
	require.NoError(t, err)
	// The fault: one batch takes 5 s, more than twice the lock session's idle timeout.
	const slowBatch = 5 * time.Second
	held, finished := make(chan struct{}), make(chan struct{})
	var holding atomic.Bool
	relay.HoldAfterPublish(r, func([]int16) {
		if holding.CompareAndSwap(false, true) {
			close(held)
			time.Sleep(slowBatch)
			close(finished)
		}
	})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	waitUntil(t, 10*time.Second, "the relay owns every partition", func() bool {
		return fairlyShared(partitionHolders(t, e.pool), 1)
	})
	var lockSession int
	for pid := range partitionHolders(t, e.pool) {
		lockSession = pid
	}

	_, err = e.store.Append(ctx, "order-slow", pgjet.Any, cancelled("order-slow", 1))
	require.NoError(t, err)
	<-held
	other := startOwnRelay(t, e.url, e.nc, relay.Config{})
	for running := true; running; {
		holders := partitionHolders(t, e.pool)
		select {
		case <-finished: // read perhaps after the batch, while the relay releases partitions
			running = false
		default:
			require.Equal(t, 32, holders[lockSession], "the relay keeps its lock session and its partitions while its batch runs")
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitUntil(t, 10*time.Second, "the relay gives the joining one its share, from the same session", func() bool {
		return fairlyShared(partitionHolders(t, e.pool), 2) && partitionHolders(t, e.pool)[lockSession] == 16 && other.r.Owned() == 16
	})
	waitDrained(t, e.pool, 10*time.Second)
}
