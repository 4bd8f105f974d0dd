package natstest

import (
	"fmt"
	"net"
	"testing"
)

// A port chosen for a node and taken by someone else before the node binds it: the cluster
// starts again on other ports. Not parallel: it sets portsChosen.
func TestClusterStartsAgainWhenAPortIsTaken(t *testing.T) {
	if testing.Short() {
		t.Skip("3-node cluster")
	}
	attempts := 0
	portsChosen = func(ports []int) {
		attempts++
		if attempts > 1 {
			return
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", ports[2])) // node 3's client port
		if err != nil {
			t.Fatalf("taking port %d: %v", ports[2], err)
		}
		t.Cleanup(func() { _ = l.Close() })
	}
	t.Cleanup(func() { portsChosen = nil })
	nodes := Cluster(t, 3)
	if attempts != 2 {
		t.Fatalf("%d attempts, want 2", attempts)
	}
	for _, s := range nodes {
		if !s.Running() {
			t.Fatalf("node %s not running", s.NATS().Name())
		}
	}
}
