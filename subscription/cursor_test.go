package subscription_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/subscription"
)

// A cursor reads from the event after the position it is created at, in stream order, only
// what its subjects select; a new cursor at a position re-reads from there.
func TestCursorReadsFromAPosition(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := range 6 {
		e.publish(t, []string{"order-1", "invoice-1"}[i%2], placed)
	}
	cfg := subscription.CursorConfig{Name: "cursor", Subjects: []string{"pgjet.events.order.>"}}
	cur, err := subscription.NewCursor(t.Context(), e.js, cfg, 0)
	require.NoError(t, err)
	evs, err := cur.Fetch(10, time.Second)
	require.NoError(t, err)
	require.Equal(t, []string{"order-1/1", "order-1/2", "order-1/3"}, keys(evs))
	require.Equal(t, []uint64{1, 3, 5}, []uint64{evs[0].Sequence, evs[1].Sequence, evs[2].Sequence})
	evs, err = cur.Fetch(10, 100*time.Millisecond)
	require.NoError(t, err)
	require.Empty(t, evs, "nothing more within the wait")

	cur, err = subscription.NewCursor(t.Context(), e.js, cfg, 3)
	require.NoError(t, err)
	evs, err = cur.Fetch(10, time.Second)
	require.NoError(t, err)
	require.Equal(t, []string{"order-1/3"}, keys(evs))
	info, err := cur.Info(t.Context())
	require.NoError(t, err)
	require.Zero(t, info.NumPending)
	require.Equal(t, jetstream.AckNonePolicy, info.Config.AckPolicy)

	_, err = cur.Fetch(0, time.Millisecond)
	require.ErrorContains(t, err, "n must be at least 1", "a fetch of none is a mistake, not a fetch of one")

	_, err = subscription.NewCursor(t.Context(), e.js, subscription.CursorConfig{Name: "a.b"}, 0)
	require.ErrorContains(t, err, "cursor name")
}

// stealOne takes the next delivery of the cursor's consumer name from under it, as a
// delivery lost in flight would be.
func stealOne(t *testing.T, js jetstream.JetStream, name string) {
	t.Helper()
	cons, err := js.Consumer(context.Background(), subscription.DefaultStream, name)
	require.NoError(t, err)
	stolen, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
	require.NoError(t, err)
	n := 0
	for range stolen.Messages() {
		n++
	}
	require.Equal(t, 1, n)
}

// A message the cursor never receives (taken by someone else from its consumer, as one lost
// in flight would be) is reported as a gap, never passed over.
func TestCursorReportsAGap(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for range 3 {
		e.publish(t, "order-1", placed)
	}
	cur, err := subscription.NewCursor(t.Context(), e.js, subscription.CursorConfig{Name: "gappy"}, 0)
	require.NoError(t, err)
	evs, err := cur.Fetch(1, time.Second)
	require.NoError(t, err)
	require.Equal(t, []string{"order-1/1"}, keys(evs))

	stealOne(t, e.js, "gappy")

	_, err = cur.Fetch(10, time.Second)
	require.ErrorIs(t, err, subscription.ErrGap)
}

// A lost delivery that was the newest shows no jump in the sequence (nothing comes after
// it): an empty fetch asks the consumer and reports the gap, where it returned nothing, as
// if the cursor were caught up, until another event came.
func TestCursorReportsALostLastDelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for range 2 {
		e.publish(t, "order-1", placed)
	}
	cur, err := subscription.NewCursor(t.Context(), e.js, subscription.CursorConfig{Name: "tail"}, 0)
	require.NoError(t, err)
	evs, err := cur.Fetch(1, time.Second)
	require.NoError(t, err)
	require.Equal(t, []string{"order-1/1"}, keys(evs))
	stealOne(t, e.js, "tail")
	_, err = cur.Fetch(10, 100*time.Millisecond)
	require.ErrorIs(t, err, subscription.ErrGap)

	caughtUp, err := subscription.NewCursor(t.Context(), e.js, subscription.CursorConfig{Name: "tail"}, 2)
	require.NoError(t, err)
	evs, err = caughtUp.Fetch(10, 100*time.Millisecond)
	require.NoError(t, err, "nothing lost, nothing new")
	require.Empty(t, evs)
}

// A malformed message on the stream stops the cursor with an error naming its sequence.
func TestCursorRefusesAMalformedEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, err := e.js.PublishMsg(t.Context(), &nats.Msg{Subject: "pgjet.events.order.pgjet_demo_order_OrderPlaced.order-1", Header: nats.Header{}, Data: []byte("x")})
	require.NoError(t, err)
	cur, err := subscription.NewCursor(t.Context(), e.js, subscription.CursorConfig{Name: "strict"}, 0)
	require.NoError(t, err)
	_, err = cur.Fetch(10, time.Second)
	require.ErrorContains(t, err, "malformed event at sequence 1")
}
