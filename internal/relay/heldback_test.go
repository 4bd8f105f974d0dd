package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/outbox"
	"github.com/pgjet/pgjet/internal/promtest"
	"github.com/pgjet/pgjet/internal/relay"
)

// Tests of held-back streams (held.go) in a running relay. JetStream refuses an event here
// through the events stream's max_msg_size, which the test can lower and raise again while
// the relay runs: an event over it is refused as one over the server's max_payload is, and
// once the limit is raised the same event goes through.

// refuseOver sets the events stream's max_msg_size to n bytes (-1: no limit), creating the
// stream first if no relay has yet. The relay leaves the setting as it finds it.
func refuseOver(t *testing.T, js jetstream.JetStream, n int32) {
	t.Helper()
	ctx := context.Background()
	s, err := relay.EnsureStream(ctx, js, relay.StreamConfig{})
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	cfg := info.Config
	cfg.MaxMsgSize = n
	_, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
}

// refusedLimit is the max_msg_size the tests set: the events of cancelled fit, those of
// oversized do not.
const refusedLimit = 4096

// oversized is an event of stream whose message is over refusedLimit.
func oversized(stream string) pgjet.EventData {
	return pgjet.EventData{ID: uuid.New(), Type: "pgjet.demo.order.OrderPlaced", Data: json.RawMessage(fmt.Sprintf(
		`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","customer_id":"c1","customer_email":"a@b.de",`+
			`"items":[{"sku":"A1","quantity":1,"unit_price_cents":1}],"placed_at":"2026-11-26T10:00:00Z","note":%q}`,
		strings.Repeat("x", 2*refusedLimit)))}
}

// histogramCount returns how many observations the histogram name holds in reg.
func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}

// A held-back stream is read again at its retry time (100 ms after its first failure), not
// at the relay's next poll: once JetStream takes its event again, the stream is published
// at once, in order, and no longer held back. Here the poll is 20 s away and nothing else
// wakes the relay; a relay that waited for the poll would publish the stream then.
func TestHeldStreamIsRetriedAtItsRetryTime(t *testing.T) {
	t.Parallel()
	for _, m := range publishModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			testHeldStreamIsRetriedAtItsRetryTime(t, m)
		})
	}
}

func testHeldStreamIsRetriedAtItsRetryTime(t *testing.T, m publishMode) {
	ctx := context.Background()
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	// A batch publish whose first message is refused waits PublishTimeout for its first
	// acknowledgement.
	r := startOwnRelay(t, e.url, e.nc, relay.Config{PollInterval: 20 * time.Second, PublishTimeout: 2 * time.Second, BatchPublish: m.batch, AtomicPublish: m.atomic, Registerer: reg})
	waitUntil(t, 10*time.Second, "the relay owns every partition", func() bool {
		return r.r.Ready() == nil && r.r.Owned() == outbox.Partitions
	})
	refuseOver(t, e.js, refusedLimit)

	// Two events, so that a batch publish is used where it is on.
	evs := []pgjet.EventData{oversized("order-retried"), cancelled("order-retried", 2)}
	_, err := e.store.Append(ctx, "order-retried", pgjet.Any, evs...)
	require.NoError(t, err)
	waitUntil(t, 10*time.Second, "the stream held back after its failed publish", func() bool {
		return promtest.Value(t, reg, "pgjet_relay_streams_held_back") == 1
	})
	refuseOver(t, e.js, -1)
	waitUntil(t, 5*time.Second, "the stream published at its retry time, well before the poll", func() bool {
		return streamMsgs(t, e.js) == 2
	})
	checkExactlyOnceInOrder(t, readAll(t, e.js), map[string]string{evs[0].ID.String(): "order-retried", evs[1].ID.String(): "order-retried"})
	waitUntil(t, 5*time.Second, "a retry that went through releases the stream", func() bool {
		return promtest.Value(t, reg, "pgjet_relay_streams_held_back") == 0
	})
}

// Past maxHeld (100) held-back streams, a failing stream is not held back: that is an
// outage, and the worker backs off as a whole, from 50 ms doubling to 5 s, as for any
// round of failures. Here 100 streams are held back and a 101st, refused too, has more rows
// than a batch holds. A relay that did not back off read and published that stream's batch
// again at once, round after round, without pause.
func TestFailuresPastTheHeldCapBackOff(t *testing.T) {
	t.Parallel()
	for _, m := range publishModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			testFailuresPastTheHeldCapBackOff(t, m)
		})
	}
}

