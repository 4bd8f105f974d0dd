package verify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/pgtest"
	"github.com/pgjet/pgjet/internal/relay"
	"github.com/pgjet/pgjet/internal/verify"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func cancelled(stream string, n int) pgjet.EventData {
	return pgjet.EventData{ID: uuid.New(), Type: "pgjet.demo.order.OrderCancelled", Data: json.RawMessage(fmt.Sprintf(
		`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","reason":"%s #%d","cancelled_at":"2026-11-26T10:00:00Z"}`, stream, n))}
}

// JetStream loses messages (deleted here), gains a duplicate and a message no committed
// event stands behind; Check names each, Repair re-publishes the missing ones from Postgres
// with the relay's headers, and a second Check finds nothing missing.
func TestCheckFindsAndRepairFillsGaps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.DB(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, pgjet.Migrate(ctx, pool))
	store, err := pgjet.New(pgjet.Config{Pool: pool})
	require.NoError(t, err)
	_, err = store.Registry().RegisterFS(ctx, demoschemas.Files)
	require.NoError(t, err)
	srv := natstest.Server(t)
	nc, js := natstest.Connect(t, srv)

	ids := map[string]string{} // event id -> stream
	for i := range 60 {
		stream := fmt.Sprintf("order-%d", i%6)
		ev := cancelled(stream, i)
		_, err := store.Append(ctx, stream, pgjet.Any, ev)
		require.NoError(t, err)
		ids[ev.ID.String()] = stream
	}
	r, err := relay.New(relay.Config{Pool: pool, Conn: nc, PollInterval: 50 * time.Millisecond})
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

	// An event the relay has not published yet is pending, not missing.
	_, err = store.Append(ctx, "order-0", pgjet.Any, cancelled("order-0", 99))
	require.NoError(t, err)

	cfg := verify.Config{Pool: pool, JetStream: js}
	rep, err := verify.Check(ctx, cfg)
	require.NoError(t, err)
	require.True(t, rep.OK(), rep.String())
	require.Equal(t, 61, rep.Postgres)
	require.Equal(t, 1, rep.Pending)
	require.Equal(t, 60, rep.JetStream)

	s, err := js.Stream(ctx, "PGJET_EVENTS")
	require.NoError(t, err)
	// Delete the first events of three streams (each has later ones), and pick a later
	// event to duplicate.
	deleted := map[string]*nats.Msg{}
	var dup *nats.Msg
	for seq := uint64(1); seq <= 60; seq++ {
		m, err := s.GetMsg(ctx, seq)
		require.NoError(t, err)
		switch v := m.Header.Get(relay.HeaderStreamVersion); {
		case v == "1" && len(deleted) < 3:
			deleted[m.Header.Get("ce-id")] = &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data}
			require.NoError(t, s.DeleteMsg(ctx, seq))
		case v == "5" && dup == nil:
			dup = &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data}
		}
	}
	require.Len(t, deleted, 3)
	// A duplicate beyond the dedup window (no message id), and a message of no committed event.
	_, err = js.PublishMsg(ctx, &nats.Msg{Subject: dup.Subject, Header: withoutMsgID(dup.Header), Data: dup.Data})
	require.NoError(t, err)
	stray := nats.Header{}
	stray.Set("ce-id", uuid.NewString())
	stray.Set("ce-subject", "order-0")
	stray.Set(relay.HeaderStreamVersion, "1000")
	_, err = js.PublishMsg(ctx, &nats.Msg{Subject: dup.Subject, Header: stray, Data: dup.Data})
	require.NoError(t, err)

	rep, err = verify.Check(ctx, cfg)
	require.NoError(t, err)
	require.False(t, rep.OK())
	require.Len(t, rep.Missing, 3, rep.String())
	require.Len(t, rep.Duplicates, 1, rep.String())
	require.Equal(t, dup.Header.Get("ce-id"), rep.Duplicates[0].ID)
	require.Len(t, rep.Unexpected, 1, rep.String())
	require.Equal(t, stray.Get("ce-id"), rep.Unexpected[0].ID)
	require.Empty(t, rep.OutOfOrder, rep.String())
	for _, m := range rep.Missing {
		require.Contains(t, deleted, m.ID)
	}

	n, err := verify.Repair(ctx, cfg, rep.Missing)
	require.NoError(t, err)
	require.Equal(t, 3, n)

	after, err := verify.Check(ctx, cfg)
	require.NoError(t, err)
	require.Empty(t, after.Missing, after.String())
	require.Len(t, after.OutOfOrder, 3, "repaired events land after their streams' later versions")

	// The repaired message is the original message, but for its place in the stream.
	original := deleted[rep.Missing[0].ID]
	info, err := s.Info(ctx)
	require.NoError(t, err)
	var repaired *nats.Msg
	for seq := info.State.LastSeq; seq > 0 && repaired == nil; seq-- {
		m, err := s.GetMsg(ctx, seq)
		require.NoError(t, err)
		if m.Header.Get("ce-id") == original.Header.Get("ce-id") {
			repaired = &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data}
		}
	}
	require.NotNil(t, repaired)
	require.Equal(t, original.Subject, repaired.Subject)
	require.Equal(t, original.Data, repaired.Data)
	for k := range original.Header {
		// Nats-Msg-Id was dropped (the id was still in the dedup window); the other Nats-
		// headers are added by direct get: sequence, time, subject.
		if !strings.HasPrefix(k, "Nats-") {
			require.Equal(t, original.Header.Get(k), repaired.Header.Get(k), k)
		}
	}
}

func withoutMsgID(h nats.Header) nats.Header {
	out := nats.Header{}
	for k, v := range h {
		if k != "Nats-Msg-Id" {
			out[k] = v
		}
	}
	return out
}
