package soak

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgjet/pgjet/internal/relay"
)

// delivery is one message as a consumer received it.
type delivery struct {
	id      string
	stream  string
	version int64
	seq     uint64
}

// consumer follows the whole stream with an ordered consumer (which recreates itself after
// a nats-server restart) and records every delivery in arrival order.
type consumer struct {
	name string
	cc   jetstream.ConsumeContext

	mu   sync.Mutex
	seen []delivery
	last uint64
}

func startConsumer(ctx context.Context, js jetstream.JetStream, i int) (*consumer, error) {
	c := &consumer{name: fmt.Sprintf("consumer-%d", i)}
	oc, err := js.OrderedConsumer(ctx, "PGJET_EVENTS", jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, fmt.Errorf("soak: %s: %w", c.name, err)
	}
	c.cc, err = oc.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			return
		}
		v, _ := strconv.ParseInt(m.Headers().Get(relay.HeaderStreamVersion), 10, 64)
		c.mu.Lock()
		c.seen = append(c.seen, delivery{id: m.Headers().Get("ce-id"), stream: m.Headers().Get("ce-subject"), version: v, seq: md.Sequence.Stream})
		c.last = max(c.last, md.Sequence.Stream)
		c.mu.Unlock()
	})
	if err != nil {
		return nil, fmt.Errorf("soak: %s: %w", c.name, err)
	}
	return c, nil
}

func (c *consumer) lastSeq() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

func (c *consumer) stop() { c.cc.Stop() }

func (c *consumer) deliveries() []delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]delivery(nil), c.seen...)
}
