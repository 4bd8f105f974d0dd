package natstest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgjet/pgjet/internal/embednats"
)

// ClusterName is the name of clusters started by [Cluster].
const ClusterName = "pgjet-test"

// waitTimeout bounds waits for clusters and leaders.
const waitTimeout = 30 * time.Second

// Server starts a standalone JetStream server on a random loopback port
// with a t.TempDir() store and lazy fsync. It is shut down when the test
// ends.
func Server(t testing.TB) *embednats.Server {
	t.Helper()
	return ServerWith(t, embednats.Options{LazySync: true})
}

// ServerWith starts a server with o, filling in Dir with t.TempDir() when
// empty. Note that o.LazySync false means SyncAlways. The server is shut
// down when the test ends.
func ServerWith(t testing.TB, o embednats.Options) *embednats.Server {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	s, err := embednats.Start(o)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// Connect connects a client to s (and to more, for a cluster) and returns
// it with its JetStream context. The client reconnects without limit, so it
// survives restarts of servers, and is closed when the test ends.
func Connect(t testing.TB, s *embednats.Server, more ...*embednats.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	urls := []string{s.ClientURL()}
	for _, m := range more {
		urls = append(urls, m.ClientURL())
	}
	nc, err := nats.Connect(strings.Join(urls, ","),
		nats.Name(t.Name()),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond),
	)
	if err != nil {
		t.Fatalf("natstest: connecting to %v: %v", urls, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natstest: jetstream: %v", err)
	}
	return nc, js
}

// Cluster starts an n-node JetStream cluster on loopback with random ports,
// lazy fsync and a t.TempDir() store per node, named n1..nN, and returns
// once it has a JetStream meta leader that all nodes follow. Each node can
// be shut down and restarted with its Shutdown and Restart methods. All
// nodes are shut down when the test ends.
func Cluster(t testing.TB, n int) []*embednats.Server {
	t.Helper()
	return startCluster(t, n, nil)
}

// startCluster starts the nodes of Cluster. With links, node i routes to node j
// through links[i][j] and advertises links.sink, so that no route bypasses the links.
//
// The routes need every node's ports before the first node starts, so they are chosen
// up front, and another process can take one in between (an outgoing connection's local
// port, in a busy test run): that node never becomes ready. The whole cluster is then
// started again, on other ports and in new directories, up to three times.
func startCluster(t testing.TB, n int, links *Links) []*embednats.Server {
	t.Helper()
	if n < 1 {
		t.Fatalf("natstest: cluster of %d nodes", n)
	}
	for attempt := 1; ; attempt++ {
		nodes, err := tryCluster(t, n, links)
		if err == nil {
			WaitMetaLeader(t, nodes)
			return nodes
		}
		if attempt == 3 {
			t.Fatalf("natstest: %v", err)
		}
		t.Logf("natstest: %v; starting the cluster again on other ports", err)
	}
}

// portsChosen, when set (by a test), is called with the ports of each attempt.
var portsChosen func(ports []int)

// tryCluster starts the n nodes of a cluster, or none: after a failure it shuts down the
// nodes it started.
func tryCluster(t testing.TB, n int, links *Links) ([]*embednats.Server, error) {
	t.Helper()
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	if portsChosen != nil {
		portsChosen(ports)
	}
	clientPorts, routePorts := ports[:n], ports[n:]
	routes := make([]string, n)
	for i, p := range routePorts {
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", p)
	}
	var advertise string
	if links != nil {
		links.start(t, routePorts)
		advertise = links.sink.Addr().String()
	}
	// The store directories come first: cleanups run last-registered first, so the nodes
	// are shut down before their directories are removed. Made inside the loop, each
	// directory was removed while its node still ran, and a node still writing made the
	// removal fail the test ("directory not empty").
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = t.TempDir()
	}
	nodes := make([]*embednats.Server, 0, n)
	t.Cleanup(func() { shutdownAll(nodes) })
	for i := range n {
		others := make([]string, 0, n-1)
		for j, r := range routes {
			if j == i {
				continue
			}
			if links != nil {
				r = "nats-route://" + links.links[i][j].Addr()
			}
			others = append(others, r)
		}
		s, err := embednats.Start(embednats.Options{
			Dir:        dirs[i],
			Port:       clientPorts[i],
			ServerName: fmt.Sprintf("n%d", i+1),
			LazySync:   true,
			Cluster: &embednats.ClusterOptions{
				Name:      ClusterName,
				Port:      routePorts[i],
				Routes:    others,
				Advertise: advertise,
			},
		})
		if err != nil {
			shutdownAll(nodes)
			return nil, fmt.Errorf("cluster node %d: %w", i+1, err)
		}
		nodes = append(nodes, s)
	}
	return nodes, nil
}

// WaitMetaLeader waits until one of the running nodes is the JetStream
// meta leader, it sees every node as a peer, and every running node is
// current with it. It fails the test after 30s and returns the leader.
func WaitMetaLeader(t testing.TB, nodes []*embednats.Server) *embednats.Server {
	t.Helper()
	var leader *embednats.Server
	waitFor(t, "a JetStream meta leader", func() bool {
		leader = nil
		for _, s := range nodes {
			if !s.Running() {
				continue
			}
			ns := s.NATS()
			if ns.JetStreamIsLeader() && len(ns.JetStreamClusterPeers()) == len(nodes) {
				leader = s
			}
			if !ns.JetStreamIsCurrent() {
				return false
			}
		}
		return leader != nil
	})
	return leader
}

// StreamLeader waits until a running node leads JetStream stream (in the
// default account) and returns it. It fails the test after 30s.
func StreamLeader(t testing.TB, nodes []*embednats.Server, stream string) *embednats.Server {
	t.Helper()
	var leader *embednats.Server
	waitFor(t, "a leader of stream "+stream, func() bool {
		for _, s := range nodes {
			if s.Running() && s.NATS().JetStreamIsStreamLeader(globalAccount, stream) {
				leader = s
				return true
			}
		}
		return false
	})
	return leader
}

// WaitReplicasCurrent waits until JetStream stream has a leader and every one of its
// followers is online and current, so that losing a node next leaves a quorum at once. It
// fails the test after 30s.
func WaitReplicasCurrent(t testing.TB, js jetstream.JetStream, stream string) {
	t.Helper()
	waitFor(t, "current replicas of stream "+stream, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		if err != nil || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != info.Config.Replicas-1 {
			return false
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current || r.Offline {
				return false
			}
		}
		return true
	})
}

// globalAccount is nats-server's default account, used without auth.
const globalAccount = "$G"

// waitFor polls cond until it holds, failing the test after waitTimeout.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("natstest: no %s within %s", what, waitTimeout)
		case <-tick.C:
		}
	}
}

// freePorts returns n distinct free loopback ports, holding all listeners
// at once so the kernel does not hand out the same port twice.
func freePorts(n int) ([]int, error) {
	ports := make([]int, n)
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

func shutdownAll(nodes []*embednats.Server) {
	var wg sync.WaitGroup
	for _, s := range nodes {
		wg.Go(s.Shutdown)
	}
	wg.Wait()
}
