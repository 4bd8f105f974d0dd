package subscription_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

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
