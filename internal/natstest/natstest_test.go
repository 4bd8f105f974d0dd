package natstest_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/embednats"
	"github.com/pgjet/pgjet/internal/natstest"
)

func TestServerPublishConsume(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := natstest.Server(t)
	_, js := natstest.Connect(t, s)

	st, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "EVENTS", Subjects: []string{"ev.>"}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute,
	})
	require.NoError(t, err)
	for i := range 5 {
		ack, err := js.Publish(ctx, fmt.Sprintf("ev.a.%d", i), []byte{byte(i)}, jetstream.WithMsgID(fmt.Sprint("id-", i)))
		require.NoError(t, err)
		require.False(t, ack.Duplicate)
	}
	ack, err := js.Publish(ctx, "ev.a.0", []byte{0}, jetstream.WithMsgID("id-0"))
	require.NoError(t, err)
	require.True(t, ack.Duplicate, "same Nats-Msg-Id within the window is a duplicate")

	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	batch, err := cons.Fetch(5, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	var got []byte
	for m := range batch.Messages() {
		got = append(got, m.Data()...)
		require.NoError(t, m.Ack())
	}
	require.NoError(t, batch.Error())
	require.Equal(t, []byte{0, 1, 2, 3, 4}, got)
}

func TestClusterSurvivesStreamLeaderLoss(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("3-node cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nodes := natstest.Cluster(t, 3)
	_, js := natstest.Connect(t, nodes[0], nodes[1:]...)

	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "EVENTS", Subjects: []string{"ev.>"}, Storage: jetstream.FileStorage, Replicas: 3,
	})
	require.NoError(t, err)
	publish := func(i int) {
		t.Helper()
		// Retry through the election: the publish is idempotent by msg id.
		for {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := js.Publish(pctx, "ev.x", []byte(fmt.Sprint(i)), jetstream.WithMsgID(fmt.Sprint(i)))
			cancel()
			if err == nil {
				return
			}
			require.NoError(t, ctx.Err(), "publish %d: %v", i, err)
		}
	}
	for i := range 10 {
		publish(i)
	}

	leader := natstest.StreamLeader(t, nodes, "EVENTS")
	leader.Shutdown()
	for i := 10; i < 20; i++ {
		publish(i)
	}
	newLeader := natstest.StreamLeader(t, nodes, "EVENTS")
	require.NotEqual(t, leader.Name(), newLeader.Name())

	info, err := js.Stream(ctx, "EVENTS")
	require.NoError(t, err)
	require.Equal(t, uint64(20), info.CachedInfo().State.Msgs)

	// The old leader comes back with its name, ports and store and catches up.
	require.NoError(t, leader.Restart())
	natstest.WaitMetaLeader(t, nodes)
	nc2, err := nats.Connect(leader.ClientURL())
	require.NoError(t, err)
	defer nc2.Close()
	js2, err := jetstream.New(nc2)
	require.NoError(t, err)
	// Caught up means both views agree: the stream leader counts the node as a current,
	// online replica with no lag, and the node itself says its replica is current. The
	// last state seen is printed when the wait fails, so a failure says which view lagged.
	var state string
	caughtUp := func() bool {
		st, err := js2.Stream(ctx, "EVENTS")
		if err != nil {
			state = fmt.Sprintf("stream info through the restarted node: %v", err)
			return false
		}
		info := st.CachedInfo()
		var replica *jetstream.PeerInfo
		if info.Cluster != nil {
			for _, r := range info.Cluster.Replicas {
				if r.Name == leader.Name() {
					replica = r
				}
			}
		}
		local := leader.NATS().JetStreamIsStreamCurrent("$G", "EVENTS")
		state = fmt.Sprintf("msgs %d, leader's view of %s: %+v, current by itself: %v",
			info.State.Msgs, leader.Name(), replica, local)
		return info.State.Msgs == 20 && replica != nil && replica.Current && !replica.Offline &&
			replica.Lag == 0 && local
	}
	deadline := time.Now().Add(time.Minute)
	for !caughtUp() {
		if time.Now().After(deadline) {
			t.Fatalf("restarted node did not catch up within a minute; last seen: %s", state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A node cut off by Links keeps serving its clients but sees no writes of the others,
// which go on with their quorum; healed, it routes again and catches up.
func TestClusterWithLinksIsolatesANode(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("3-node cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nodes, links := natstest.ClusterWithLinks(t, 3)
	_, js := natstest.Connect(t, nodes[0], nodes[1:]...)
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "EVENTS", Subjects: []string{"ev.>"}, Storage: jetstream.FileStorage, Replicas: 3,
	})
	require.NoError(t, err)
	_, err = js.Publish(ctx, "ev.x", []byte("before"))
	require.NoError(t, err)
	natstest.WaitReplicasCurrent(t, js, "EVENTS")

	leader := natstest.StreamLeader(t, nodes, "EVENTS")
	cut := slices.IndexFunc(nodes, func(s *embednats.Server) bool { return s != leader })
	nc, _ := natstest.Connect(t, nodes[cut])
	sub, err := nc.SubscribeSync("local")
	require.NoError(t, err)
	links.Isolate(t, cut)
	require.Zero(t, nodes[cut].NATS().NumRoutes())

	_, wjs := natstest.Connect(t, leader)
	_, err = wjs.Publish(ctx, "ev.x", []byte("during"))
	require.NoError(t, err, "the leader and the other follower are a quorum")
	require.NoError(t, nc.Publish("local", []byte("hi")))
	_, err = sub.NextMsg(5 * time.Second)
	require.NoError(t, err, "the cut-off node serves its clients")

	links.Heal(t, cut)
	natstest.WaitReplicasCurrent(t, wjs, "EVENTS")
	st, err := wjs.Stream(ctx, "EVENTS")
	require.NoError(t, err)
	require.Equal(t, uint64(2), st.CachedInfo().State.Msgs)
}
