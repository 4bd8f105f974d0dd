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
// event, batches of 256 committed with the checkpoint) beside the raw JetStream
// pull-consume rate of the same stream on the same machine, pulling as the projector does
// (a fetch of 1 that waits, then up to 255 more without waiting; ack each). The difference
// is the cost of decoding and of Postgres.
//
//	go test -run '^$' -bench BenchmarkProject -benchtime 3x ./internal/projection
func BenchmarkProject(b *testing.B) {
	const events, batch = 20000, 256
	ctx := context.Background()
	e := newEnv(b, registerDemo(b))
	e.appendCancelledBatches(b, events)
	e.waitRelayed(b)

	var pullTime, projectTime time.Duration
	for i := range b.N {
		// Raw pull-consume.
		start := time.Now()
		cons, err := e.js.CreateConsumer(ctx, "PGJET_EVENTS", jetstream.ConsumerConfig{
			Durable: fmt.Sprintf("raw-%d", i), AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: batch,
		})
		require.NoError(b, err)
		for got := 0; got < events; {
			first, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
			require.NoError(b, err)
			for m := range first.Messages() {
				require.NoError(b, m.Ack())
				got++
			}
			rest, err := cons.FetchNoWait(batch - 1)
			require.NoError(b, err)
			for m := range rest.Messages() {
				require.NoError(b, m.Ack())
				got++
			}
		}
		pullTime += time.Since(start)

		// The projector, from sequence 1.
		name := fmt.Sprintf("bench%d", i)
		start = time.Now()
		stop := e.run(b, projection.Config{Projection: ledgerNamed(name, "rm_"+name, "bench"), BatchSize: batch, IdleWait: 100 * time.Millisecond})
		e.waitApplied(b, name)
		projectTime += time.Since(start)
		stop()
	}
	pull := float64(events*b.N) / pullTime.Seconds()
	project := float64(events*b.N) / projectTime.Seconds()
	b.ReportMetric(project, "events/s")
	b.ReportMetric(pull, "pull-events/s")
	b.Logf("%d events: projector %.0f events/s, raw JetStream pull-consume %.0f events/s (%.0f%%)", events, project, pull, 100*project/pull)
}