func testFailuresPastTheHeldCapBackOff(t *testing.T, m publishMode) {
	const batchSize = 200
	ctx := context.Background()
	e := newEnv(t)
	refuseOver(t, e.js, refusedLimit)
	for i := range 100 {
		s := fmt.Sprintf("order-cap%d", i)
		_, err := e.store.Append(ctx, s, pgjet.Any, oversized(s))
		require.NoError(t, err)
	}
	last := []pgjet.EventData{oversized("order-cap-last")}
	for v := 2; v <= batchSize+50; v++ {
		last = append(last, cancelled("order-cap-last", v))
	}
	_, err := e.store.Append(ctx, "order-cap-last", pgjet.Any, last...)
	require.NoError(t, err)

	reg := prometheus.NewRegistry()
	e.startRelay(t, relay.Config{BatchSize: batchSize, BatchPublish: m.batch, AtomicPublish: m.atomic, PublishTimeout: time.Second, Registerer: reg})
	waitUntil(t, 15*time.Second, "100 streams held back", func() bool {
		return promtest.Value(t, reg, "pgjet_relay_streams_held_back") == 100
	})
	before := histogramCount(t, reg, "pgjet_relay_batch_size")
	time.Sleep(3 * time.Second)
	rounds := histogramCount(t, reg, "pgjet_relay_batch_size") - before
	t.Logf("%d batches read in 3 s", rounds)
	// Backing off from 50 ms, and with the held-back streams retried together, 3 s take
	// about 15 batches.
	require.Less(t, rounds, uint64(100), "the worker backs off while a stream past the cap fails")
	require.Equal(t, 100.0, promtest.Value(t, reg, "pgjet_relay_streams_held_back"))
}

// With batch publishes, a stream due for a retry whose rows the batch publish did not reach
// (it stopped at another stream's event) has not been retried: it stays held back, and its
// back-off goes on growing. Two refused streams fail together and are held back together;
// then one gets a second event, so their next batch goes out as a batch publish, which
// stops at the first one's event. The second one's failures count on (1, 2, 3 ...) from
// the time it first failed; a relay that let it go counted them from 1 again, and retried
// it from 100 ms again.
func TestHeldStreamKeepsItsBackOffInBatchPublish(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	refuseOver(t, e.js, refusedLimit)
	first, second := "order-held-first", "order-held-second"
	for _, s := range []string{first, second} {
		_, err := e.store.Append(ctx, s, pgjet.Any, oversized(s))
		require.NoError(t, err)
	}
	core, logs := observer.New(zap.DebugLevel)
	reg := prometheus.NewRegistry()
	e.startRelay(t, relay.Config{BatchPublish: true, Registerer: reg, Logger: zap.New(core)})
	waitUntil(t, 10*time.Second, "both streams held back", func() bool {
		return promtest.Value(t, reg, "pgjet_relay_streams_held_back") == 2
	})
	_, err := e.store.Append(ctx, first, pgjet.Any, cancelled(first, 2))
	require.NoError(t, err)

	failures := func() (counts []int64, since []time.Time) {
		for _, l := range logs.FilterMessageSnippet("holding its stream back").All() {
			f := l.ContextMap()
			if f["stream"] != second {
				continue
			}
			counts = append(counts, f["failures"].(int64))
			since = append(since, f["failing_since"].(time.Time))
		}
		return counts, since
	}
	waitUntil(t, 15*time.Second, "the second stream failed four times", func() bool {
		n, _ := failures()
		return len(n) >= 4
	})
	counts, since := failures()
	for i := range counts {
		require.Equal(t, int64(i+1), counts[i], "failures of %s, in order: %v", second, counts)
		require.Equal(t, since[0], since[i], "failing since its first failure")
	}
}

