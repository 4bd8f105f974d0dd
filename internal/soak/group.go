package soak

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet/subscription"
)

// groupName is the durable consumer of the soak's subscription group.
const groupName = "soak-batch"

// group is a subscription group whose members handle events in batches
// (subscription.BatchHandler) and record every event they are handed, redeliveries
// included. Members are killed in the middle of a batch and replaced, so delivery is at
// least once: deduplicated by (stream, version), the deliveries must be exactly the
// committed events.
type group struct {
	mu      sync.Mutex
	seen    []delivery
	members []*runningMember
	started int // members started so far, for their connection names
}

// runningMember is one member of the group with its own NATS connection.
type runningMember struct {
	cut  func() // cancel it and close its NATS connection
	wait func() // wait for its Run to return
}

func (g *group) record(evs []subscription.Event) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, e := range evs {
		g.seen = append(g.seen, delivery{id: e.ID, stream: e.StreamID, version: e.Version, seq: e.Sequence})
	}
}

func (g *group) deliveries() []delivery {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]delivery(nil), g.seen...)
}

// distinct returns how many different (stream, version) pairs the group was handed.
func (g *group) distinct() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	seen := make(map[streamVersion]bool, len(g.seen))
	for _, d := range g.seen {
		seen[streamVersion{d.stream, d.version}] = true
	}
	return len(seen)
}

// streamVersion identifies an event for deduplication.
type streamVersion struct {
	stream  string
	version int64
}

// startMember starts a member in slot i; s.group.mu is not held.
func (s *system) startMember(ctx context.Context, i int) (*runningMember, error) {
	g := s.group
	g.mu.Lock()
	g.started++
	n := g.started
	g.mu.Unlock()
	nc, err := connect(s.nats.ClientURL(), fmt.Sprintf("member-%d", n))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("soak: member %d: %w", n, err)
	}
	sub, err := subscription.New(js, subscription.Config{
		Group: groupName, BatchSize: 20, BatchWait: 50 * time.Millisecond,
		// A killed member's batch comes back to the group after AckWait.
		AckWait: 2 * time.Second, MaxDeliver: -1, Heartbeat: time.Second,
		BackoffMin: 100 * time.Millisecond, BackoffMax: time.Second, DrainTimeout: 5 * time.Second,
		Logger: s.cfg.Logger.With(zap.String("instance", fmt.Sprintf("member-%d", n))),
		BatchHandler: func(_ context.Context, evs []subscription.Event) error {
			g.record(evs)
			s.memberBatch.reached(i)
			return nil
		},
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = sub.Run(mctx)
	}()
	return &runningMember{
		cut: func() {
			// The batch's acknowledgements cannot be sent: the server redelivers it.
			cancel()
			nc.Close()
		},
		wait: func() { <-done },
	}, nil
}

// killMember kills the member in the middle of a batch (or, if none comes within wait, a
// random one wherever it is) and starts a new one in its slot. It reports whether a batch
// was caught.
func (s *system) killMember(ctx context.Context, wait time.Duration, random int) (bool, error) {
	g := s.group
	g.mu.Lock()
	n := len(g.members)
	g.mu.Unlock()
	if n == 0 {
		return false, nil
	}
	slot := random % n
	caught := s.memberBatch.kill(ctx, wait, func(i int) {
		slot = i
		g.mu.Lock()
		m := g.members[i]
		g.mu.Unlock()
		if m != nil {
			m.cut()
		}
	})
	g.mu.Lock()
	m := g.members[slot]
	g.members[slot] = nil
	g.mu.Unlock()
	if m != nil {
		m.cut()
		m.wait()
	}
	m, err := s.startMember(context.WithoutCancel(ctx), slot)
	if err != nil {
		return caught, err
	}
	g.mu.Lock()
	g.members[slot] = m
	g.mu.Unlock()
	return caught, nil
}

// stopGroup stops every member.
func (g *group) stop() {
	g.mu.Lock()
	ms := g.members
	g.members = nil
	g.mu.Unlock()
	for _, m := range ms {
		if m != nil {
			m.cut()
			m.wait()
		}
	}
}

// waitGroup polls until the group has been handed every event in Postgres.
func (s *system) waitGroup(ctx context.Context) bool {
	return poll(ctx, func(ctx context.Context) bool {
		var n int
		err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pgjet.events`).Scan(&n)
		return err == nil && s.group.distinct() >= n
	})
}
