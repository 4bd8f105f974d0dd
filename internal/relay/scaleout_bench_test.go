package relay_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/relay"
)

// BenchmarkRelays measures how fast 1, 2 and 4 relays (each with its own pool) drain an
// outbox of 20000 events over 64 streams into one JetStream stream, and reports events/s;
// then 1 relay with ordered batch publishes (Config.BatchPublish).
// On a 2-core machine Postgres, nats-server and the relays share the CPUs, so more relays
// mostly add contention; the figure shows where the limit is.
//
//	go test -run '^$' -bench BenchmarkRelays -benchtime 3x ./internal/relay
func BenchmarkRelays(b *testing.B) {
	const events, streams = 20000, 64
	for _, run := range []struct {
		n     int
		batch bool
	}{{1, false}, {2, false}, {4, false}, {1, true}} {
		n := run.n
		name := fmt.Sprintf("relays=%d", n)
		if run.batch {
			name += ",batch-publish"
		}
		b.Run(name, func(b *testing.B) {
			srv := natstest.Server(b)
			nc, js := natstest.Connect(b, srv)
			e := newEnvOn(b, "", nc, js, srv.ClientURL())
			ctx := context.Background()
			var total time.Duration
			for range b.N {
				b.StopTimer()
				for s := range streams {
					batch := make([]pgjet.EventData, events/streams)
					for i := range batch {
						batch[i] = cancelled(fmt.Sprintf("order-%d", s), i)
					}
					_, err := e.store.Append(ctx, fmt.Sprintf("order-%d", s), pgjet.Any, batch...)
					require.NoError(b, err)
				}
				b.StartTimer()
				start := time.Now()
				var rs []*runningRelay
				for range n {
					rs = append(rs, startOwnRelay(b, e.url, e.nc, relay.Config{BatchPublish: run.batch}))
				}
				waitUntil(b, 2*time.Minute, "outbox drained", func() bool {
					var left int
					require.NoError(b, e.pool.QueryRow(ctx, `SELECT count(*) FROM pgjet.outbox`).Scan(&left))
					return left == 0
				})
				total += time.Since(start)
				b.StopTimer()
				for _, r := range rs {
					r.stop()
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(events*b.N)/total.Seconds(), "events/s")
		})
	}
}
