package embednats_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/embednats"
)

func TestStartRequiresDir(t *testing.T) {
	t.Parallel()
	_, err := embednats.Start(embednats.Options{})
	require.ErrorIs(t, err, embednats.ErrNoDir)
}

func TestSyncAlwaysByDefault(t *testing.T) {
	t.Parallel()
	for _, lazy := range []bool{false, true} {
		s, err := embednats.Start(embednats.Options{Dir: t.TempDir(), LazySync: lazy})
		require.NoError(t, err)
		require.Equal(t, !lazy, s.NATS().JetStreamConfig().SyncAlways)
		s.Shutdown()
	}
}

func TestRestartKeepsURLAndData(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := embednats.Start(embednats.Options{Dir: t.TempDir(), Logf: t.Logf})
	require.NoError(t, err)
	defer s.Shutdown()
	url := s.ClientURL()
	require.Regexp(t, `^nats://127\.0\.0\.1:\d+$`, url)
	require.Empty(t, s.RouteURL())

	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Storage: jetstream.FileStorage})
	require.NoError(t, err)
	_, err = js.Publish(ctx, "s.1", []byte("kept"))
	require.NoError(t, err)

	require.NoError(t, s.Restart())
	require.Equal(t, url, s.ClientURL(), "restart keeps the port")
	require.True(t, s.Running())

	// The client reconnects on its own; the message survived.
	msg, err := retry(ctx, func() (*jetstream.RawStreamMsg, error) {
		st, err := js.Stream(ctx, "S")
		if err != nil {
			return nil, err
		}
		return st.GetMsg(ctx, 1)
	})
	require.NoError(t, err)
	require.Equal(t, "kept", string(msg.Data))

	s.Shutdown()
	s.Shutdown() // idempotent
	require.False(t, s.Running())
}

// retry calls f until it succeeds or ctx ends.
func retry[T any](ctx context.Context, f func() (T, error)) (T, error) {
	for {
		v, err := f()
		if err == nil || ctx.Err() != nil {
			return v, err
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}
