package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/pgtest"
	"github.com/pgjet/pgjet/internal/relay"
	"github.com/pgjet/pgjet/internal/service"
	"github.com/pgjet/pgjet/internal/verify"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// status runs verify as main would and returns its exit status and what it printed.
func status(t *testing.T, cfg verify.Config, repair bool) (int, string) {
	t.Helper()
	var out strings.Builder
	err := run(t.Context(), cfg, repair, true, &out)
	if err == nil {
		return 0, out.String()
	}
	var ee *service.ExitError
	require.True(t, errors.As(err, &ee), "%v", err)
	return ee.Code, out.String()
}

// Exit status 1 while JetStream lacks an event, 0 once -repair has re-published it (and on
// later checks: the repaired event behind later versions of its stream is no violation),
// 1 when what is wrong cannot be repaired, 2 when the check cannot be done.
func TestExitStatus(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.Pool(t)
	require.NoError(t, pgjet.Migrate(ctx, pool))
	store, err := pgjet.New(pgjet.Config{Pool: pool})
	require.NoError(t, err)
	_, err = store.Registry().RegisterFS(ctx, demoschemas.Files)
	require.NoError(t, err)
	nc, js := natstest.Connect(t, natstest.Server(t))
	for i := range 9 {
		stream := fmt.Sprintf("order-%d", i%3)
		_, err := store.Append(ctx, stream, pgjet.Any, pgjet.EventData{ID: uuid.New(), Type: "pgjet.demo.order.OrderCancelled",
			Data: json.RawMessage(fmt.Sprintf(`{"order_id":"%s","reason":"#%d","cancelled_at":"2026-11-26T10:00:00Z"}`, uuid.New(), i))})
		require.NoError(t, err)
	}
	r, err := relay.New(relay.Config{Pool: pool, Conn: nc, PollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pgjet.outbox`).Scan(&n))
		return n == 0
	}, 10*time.Second, 20*time.Millisecond)
	stop()
	require.NoError(t, <-done)
	cfg := verify.Config{Pool: pool, JetStream: js}

	code, out := status(t, cfg, false)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "JetStream agrees with Postgres")

	// The first event of a stream is lost.
	s, err := js.Stream(ctx, "PGJET_EVENTS")
	require.NoError(t, err)
	lost, err := s.GetMsg(ctx, 1)
	require.NoError(t, err)
	require.NoError(t, s.DeleteMsg(ctx, 1))
	require.Equal(t, "1", lost.Header.Get(relay.HeaderStreamVersion))
	id := lost.Header.Get("ce-id") + " " + lost.Header.Get("ce-subject") + " v1"
	code, out = status(t, cfg, false)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "missing=1")
	require.Contains(t, out, "  missing: "+id)
	require.Contains(t, out, "JetStream differs from Postgres")

	code, out = status(t, cfg, true)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "re-published 1 of 1 missing events")
	require.Contains(t, out, "after the repair: postgres=9 pending=0 jetstream=9 other_subjects=0 missing=0 duplicates=0 out_of_order=0 unexpected=0 repaired=1")
	require.Contains(t, out, "  repaired: "+id)
	require.Contains(t, out, "behind v3")
	require.Contains(t, out, "JetStream agrees with Postgres")

	code, out = status(t, cfg, false)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "repaired=1")

	// A message no committed event stands behind: -repair cannot help.
	h := nats.Header{}
	h.Set("ce-id", uuid.NewString())
	_, err = js.PublishMsg(ctx, &nats.Msg{Subject: lost.Subject, Header: h})
	require.NoError(t, err)
	code, out = status(t, cfg, true)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "unexpected=1")
	require.NotContains(t, out, "re-published")

	// A stream that is not there: the check cannot be done.
	code, _ = status(t, verify.Config{Pool: pool, JetStream: js, Stream: "NOT_THERE"}, true)
	require.Equal(t, 2, code)
}
