package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/subscription"
)

// storeDecoder decodes through the store: schema resolution to the newest version plus
// upcasters, what every pgjet reader does.
type storeDecoder struct{ store *pgjet.Store }

func (d storeDecoder) Decode(ctx context.Context, wire []byte, eventType string) (map[string]any, error) {
	return d.store.Decode(ctx, pgjet.RecordedEvent{Type: eventType, Data: wire})
}

// consumeDecoded replays the first n events of Stream through a subscription group of one
// member with the registry decoder and explicit acks, and returns events per second. Its
// dead letters would go to the bench's own stream.
func consumeDecoded(ctx context.Context, nc *nats.Conn, store *pgjet.Store, n int) (float64, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	var handled atomic.Int64
	done := make(chan struct{})
	sub, err := subscription.New(js, subscription.Config{
		Stream: Stream, Prefix: SubjectPrefix, DeadLetterStream: deadLetterStream, DeadLetterPrefix: deadLetterPrefix,
		Group: "bench-consume", Decoder: storeDecoder{store},
		BatchSize: 256, BatchWait: 5 * time.Millisecond, MaxAckPending: 4096,
		BatchHandler: func(_ context.Context, evs []subscription.Event) error {
			for _, e := range evs {
				if e.Data == nil {
					return fmt.Errorf("event %s not decoded", e.ID)
				}
			}
			if handled.Add(int64(len(evs))) >= int64(n) {
				select {
				case <-done:
				default:
					close(done)
				}
			}
			return nil
		},
	})
	if err != nil {
		return 0, err
	}
	sctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	start := time.Now()
	go func() { errc <- sub.Run(sctx) }()
	defer js.DeleteConsumer(context.WithoutCancel(ctx), Stream, "bench-consume")
	select {
	case <-done:
	case err := <-errc:
		cancel()
		return 0, fmt.Errorf("subscription stopped: %w", err)
	case <-ctx.Done():
		cancel()
		return 0, ctx.Err()
	}
	rate := float64(n) / time.Since(start).Seconds()
	cancel()
	if err := <-errc; err != nil {
		return 0, err
	}
	return rate, nil
}

// rawConsume replays the first n messages of the stream through a plain durable pull
// consumer with explicit acks and no decoding: the ceiling of consumeDecoded.
func rawConsume(ctx context.Context, nc *nats.Conn, stream string, n int) (float64, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	// The clock includes making the durable consumer, as consumeDecoded's includes its
	// subscription making its own.
	start := time.Now()
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable: "bench-raw", AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy, MaxAckPending: 4096,
	})
	if err != nil {
		return 0, err
	}
	defer js.DeleteConsumer(context.WithoutCancel(ctx), stream, "bench-raw")
	it, err := cons.Messages(jetstream.PullMaxMessages(512))
	if err != nil {
		return 0, err
	}
	defer it.Stop()
	for got := 0; got < n; got++ {
		m, err := it.Next()
		if err != nil {
			return 0, err
		}
		if err := m.Ack(); err != nil {
			return 0, err
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
