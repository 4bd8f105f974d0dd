package subscription_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgjet/pgjet/internal/embednats"
	"github.com/pgjet/pgjet/internal/relay"
	"github.com/pgjet/pgjet/internal/subject"
	"github.com/pgjet/pgjet/subscription"
)

// A service subscribes to the events of the order category as the group "billing".
// Cancelling the context (here from the handler, after the second event) stops it cleanly.
func ExampleSubscribe() {
	js, shutdown := exampleServer()
	defer shutdown()
	examplePublish(js, "order-1", 1, "pgjet.demo.order.OrderPlaced")
	examplePublish(js, "payment-9", 1, "pgjet.demo.payment.PaymentCaptured") // filtered out
	examplePublish(js, "order-1", 2, "pgjet.demo.order.OrderShipped")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := subscription.Subscribe(ctx, js, subscription.Config{
		Group:   "billing",
		Filters: []subscription.Filter{{Category: "order"}},
	}, func(ctx context.Context, ev subscription.Event) error {
		fmt.Println(ev.StreamID, ev.Version, ev.Type)
		if ev.Version == 2 {
			cancel()
		}
		return nil
	})
	fmt.Println("stopped:", err)
	// Output:
	// order-1 1 pgjet.demo.order.OrderPlaced
	// order-1 2 pgjet.demo.order.OrderShipped
	// stopped: <nil>
}

// Filters combine category, type and stream; each becomes a JetStream subject filter.
func ExampleSubscriber_Filters() {
	s, err := subscription.New(noJetStream{}, subscription.Config{
		Filters: []subscription.Filter{
			{Category: "order", Type: "pgjet.demo.order.OrderShipped"},
			{Stream: "payment-9"},
			{Type: "pgjet.demo.payment.PaymentCaptured"},
		},
		Handler: func(context.Context, subscription.Event) error { return nil },
	})
	if err != nil {
		panic(err)
	}
	for _, f := range s.Filters() {
		fmt.Println(f)
	}
	// Output:
	// pgjet.events.order.pgjet:demo:order:OrderShipped.*
	// pgjet.events.payment.*.payment-9
	// pgjet.events.*.pgjet:demo:payment:PaymentCaptured.*
}

// noJetStream stands in for a JetStream context where none is used.
type noJetStream struct{ jetstream.JetStream }

func exampleServer() (jetstream.JetStream, func()) {
	dir, err := os.MkdirTemp("", "pgjet-example-")
	if err != nil {
		panic(err)
	}
	srv, err := embednats.Start(embednats.Options{Dir: dir, LazySync: true})
	if err != nil {
		panic(err)
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		panic(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		panic(err)
	}
	if _, err := relay.EnsureStream(context.Background(), js, relay.StreamConfig{}); err != nil {
		panic(err)
	}
	return js, func() { nc.Close(); srv.Shutdown(); os.RemoveAll(dir) }
}

// examplePublish publishes an event the way the relay does (see the NATS contract).
func examplePublish(js jetstream.JetStream, stream string, version int64, typ string) {
	subj, err := subject.Scheme{}.For(stream, typ)
	if err != nil {
		panic(err)
	}
	id := uuid.NewString()
	h := nats.Header{}
	h.Set(jetstream.MsgIDHeader, id)
	h.Set("ce-id", id)
	h.Set("ce-type", typ)
	h.Set("ce-subject", stream)
	h.Set("ce-time", time.Now().UTC().Format(time.RFC3339Nano))
	h.Set("ce-streamversion", strconv.FormatInt(version, 10))
	h.Set("ce-position", "1")
	if _, err := js.PublishMsg(context.Background(), &nats.Msg{Subject: subj, Header: h, Data: []byte{0, 0, 0, 0, 1}}); err != nil {
		panic(err)
	}
}