// With batch publishes, a retry of a held-back stream goes one event per stream. A batch
// publish would stop at the stream's refused event, and when that event is its first
// message, the publisher waits PublishTimeout for a first acknowledgement that never comes
// (jetstreamext 0.3.2): the worker, and every stream of its partitions, waited that long at
// each retry. Here a stream whose two events wait behind a refused one is held back while
// another stream gets an event every 200 ms; each is to be published within a second, with
// PublishTimeout 3 s.
func TestRetriesOfAHeldStreamDoNotStallBatchPublishes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	refuseOver(t, e.js, refusedLimit)
	const stuck, flowing = "order-stuck", "order-flowing"
	_, err := e.store.Append(ctx, stuck, pgjet.Any, oversized(stuck), cancelled(stuck, 2))
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	e.startRelay(t, relay.Config{BatchPublish: true, PublishTimeout: 3 * time.Second, Registerer: reg})
	waitUntil(t, 15*time.Second, "the stream held back", func() bool {
		return promtest.Value(t, reg, "pgjet_relay_streams_held_back") == 1
	})
	failed := func() float64 { return promtest.Value(t, reg, "pgjet_relay_published_total", "result", "error") }
	before := failed()
	// 6 s: the held-back stream is retried about 5 times meanwhile.
	for i := 1; i <= 30; i++ {
		_, err := e.store.Append(ctx, flowing, pgjet.Any, cancelled(flowing, i))
		require.NoError(t, err)
		waitUntil(t, time.Second, fmt.Sprintf("event %d of the other stream published", i), func() bool {
			return streamMsgs(t, e.js) == uint64(i)
		})
		time.Sleep(200 * time.Millisecond)
	}
	require.GreaterOrEqual(t, failed(), before+3, "the held-back stream was retried meanwhile")
	require.Equal(t, 1.0, promtest.Value(t, reg, "pgjet_relay_streams_held_back"))
}

// A held-back stream goes with its partition when another relay joins: the relay that gave
// the partition away stops holding the stream back (its gauge drops), the one that took it
// reads the stream from its oldest event, fails on it and holds it back in turn, while the
// partition's other streams flow; once JetStream takes the event, the new owner publishes
// the stream in order and lets it go. (A relay owning every partition gives the upper half
// away to a second one: see owner.rebalance.)
func TestHeldStreamIsHandedOverWithItsPartition(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	refuseOver(t, e.js, refusedLimit)
	stuck, flowing := "", ""
	for i := 0; stuck == "" || flowing == ""; i++ {
		s := fmt.Sprintf("order-moved%d", i)
		switch {
		case outbox.PartitionOf(s) < outbox.Partitions/2:
		case stuck == "":
			stuck = s
		case outbox.PartitionOf(s) == outbox.PartitionOf(stuck):
			flowing = s
		}
	}
	committed := map[string]string{}
	add := func(stream string, evs ...pgjet.EventData) {
		_, err := e.store.Append(ctx, stream, pgjet.Any, evs...)
		require.NoError(t, err)
		for _, ev := range evs {
			committed[ev.ID.String()] = stream
		}
	}
	add(stuck, oversized(stuck), cancelled(stuck, 2))
	gauge := func(reg *prometheus.Registry) float64 {
		return promtest.Value(t, reg, "pgjet_relay_streams_held_back")
	}
	regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
	startOwnRelay(t, e.url, e.nc, relay.Config{Registerer: regA})
	waitUntil(t, 10*time.Second, "the first relay holds the stream back", func() bool { return gauge(regA) == 1 })

	startOwnRelay(t, e.url, e.nc, relay.Config{Registerer: regB})
	waitUntil(t, 10*time.Second, "2 relays share the partitions", func() bool { return fairlyShared(partitionHolders(t, e.pool), 2) })
	waitUntil(t, 10*time.Second, "the stream held back by the partition's new owner only", func() bool {
		return gauge(regA) == 0 && gauge(regB) == 1
	})
	add(flowing, cancelled(flowing, 1))
	waitUntil(t, 10*time.Second, "the partition's other stream published", func() bool { return streamMsgs(t, e.js) == 1 })

	refuseOver(t, e.js, -1)
	waitUntil(t, 10*time.Second, "the stream published", func() bool { return streamMsgs(t, e.js) == uint64(len(committed)) })
	checkExactlyOnceInOrder(t, readAll(t, e.js), committed)
	waitUntil(t, 5*time.Second, "and let go", func() bool { return gauge(regB) == 0 })
}

// A relay that stops reports no partition owned and no stream held back: the gauges kept
// their last values after Run returned.
func TestStoppedRelayOwnsAndHoldsNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	refuseOver(t, e.js, refusedLimit)
	_, err := e.store.Append(ctx, "order-stopped", pgjet.Any, oversized("order-stopped"))
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	stop := e.startRelay(t, relay.Config{Registerer: reg})
	waitUntil(t, 10*time.Second, "the stream held back", func() bool {
		return promtest.Value(t, reg, "pgjet_relay_streams_held_back") == 1
	})
	require.Equal(t, float64(outbox.Partitions), promtest.Value(t, reg, "pgjet_relay_partitions_owned"))
	stop()
	require.Zero(t, promtest.Value(t, reg, "pgjet_relay_streams_held_back"))
	require.Zero(t, promtest.Value(t, reg, "pgjet_relay_partitions_owned"))
}
