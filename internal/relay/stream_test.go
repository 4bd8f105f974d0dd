package relay_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/relay"
	"github.com/pgjet/pgjet/internal/subject"
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

// Two callers finding no stream create it at once with different publish settings: the
// one whose create is refused (the stream exists, with other settings) updates the stream
// it finds, keeping the other's setting, instead of failing or replacing it.
func TestEnsureStreamCreatedAtOnceWithOtherSettings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, js := natstest.Connect(t, natstest.Server(t))
	for i := range 20 {
		name := fmt.Sprintf("EVENTS_%d", i)
		subjects, err := subject.New(fmt.Sprintf("round%d.events", i))
		require.NoError(t, err)
		start := make(chan struct{})
		errs := make(chan error, 2)
		for _, sc := range []relay.StreamConfig{{AllowBatchPublish: true}, {AllowAtomicPublish: true}} {
			sc.Name, sc.Subjects = name, subjects
			go func() {
				<-start
				_, err := relay.EnsureStream(ctx, js, sc)
				errs <- err
			}()
		}
		close(start)
		require.NoError(t, <-errs, "round %d", i)
		require.NoError(t, <-errs, "round %d", i)
		s, err := js.Stream(ctx, name)
		require.NoError(t, err)
		require.True(t, s.CachedInfo().Config.AllowBatchPublish, "round %d", i)
		require.True(t, s.CachedInfo().Config.AllowAtomicPublish, "round %d", i)
	}
}

// Relays of one group starting together with different publish modes both get theirs:
// each ensures the stream under a Postgres lock, so neither updates the stream from what
// it read before the other's update (which would take the other's setting away).
func TestRelaysStartingTogetherKeepEachOthersPublishSettings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := natstest.Server(t)
	nc, js := natstest.Connect(t, srv)
	e := newEnvOn(t, "", nc, js, srv.ClientURL())
	for i := range 10 {
		sc := relay.StreamConfig{Name: fmt.Sprintf("EVENTS_%d", i)}
		var err error
		sc.Subjects, err = subject.New(fmt.Sprintf("round%d.events", i))
		require.NoError(t, err)
		if i%2 == 1 { // half the rounds start from a stream that has neither setting
			_, err := relay.EnsureStream(ctx, js, sc)
			require.NoError(t, err)
		}
		batch := startOwnRelay(t, e.url, nc, relay.Config{Stream: sc, BatchPublish: true})
		atomic := startOwnRelay(t, e.url, nc, relay.Config{Stream: sc, AtomicPublish: true})
		waitUntil(t, 10*time.Second, "both relays have started", func() bool {
			return batch.r.Ready() == nil && atomic.r.Ready() == nil
		})
		s, err := js.Stream(ctx, sc.Name)
		require.NoError(t, err)
		require.True(t, s.CachedInfo().Config.AllowBatchPublish, "round %d", i)
		require.True(t, s.CachedInfo().Config.AllowAtomicPublish, "round %d", i)
		batch.stop()
		atomic.stop()
	}
}
