package projection_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/projection"
)

// BenchmarkProject measures how fast a projector applies events (decoded, one INSERT per
// event, committed with the checkpoint), beside the raw JetStream pull-consume rate of the
// same stream on the same machine, pulling as the projector does (up to 256 without
// waiting, or when none is ready a fetch of 1 that waits; ack each). The difference is the cost of decoding
// and of Postgres. Both kinds of handler: Apply (a round trip per statement) and Queue
// (the whole batch in one round trip); with batches of 256, and of 2, where the per-batch
// round trips show.
//
//	go test -run '^$' -bench BenchmarkProject -benchtime 3x ./internal/projection
func BenchmarkProject(b *testing.B) {
	const events = 20000
	ctx := context.Background()
	e := newEnv(b, registerDemo(b))
	e.appendCancelledBatches(b, events)
	e.waitRelayed(b)

	start := time.Now()
	cons, err := e.js.CreateConsumer(ctx, "PGJET_EVENTS", jetstream.ConsumerConfig{
		Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 256,
	})
	require.NoError(b, err)
	for got := 0; got < events; {
		ready, err := cons.FetchNoWait(256)
		require.NoError(b, err)
		k := 0
		for m := range ready.Messages() {
			require.NoError(b, m.Ack())
			k++
		}
		if k == 0 {
			first, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
			require.NoError(b, err)
			for m := range first.Messages() {
				require.NoError(b, m.Ack())
				k++
			}
		}
		got += k
	}
	pull := events / time.Since(start).Seconds()

	n := 0
	for _, batch := range []int{256, 2} {
		for _, queued := range []bool{false, true} {
			kind := map[bool]string{false: "apply", true: "queue"}[queued]
			b.Run(fmt.Sprintf("%s,batch=%d", kind, batch), func(b *testing.B) {
				var took time.Duration
				for range b.N {
					n++
					name := fmt.Sprintf("bench%d", n)
					pr := ledgerNamed(name, "rm_"+name, "bench")
					if queued {
						pr = queuedLedger(name, "rm_"+name, "bench")
					}
					start := time.Now()
					stop := e.run(b, projection.Config{Projection: pr, BatchSize: batch, IdleWait: 100 * time.Millisecond})
					e.waitApplied(b, name)
					took += time.Since(start)
					stop()
				}
				project := float64(events*b.N) / took.Seconds()
				b.ReportMetric(project, "events/s")
				b.ReportMetric(pull, "pull-events/s")
				b.Logf("%d events: projector %.0f events/s, raw JetStream pull-consume %.0f events/s (%.0f%%)", events, project, pull, 100*project/pull)
			})
		}
	}
}
