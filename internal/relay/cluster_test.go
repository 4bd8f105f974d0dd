package relay_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/embednats"
	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/relay"
)

// On a 3-node JetStream cluster with an R3 stream, the stream leader is shut down and
// restarted twice while writers append and the relay publishes: publishing continues on
// the new leader, and afterwards every committed event is stored once and in stream order.
// embednats' Shutdown is graceful (the node hands its leaderships off); see
// TestR3StreamLeaderKilled for an abrupt kill.
func TestR3StreamLeaderShutdownAndRestart(t *testing.T) {
	t.Parallel()
	nodes := natstest.Cluster(t, 3)
	nc, js := natstest.Connect(t, nodes[0], nodes[1], nodes[2])
	e := newEnvOn(t, "", nc, js, nodes[0].ClientURL())
	w := startPacedWriters(t, e.store, 3, 100000, 16, 5*time.Millisecond)
	e.startRelay(t, relay.Config{BatchSize: 50, Window: 16, PublishTimeout: 2 * time.Second,
		Stream: relay.StreamConfig{Replicas: 3}})
	for round := range 2 {
		before := streamMsgs(t, js)
		waitUntil(t, 20*time.Second, "publishing", func() bool { return streamMsgs(t, js) > before+50 })
		leader := natstest.StreamLeader(t, nodes, "PGJET_EVENTS")
		t0 := time.Now()
		leader.Shutdown()
		t1 := time.Now()
		next := natstest.StreamLeader(t, nodes, "PGJET_EVENTS")
		t2 := time.Now()
		before = streamMsgs(t, js)
		waitUntil(t, 20*time.Second, "publishing without the old leader", func() bool { return streamMsgs(t, js) > before+50 })
		t3 := time.Now()
		if err := leader.Restart(); err != nil {
			t.Fatal(err)
		}
		natstest.WaitReplicasCurrent(t, js, "PGJET_EVENTS") // so the next round's election has a quorum at once
		t.Logf("round %d: leader %s shut down in %s, %s took over after %s, publishing after %s, restarted in %s; %d messages",
			round, leader.Name(), t1.Sub(t0), next.Name(), t2.Sub(t1), t3.Sub(t2), time.Since(t3), streamMsgs(t, js))
	}
	w.waitAppends(t, 50)
	committed := w.finish()
	t3 := time.Now()
	waitDrained(t, e.pool, 20*time.Second)
	t.Logf("%d events committed, drained in %s", len(committed), time.Since(t3))
	// Direct gets may be answered by any replica: a restarted node must have caught up.
	natstest.WaitReplicasCurrent(t, js, "PGJET_EVENTS")
	checkExactlyOnceInOrder(t, readAll(t, js), committed)
}

// natsChildEnv holds, for a child process that runs one nats-server cluster node, its
// options as JSON (natsNode).
const natsChildEnv = "PGJET_RELAY_TEST_NATS_NODE"

// natsNode is one cluster node in a child process, so that the test can SIGKILL it: no
// lame-duck mode, no leadership hand-off, no final flush of the lazily synced store.
type natsNode struct {
	Name      string   `json:"name"`
	Dir       string   `json:"dir"`
	Port      int      `json:"port"`
	RoutePort int      `json:"route_port"`
	Routes    []string `json:"routes"`

	cmd *exec.Cmd
}

func runNATSChild() {
	var n natsNode
	if err := json.Unmarshal([]byte(os.Getenv(natsChildEnv)), &n); err != nil {
		panic(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	s, err := embednats.Start(embednats.Options{
		Dir: n.Dir, Port: n.Port, ServerName: n.Name, LazySync: true,
		Cluster: &embednats.ClusterOptions{Name: natstest.ClusterName, Port: n.RoutePort, Routes: n.Routes},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("ready")
	<-ctx.Done()
	s.Shutdown()
}

func (n *natsNode) start(t *testing.T) {
	t.Helper()
	spec, err := json.Marshal(n)
	require.NoError(t, err)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), natsChildEnv+"="+string(spec))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "ready\n", line)
	n.cmd = cmd
}

func (n *natsNode) kill() {
	if n.cmd != nil {
		_ = n.cmd.Process.Kill()
		_ = n.cmd.Wait()
		n.cmd = nil
	}
}

func (n *natsNode) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.Port) }

