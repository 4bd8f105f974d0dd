package subscription_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/embednats"
	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/subscription"
)

// Whether a stream is parked is read from the leader of the bucket's stream, never by a
// direct get that a lagging follower may answer: on a 3-node cluster the bucket, made by a
// member or found as nats.go's CreateKeyValue (and earlier members) made it, ends with
// direct gets off, and a Get goes out as $JS.API.STREAM.MSG.GET.
func TestParkedBucketIsReadFromTheLeader(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("3-node cluster")
	}
	nodes := natstest.Cluster(t, 3)
	nc, js := natstest.Connect(t, nodes[0], nodes[1:]...)
	for _, tc := range []struct {
		name     string
		existing bool // made beforehand by CreateKeyValue, with direct gets on
	}{
		{name: "missing"},
		{name: "made with direct gets", existing: true},
	} {
		// Not parallel: both use ParkedBucket.
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			if tc.existing {
				_, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: subscription.ParkedBucket, Replicas: 3})
				require.NoError(t, err)
			}
			t.Cleanup(func() {
				// t.Context() is done by now.
				require.NoError(t, js.DeleteKeyValue(context.Background(), subscription.ParkedBucket))
			})

			kv, err := subscription.OpenParked(ctx, js, 3)
			require.NoError(t, err)
			st, err := js.Stream(ctx, "KV_"+subscription.ParkedBucket)
			require.NoError(t, err)
			require.False(t, st.CachedInfo().Config.AllowDirect)
			require.Equal(t, 3, st.CachedInfo().Config.Replicas)

			gets, err := nc.SubscribeSync("$JS.API.*.GET.KV_" + subscription.ParkedBucket + ".>")
			require.NoError(t, err)
			leaderGets, err := nc.SubscribeSync("$JS.API.STREAM.MSG.GET.KV_" + subscription.ParkedBucket)
			require.NoError(t, err)
			require.NoError(t, nc.Flush())
			_, err = kv.Create(ctx, "g.a", []byte("parked"))
			require.NoError(t, err)
			e, err := kv.Get(ctx, "g.a")
			require.NoError(t, err)
			require.Equal(t, "parked", string(e.Value()))
			_, err = leaderGets.NextMsg(waitTimeout)
			require.NoError(t, err, "the Get sent to the stream leader")
			_, err = gets.NextMsg(0)
			require.ErrorIs(t, err, nats.ErrTimeout, "no direct get")
		})
	}
}

// A follower cut off from the other nodes goes on answering direct gets from its own
// store, which lacks what the others wrote since: there, a stream parked after the cut
// reads as not parked, and a member connected to it would hand the stream's next event
// to its handler. The parked bucket is read from the stream leader instead, so that
// member gets an error (and the event is redelivered later), never a stale "not parked".
func TestParkedStreamIsNotReadStaleFromAFollower(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("3-node cluster")
	}
	ctx := t.Context()
	nodes, links := natstest.ClusterWithLinks(t, 3)
	_, js := natstest.Connect(t, nodes[0], nodes[1:]...)
	_, err := subscription.OpenParked(ctx, js, 3)
	require.NoError(t, err)
	const directBucket = "DIRECT" // as nats.go makes buckets: direct gets on
	_, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: directBucket, Replicas: 3})
	require.NoError(t, err)
	streams := []string{"KV_" + subscription.ParkedBucket, "KV_" + directBucket}

	// The follower is a node leading neither bucket's stream; the writer is connected to
	// another node only.
	leaders := map[string]bool{}
	for _, st := range streams {
		leaders[natstest.StreamLeader(t, nodes, st).Name()] = true
	}
	f := slices.IndexFunc(nodes, func(s *embednats.Server) bool { return !leaders[s.Name()] })
	_, fjs := natstest.Connect(t, nodes[f])
	_, wjs := natstest.Connect(t, nodes[(f+1)%len(nodes)])
	open := func(js jetstream.JetStream) (parked, direct jetstream.KeyValue) {
		t.Helper()
		parked, err := subscription.OpenParked(ctx, js, 3)
		require.NoError(t, err)
		direct, err = js.KeyValue(ctx, directBucket)
		require.NoError(t, err)
		return parked, direct
	}
	fParked, fDirect := open(fjs) // while the follower can still reach the leaders
	wParked, wDirect := open(wjs)
	for _, kv := range []jetstream.KeyValue{wParked, wDirect} {
		_, err := kv.Create(ctx, "g.before", []byte("parked"))
		require.NoError(t, err)
	}
	for _, st := range streams {
		natstest.WaitReplicasCurrent(t, wjs, st)
	}
	// A follower takes part in direct gets once it is caught up, checked every 2s.
	waitDirectGets(t, nodes[f], "KV_"+directBucket)

	links.Isolate(t, f)
	for _, kv := range []jetstream.KeyValue{wParked, wDirect} {
		_, err := kv.Create(ctx, "g.after", []byte("parked"))
		require.NoError(t, err, "written by the leader and the other follower")
	}

	// The hazard: the follower answers, from what it had.
	e, err := fDirect.Get(ctx, "g.before")
	require.NoError(t, err)
	require.Equal(t, "parked", string(e.Value()))
	_, err = fDirect.Get(ctx, "g.after")
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound, "a stale read")

	// The parked bucket: no answer rather than a stale one.
	gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	e, err = fParked.Get(gctx, "g.after")
	require.Error(t, err, "read %v", e)
	require.NotErrorIs(t, err, jetstream.ErrKeyNotFound)
	t.Logf("the cut-off follower's read of the parked bucket: %v", err)
}
