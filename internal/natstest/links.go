package natstest

import (
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/pgjet/pgjet/internal/embednats"
)

// Links are the route connections of a cluster started by [ClusterWithLinks]: node i
// reaches node j only through a loopback proxy of its own, so a test can cut a node off
// the others while it keeps running and serving its clients, as a network partition
// does. Its methods are safe for concurrent use.
type Links struct {
	nodes []*embednats.Server
	links [][]*link // links[i][j]: node i's route connections to node j
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
	l.set(i, true)
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
func (l *Links) Heal(i int) {
	l.set(i, false)
}

func (l *Links) set(i int, cut bool) {
	for j := range l.links {
		if j != i {
			l.links[i][j].setCut(cut)
			l.links[j][i].setCut(cut)
		}
	}
}

// start listens for every link, to the route ports of the nodes, and for the sink.
func (l *Links) start(t testing.TB, routePorts []int) {
	t.Helper()
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("natstest: %v", err)
		}
		return ln
	}
	l.sink = listen()
	t.Cleanup(func() { _ = l.sink.Close() })
	go func() {
		for {
			c, err := l.sink.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	n := len(routePorts)
	l.links = make([][]*link, n)
	for i := range n {
		l.links[i] = make([]*link, n)
		for j, p := range routePorts {
			if i == j {
				continue
			}
			lk := &link{ln: listen(), to: fmt.Sprintf("127.0.0.1:%d", p), conns: map[net.Conn]struct{}{}}
			// Registered before the nodes' shutdown (see startCluster): runs after it.
			t.Cleanup(lk.close)
			go lk.serve()
			l.links[i][j] = lk
		}
	}
}

// link forwards the TCP connections it accepts to one route port, unless cut.
type link struct {
	ln    net.Listener
	to    string
	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{} // both ends of every forwarded connection
}

func (lk *link) serve() {
	for {
		c, err := lk.ln.Accept()
		if err != nil {
			return
		}
		go lk.forward(c)
	}
}

// forward copies between c and a new connection to the route port, both ways, until
// either side closes or the link is cut.
func (lk *link) forward(c net.Conn) {
	up, err := net.Dial("tcp", lk.to)
	if err != nil {
		_ = c.Close()
		return
	}
	if !lk.track(c, up) {
		return
	}
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, c)
		lk.untrack(c, up)
		close(done)
	}()
	_, _ = io.Copy(c, up)
	lk.untrack(c, up)
	<-done
}

// track records a forwarded connection, or closes it if the link is cut.
func (lk *link) track(conns ...net.Conn) bool {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	if lk.cut {
		for _, c := range conns {
			_ = c.Close()
		}
		return false
	}
	for _, c := range conns {
		lk.conns[c] = struct{}{}
	}
	return true
}

func (lk *link) untrack(conns ...net.Conn) {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
		delete(lk.conns, c)
	}
}

func (lk *link) setCut(cut bool) {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	lk.cut = cut
	if cut {
		for c := range lk.conns {
			_ = c.Close()
			delete(lk.conns, c)
		}
	}
}

func (lk *link) close() {
	_ = lk.ln.Close()
	lk.setCut(true)
}
