package natstest

import (
	"fmt"
	"net"
	"testing"

	"github.com/pgjet/pgjet/internal/embednats"
	"github.com/pgjet/pgjet/internal/netproxy"
)

// Links are the route connections of a cluster started by [ClusterWithLinks]: node i
// reaches node j only through a loopback proxy of its own, so a test can cut a node off
// the others while it keeps running and serving its clients, as a network partition
// does. Its methods are safe for concurrent use.
type Links struct {
	nodes []*embednats.Server
	links [][]*netproxy.Proxy // links[i][j]: node i's route connections to node j
	// sink is the address every node advertises, which closes whatever connects: a node
	// that learns of another from a third one would otherwise route to it directly.
	sink net.Listener
}

// ClusterWithLinks starts a cluster like [Cluster] whose route connections run through
// [Links].
func ClusterWithLinks(t testing.TB, n int) ([]*embednats.Server, *Links) {
	t.Helper()
	l := &Links{}
	l.nodes = startCluster(t, n, l)
	return l.nodes, l
}

// Isolate cuts node i (0-based) off the others: its route connections are closed, new
// ones are refused until [Links.Heal], and it returns once no node has a route to or
// from it. The node keeps its clients, subscriptions and JetStream assets; the others
// see it as gone.
func (l *Links) Isolate(t testing.TB, i int) {
	t.Helper()
	for j := range l.links {
		if j != i {
			l.links[i][j].Cut()
			l.links[j][i].Cut()
		}
	}
	name := l.nodes[i].Name()
	waitFor(t, "node "+name+" cut off", func() bool {
		for j, s := range l.nodes {
			if !s.Running() {
				continue
			}
			rz, err := s.NATS().Routez(nil)
			if err != nil {
				return false
			}
			for _, r := range rz.Routes {
				if j == i || r.RemoteName == name {
					return false
				}
			}
		}
		return true
	})
}

// Heal lets node i route to the others again; the nodes reconnect on their own.
func (l *Links) Heal(t testing.TB, i int) {
	t.Helper()
	for j := range l.links {
		if j != i {
			l.links[i][j].Restore(t)
			l.links[j][i].Restore(t)
		}
	}
}

// start makes a proxy for every link, to the route ports of the nodes, and listens for
// the sink. Called before the nodes start, so that the proxies' cleanups run after the
// nodes' shutdown.
func (l *Links) start(t testing.TB, routePorts []int) {
	t.Helper()
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	l.sink = sink
	t.Cleanup(func() { _ = sink.Close() })
	go func() {
		for {
			c, err := sink.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	n := len(routePorts)
	l.links = make([][]*netproxy.Proxy, n)
	for i := range n {
		l.links[i] = make([]*netproxy.Proxy, n)
		for j, p := range routePorts {
			if i != j {
				l.links[i][j] = netproxy.New(t, fmt.Sprintf("127.0.0.1:%d", p), netproxy.Config{})
			}
		}
	}
}
