package bench_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/bench"
	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// On a NATS server that already runs (NATS_URL), the bench keeps to its own streams: a real
// pgjet's PGJET_EVENTS and PGJET_DEADLETTERS are left as they were, an earlier run's
// PGJET_BENCH (whose message the consume scenario could not decode) is deleted first, and
// the bench's streams are gone afterwards.
func TestRunKeepsToItsOwnStreams(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	require.NoError(t, pgjet.Migrate(ctx, pool))
	nc, js := natstest.Connect(t, natstest.Server(t))
	events, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PGJET_EVENTS", Subjects: []string{"pgjet.events.>"}})
	require.NoError(t, err)
	_, err = js.Publish(ctx, "pgjet.events.order.x.order-1", []byte("not the bench's"))
	require.NoError(t, err)
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: bench.Stream, Subjects: []string{bench.SubjectPrefix + ".>"}})
	require.NoError(t, err)
	_, err = js.Publish(ctx, bench.SubjectPrefix+".order.x.order-1", []byte("an earlier run's"))
	require.NoError(t, err)

	res, err := bench.Run(ctx, bench.Config{
		Pool: pool, Conn: nc, Only: "relay,latency", Out: io.Discard,
		Duration: 300 * time.Millisecond, RelayEvents: 800, LatencyRate: 500, LatencyFor: 500 * time.Millisecond,
	})
	require.NoError(t, err)
	require.NotEmpty(t, res)
	for _, r := range res {
		require.Positive(t, r.Value, r.Name)
	}

	info, err := events.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(1), info.State.Msgs, "PGJET_EVENTS is not the bench's")
	names := js.StreamNames(ctx)
	var left []string
	for name := range names.Name() {
		left = append(left, name)
	}
	require.NoError(t, names.Err())
	require.Equal(t, []string{"PGJET_EVENTS"}, left, "no PGJET_DEADLETTERS made, the bench's own streams deleted")
}

// A misspelt scenario is an error, not a run that measures nothing.
func TestRunRefusesAnUnknownScenario(t *testing.T) {
	_, err := bench.Run(context.Background(), bench.Config{Only: "latency,relays", Out: io.Discard})
	require.ErrorContains(t, err, `no scenario "relays"`)
}