// childCluster starts a 3-node cluster of child processes.
func childCluster(t *testing.T) []*natsNode {
	t.Helper()
	var ports []int
	for range 6 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	nodes := make([]*natsNode, 3)
	for i := range nodes {
		nodes[i] = &natsNode{Name: fmt.Sprintf("n%d", i+1), Dir: t.TempDir(), Port: ports[i], RoutePort: ports[3+i]}
	}
	for i, n := range nodes {
		for j, m := range nodes {
			if i != j {
				n.Routes = append(n.Routes, fmt.Sprintf("nats-route://127.0.0.1:%d", m.RoutePort))
			}
		}
	}
	return nodes
}

// streamLeader asks JetStream which node leads the events stream.
func streamLeader(t *testing.T, js jetstream.JetStream) string {
	t.Helper()
	var leader string
	waitUntil(t, 20*time.Second, "a stream leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s, err := js.Stream(ctx, "PGJET_EVENTS")
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
			return false
		}
		leader = info.Cluster.Leader
		return true
	})
	return leader
}

// The stream leader of an R3 stream is SIGKILLed (nats-server in a child process: no
// graceful hand-off, lazily synced data not flushed) while writers append and the
// relay publishes, then restarted. Afterwards every committed event is stored once, in
// stream order. Per stream, and in atomic batches (their raft entries proposed together).
func TestR3StreamLeaderKilled(t *testing.T) {
	t.Parallel()
	for _, m := range []publishMode{publishModes[0], publishModes[2]} {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			testR3StreamLeaderKilled(t, m)
		})
	}
}

func testR3StreamLeaderKilled(t *testing.T, m publishMode) {
	began := time.Now()
	nodes := childCluster(t)
	for _, n := range nodes {
		n.start(t)
		t.Cleanup(n.kill)
	}
	nc, err := nats.Connect(nodes[0].url()+","+nodes[1].url()+","+nodes[2].url(),
		nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	waitUntil(t, 30*time.Second, "the cluster accepts an R3 stream", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := relay.EnsureStream(ctx, js, relay.StreamConfig{Replicas: 3})
		return err == nil
	})
	e := newEnvOn(t, "", nc, js, nodes[0].url())
	t.Logf("cluster up with an R3 stream after %s", time.Since(began))
	w := startPacedWriters(t, e.store, 3, 100000, 16, 10*time.Millisecond)
	e.startRelay(t, relay.Config{BatchSize: 50, Window: 16, PublishTimeout: 2 * time.Second, AtomicPublish: m.atomic,
		Stream: relay.StreamConfig{Replicas: 3}})
	byName := map[string]*natsNode{}
	for _, n := range nodes {
		byName[n.Name] = n
	}
	for round := range 1 { // an election after a kill takes nats-server 4-9 s
		before := streamMsgs(t, js)
		waitUntil(t, 20*time.Second, "publishing", func() bool { return streamMsgs(t, js) > before+50 })
		leader := byName[streamLeader(t, js)]
		t0 := time.Now()
		leader.kill()
		next := streamLeader(t, js)
		t1 := time.Now()
		before = streamMsgs(t, js)
		waitUntil(t, 20*time.Second, "publishing without the killed leader", func() bool { return streamMsgs(t, js) > before+50 })
		t2 := time.Now()
		leader.start(t)
		t.Logf("round %d: leader %s killed, %s took over after %s, publishing again after %s, restarted in %s; %d messages",
			round, leader.Name, next, t1.Sub(t0), t2.Sub(t1), time.Since(t2), streamMsgs(t, js))
	}
	w.waitAppends(t, 50)
	committed := w.finish()
	t3 := time.Now()
	waitDrained(t, e.pool, 20*time.Second)
	t.Logf("%d events committed, drained in %s", len(committed), time.Since(t3))
	// Direct gets may be answered by any replica: a restarted node must have caught up.
	natstest.WaitReplicasCurrent(t, js, "PGJET_EVENTS")
	checkExactlyOnceInOrder(t, readAll(t, js), committed)
}
