package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/relay"
)

// EnsureStream creates the stream, leaves a matching one alone (every relay calls it at its
// start) and updates one whose settings differ.
func TestEnsureStreamUpdatesOnlyWhatDiffers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nc, js := natstest.Connect(t, natstest.Server(t))
	updates := make(chan *nats.Msg, 10)
	sub, err := nc.ChanSubscribe("$JS.EVENT.ADVISORY.STREAM.UPDATED.PGJET_EVENTS", updates)
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	require.NoError(t, nc.Flush())

	_, err = relay.EnsureStream(ctx, js, relay.StreamConfig{})
	require.NoError(t, err)
	_, err = relay.EnsureStream(ctx, js, relay.StreamConfig{})
	require.NoError(t, err)
	s, err := relay.EnsureStream(ctx, js, relay.StreamConfig{MaxAge: time.Hour})
	require.NoError(t, err)
	require.Equal(t, time.Hour, s.CachedInfo().Config.MaxAge)
	require.NoError(t, nc.Flush())

	select {
	case <-updates: // the MaxAge change
	case <-time.After(5 * time.Second):
		t.Fatal("changing MaxAge did not update the stream")
	}
	select {
	case m := <-updates:
		t.Fatalf("the stream was updated twice, once without a change: %s", m.Data)
	case <-time.After(300 * time.Millisecond):
	}
}

// An update for a pgjet setting keeps what an operator set on the stream beside pgjet's
// settings.
func TestEnsureStreamKeepsOperatorSettings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, js := natstest.Connect(t, natstest.Server(t))
	s, err := relay.EnsureStream(ctx, js, relay.StreamConfig{})
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	cfg.MaxMsgSize = 512 << 10
	cfg.MaxMsgsPerSubject = 1000
	cfg.Metadata = map[string]string{"owner": "ops"}
	cfg.Compression = jetstream.S2Compression
	_, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)

	s, err = relay.EnsureStream(ctx, js, relay.StreamConfig{MaxAge: time.Hour, MaxBytes: 64 << 20})
	require.NoError(t, err)
	got := s.CachedInfo().Config
	require.Equal(t, time.Hour, got.MaxAge)
	require.Equal(t, int64(64<<20), got.MaxBytes, "the relay's -max-bytes")
	require.Equal(t, int32(512<<10), got.MaxMsgSize)
	require.Equal(t, int64(1000), got.MaxMsgsPerSubject)
	require.Equal(t, "ops", got.Metadata["owner"])
	require.Equal(t, jetstream.S2Compression, got.Compression)
}

// A stream an operator created with the async persist mode, which nats-server refuses
// beside atomic publishes (and no update can change), is kept: EnsureStream leaves
// AllowAtomicPublish off there, and a relay with AtomicPublish publishes per stream.
func TestEnsureStreamKeepsAsyncPersistMode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, js := natstest.Connect(t, natstest.Server(t))
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PGJET_EVENTS", Subjects: []string{"pgjet.events.>"},
		Storage: jetstream.FileStorage, PersistMode: jetstream.AsyncPersistMode})
	require.NoError(t, err)

	s, err := relay.EnsureStream(ctx, js, relay.StreamConfig{MaxAge: time.Hour, AllowAtomicPublish: true})
	require.NoError(t, err)
	got := s.CachedInfo().Config
	require.Equal(t, time.Hour, got.MaxAge)
	require.Equal(t, jetstream.AsyncPersistMode, got.PersistMode)
	require.False(t, got.AllowAtomicPublish)
}

// Batch and atomic publishes raise the JetStream API level a stream needs, which older
// nodes of a cluster being upgraded do not serve: the stream allows them only once a relay
// asks, and keeps them when a relay of the group without them starts.
func TestEnsureStreamAllowsBatchPublishesOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nc, js := natstest.Connect(t, natstest.Server(t))

	s, err := relay.EnsureStream(ctx, js, relay.StreamConfig{})
	require.NoError(t, err)
	require.False(t, s.CachedInfo().Config.AllowBatchPublish)
	require.False(t, s.CachedInfo().Config.AllowAtomicPublish)

	s, err = relay.EnsureStream(ctx, js, relay.StreamConfig{AllowAtomicPublish: true})
	require.NoError(t, err)
	require.False(t, s.CachedInfo().Config.AllowBatchPublish)
	require.True(t, s.CachedInfo().Config.AllowAtomicPublish)
	s, err = relay.EnsureStream(ctx, js, relay.StreamConfig{AllowBatchPublish: true})
	require.NoError(t, err)
	require.True(t, s.CachedInfo().Config.AllowBatchPublish)
	require.True(t, s.CachedInfo().Config.AllowAtomicPublish, "kept")

	updates := make(chan *nats.Msg, 10)
	sub, err := nc.ChanSubscribe("$JS.EVENT.ADVISORY.STREAM.UPDATED.PGJET_EVENTS", updates)
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	require.NoError(t, nc.Flush())
	s, err = relay.EnsureStream(ctx, js, relay.StreamConfig{})
	require.NoError(t, err)
	require.True(t, s.CachedInfo().Config.AllowBatchPublish, "kept")
	require.True(t, s.CachedInfo().Config.AllowAtomicPublish, "kept")
	require.NoError(t, nc.Flush())
	select {
	case m := <-updates:
		t.Fatalf("a relay without batch publishes updated the stream: %s", m.Data)
	case <-time.After(300 * time.Millisecond):
	}
}
