package subscription_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/avro"
	"github.com/pgjet/pgjet/internal/embednats"
	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/pgtest"
	"github.com/pgjet/pgjet/internal/relay"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
	"github.com/pgjet/pgjet/subscription"
)

// BenchmarkConsume measures decoded events per second through a group of 1 and 4
// members, replaying b.N events from JetStream sequence 1 (catch-up throughput).
//
//	go test ./subscription -run '^$' -bench Consume -benchtime 20000x
func BenchmarkConsume(b *testing.B) {
	for _, members := range []int{1, 4} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			ctx := context.Background()
			pool := pgtest.Pool(b)
			if err := pgjet.Migrate(ctx, pool); err != nil {
				b.Fatal(err)
			}
			store, err := pgjet.New(pgjet.Config{Pool: pool})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := store.Registry().RegisterFS(ctx, demoschemas.Files); err != nil {
				b.Fatal(err)
			}
			v, err := store.Registry().Latest(ctx, cancelled)
			if err != nil {
				b.Fatal(err)
			}
			payload, err := v.Schema.EncodeJSON([]byte(`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","reason":"bench","cancelled_at":"2026-11-26T10:00:00Z"}`))
			if err != nil {
				b.Fatal(err)
			}
			wire := avro.AppendWire(nil, uint32(v.ID), payload)
			srv := natstest.Server(b)
			_, js := natstest.Connect(b, srv)
			if _, err := relay.EnsureStream(ctx, js, relay.StreamConfig{}); err != nil {
				b.Fatal(err)
			}
			var futs []jetstream.PubAckFuture
			for i := range b.N {
				m := benchMsg(b, fmt.Sprintf("order-%d", i%64), int64(i/64+1), int64(i+1))
				m.Data = wire
				f, err := js.PublishMsgAsync(m)
				if err != nil {
					b.Fatal(err)
				}
				futs = append(futs, f)
			}
			for _, f := range futs {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					b.Fatal(err)
				}
			}
			var handled atomic.Int64
			done := make(chan struct{})
			dec, err := subscription.NewRegistryDecoder(store.Registry())
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			start := time.Now()
			rctx, cancel := context.WithCancel(ctx)
			errs := make(chan error, members)
			for range members {
				s, err := subscription.New(js, subscription.Config{Group: "bench", Decoder: dec, BatchSize: 256, BatchWait: 5 * time.Millisecond,
					BatchHandler: func(_ context.Context, evs []subscription.Event) error {
						if handled.Add(int64(len(evs))) == int64(b.N) {
							close(done)
						}
						return nil
					}})
				if err != nil {
					b.Fatal(err)
				}
				go func() { errs <- s.Run(rctx) }()
			}
			select {
			case <-done:
			case <-time.After(5 * time.Minute):
				b.Fatalf("handled %d of %d events in 5 minutes", handled.Load(), b.N)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			cancel()
			for range members {
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
		})
	}
}

// BenchmarkParkedCheck measures the read an ordered group's member makes before handling
// each event (is the event's stream parked? usually not) on a 3-node cluster: from the
// bucket's stream leader, as members open ParkedBucket, and by direct gets, as nats.go
// opens a bucket, for a client connected to that leader and to a follower.
//
//	go test ./subscription -run '^$' -bench ParkedCheck -benchtime 5000x
func BenchmarkParkedCheck(b *testing.B) {
	ctx := context.Background()
	nodes := natstest.Cluster(b, 3)
	_, js := natstest.Connect(b, nodes[0], nodes[1:]...)
	if _, err := subscription.OpenParked(ctx, js, 3); err != nil {
		b.Fatal(err)
	}
	const directBucket = "DIRECT"
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: directBucket, Replicas: 3}); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name, bucket string
		open         func(jetstream.JetStream) (jetstream.KeyValue, error)
	}{
		{"leader", subscription.ParkedBucket, func(js jetstream.JetStream) (jetstream.KeyValue, error) {
			return subscription.OpenParked(ctx, js, 3)
		}},
		{"direct", directBucket, func(js jetstream.JetStream) (jetstream.KeyValue, error) {
			return js.KeyValue(ctx, directBucket)
		}},
	} {
		stream := "KV_" + bc.bucket
		natstest.WaitReplicasCurrent(b, js, stream)
		leader := natstest.StreamLeader(b, nodes, stream)
		follower := nodes[(slices.Index(nodes, leader)+1)%len(nodes)]
		if bc.bucket == directBucket {
			// Followers take part in direct gets once caught up, checked every 2s.
			for _, n := range nodes {
				if n != leader {
					waitDirectGets(b, n, stream)
				}
			}
		}
		for _, client := range []struct {
			name string
			node *embednats.Server
		}{{"client-on-leader", leader}, {"client-on-follower", follower}} {
			b.Run(bc.name+"/"+client.name, func(b *testing.B) {
				_, cjs := natstest.Connect(b, client.node)
				kv, err := bc.open(cjs)
				if err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					if _, err := kv.Get(ctx, "g.not-parked"); !errors.Is(err, jetstream.ErrKeyNotFound) {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
