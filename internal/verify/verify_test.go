package verify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/embednats"
	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/netproxy"
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
	env := setup(t)
	pool, store, js := env.pool, env.store, env.js
	for i := range 60 {
		stream := fmt.Sprintf("order-%d", i%6)
		_, err := store.Append(ctx, stream, pgjet.Any, cancelled(stream, i))
		require.NoError(t, err)
	}
	env.relayAll(t)

	// An event the relay has not published yet is pending, not missing.
	_, err := store.Append(ctx, "order-0", pgjet.Any, cancelled("order-0", 99))
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

	// The repaired events land behind their streams' later versions: that is the repair,
	// not an order violation. Only the duplicate and the stray message are left.
	after, err := verify.Check(ctx, cfg)
	require.NoError(t, err)
	require.Empty(t, after.Missing, after.String())
	require.Empty(t, after.OutOfOrder, after.String())
	require.Len(t, after.Duplicates, 1, after.String())
	require.Len(t, after.Unexpected, 1, after.String())
	require.Len(t, after.Repaired, 3, after.String())
	for _, e := range after.Repaired {
		require.Contains(t, deleted, e.ID)
		require.Equal(t, int64(1), e.Version)
		require.Greater(t, e.After, int64(1), e.String())
	}
	require.Contains(t, after.String(), "repaired=3")

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
	require.Equal(t, original.Header.Get("ce-id")+"/repaired", repaired.Header.Get("Nats-Msg-Id"))
	require.NotEmpty(t, repaired.Header.Get(verify.HeaderRepaired))
	require.Len(t, repaired.Header, len(original.Header)+1, "the relay's headers and the repair mark")
	require.Equal(t, original.Subject, repaired.Subject)
	require.Equal(t, original.Data, repaired.Data)
	for k := range original.Header {
		// Nats-Msg-Id is "<id>/repaired" (the id was still in the dedup window); the other
		// Nats- headers are added by direct get: sequence, time, subject.
		if !strings.HasPrefix(k, "Nats-") && k != verify.HeaderRepaired {
			require.Equal(t, original.Header.Get(k), repaired.Header.Get(k), k)
		}
	}
}

// env is a database with pgjet's tables and the demo schemas, and a JetStream server.
type env struct {
	pool  *pgxpool.Pool
	store *pgjet.Store
	nc    *nats.Conn
	js    jetstream.JetStream
}

// setup makes the database, and starts a JetStream server unless given one.
func setup(t *testing.T, srv ...*embednats.Server) *env {
	t.Helper()
	if len(srv) == 0 {
		srv = append(srv, natstest.Server(t))
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.DB(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, pgjet.Migrate(ctx, pool))
	store, err := pgjet.New(pgjet.Config{Pool: pool})
	require.NoError(t, err)
	_, err = store.Registry().RegisterFS(ctx, demoschemas.Files)
	require.NoError(t, err)
	nc, js := natstest.Connect(t, srv[0])
	return &env{pool: pool, store: store, nc: nc, js: js}
}

// relayAll runs a relay until the outbox is empty.
func (e *env) relayAll(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	r, err := relay.New(relay.Config{Pool: e.pool, Conn: e.nc, PollInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	require.Eventually(t, func() bool { return e.outbox(t) == 0 }, 30*time.Second, 20*time.Millisecond)
	stop()
	require.NoError(t, <-done)
}

func (e *env) outbox(t *testing.T) int {
	var n int
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FROM pgjet.outbox`).Scan(&n))
	return n
}

// publish publishes the event at (stream, version) as the relay would, leaving its outbox
// row in place.
func (e *env) publish(t *testing.T, stream string, version int64) relay.Event {
	t.Helper()
	ctx := context.Background()
	_, err := relay.EnsureStream(ctx, e.js, relay.StreamConfig{})
	require.NoError(t, err)
	var ev relay.Event
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT position, event_id::text, stream_id, version, type, schema_id, data, created_at
		FROM pgjet.events WHERE stream_id = $1 AND version = $2`, stream, version).Scan(
		&ev.Position, &ev.ID, &ev.Stream, &ev.Version, &ev.Type, &ev.SchemaID, &ev.Data, &ev.CreatedAt))
	_, err = e.js.PublishMsg(ctx, relay.Message(ev, relay.MessageOptions{Source: "pgjet", RegistryURL: "http://localhost:8080"}))
	require.NoError(t, err)
	return ev
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

// Version 2 of a stream is in JetStream while version 1 is still in the outbox: whenever
// the relay publishes version 1, it lands behind version 2. Check reports version 1 as out
// of order (and a pending event with nothing after it as merely pending).
func TestCheckFindsPendingEventOvertaken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := setup(t)
	_, err := env.store.Append(ctx, "order-1", pgjet.NoStream, cancelled("order-1", 1), cancelled("order-1", 2))
	require.NoError(t, err)
	_, err = env.store.Append(ctx, "order-2", pgjet.NoStream, cancelled("order-2", 1))
	require.NoError(t, err)
	v2 := env.publish(t, "order-1", 2)
	_, err = env.pool.Exec(ctx, `DELETE FROM pgjet.outbox WHERE position = $1`, v2.Position)
	require.NoError(t, err)

	rep, err := verify.Check(ctx, verify.Config{Pool: env.pool, JetStream: env.js})
	require.NoError(t, err)
	require.False(t, rep.OK(), rep.String())
	require.Equal(t, 2, rep.Pending)
	require.Empty(t, rep.Missing, rep.String())
	require.Len(t, rep.OutOfOrder, 1, rep.String())
	got := rep.OutOfOrder[0]
	require.Equal(t, "order-1", got.Stream)
	require.Equal(t, int64(1), got.Version)
	require.True(t, got.Pending)
	require.Equal(t, int64(2), got.After)
	require.Contains(t, got.String(), "order-1 v1")
	require.Contains(t, got.String(), "still in the outbox, behind v2")
}

// Messages that are not the relay's take no part in the checks of the events: a stray
// message with a high version does not make the stream's real events out of order, one
// at a real event's (stream, version) does not make that event a duplicate or missing,
// messages without an event id are unexpected (not duplicates of each other), and
// messages on subjects outside the events' prefix are counted and left alone.
func TestCheckKeepsStrayMessagesApart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := setup(t)
	s, err := relay.EnsureStream(ctx, env.js, relay.StreamConfig{})
	require.NoError(t, err)
	sc := s.CachedInfo().Config
	sc.Subjects = append(sc.Subjects, "other.>")
	_, err = env.js.UpdateStream(ctx, sc)
	require.NoError(t, err)

	stray := func(stream, version string) *nats.Msg {
		h := nats.Header{}
		h.Set("ce-id", uuid.NewString())
		h.Set("ce-subject", stream)
		h.Set(relay.HeaderStreamVersion, version)
		return &nats.Msg{Subject: "pgjet.events.order.x.y", Header: h}
	}
	for _, m := range []*nats.Msg{
		stray("order-1", "1"), stray("order-2", "1000"),
		{Subject: "pgjet.events.order.x.y", Data: []byte("no headers")},
		{Subject: "pgjet.events.order.x.y", Data: []byte("no headers either")},
		{Subject: "other.thing", Data: []byte("not pgjet's")},
	} {
		_, err := env.js.PublishMsg(ctx, m)
		require.NoError(t, err)
	}
	for _, stream := range []string{"order-1", "order-2"} {
		_, err := env.store.Append(ctx, stream, pgjet.NoStream, cancelled(stream, 1), cancelled(stream, 2), cancelled(stream, 3))
		require.NoError(t, err)
	}
	env.relayAll(t)

	rep, err := verify.Check(ctx, verify.Config{Pool: env.pool, JetStream: env.js})
	require.NoError(t, err)
	require.Equal(t, 6, rep.Postgres)
	require.Equal(t, 10, rep.JetStream)
	require.Equal(t, 1, rep.Other)
	require.Empty(t, rep.Missing, rep.String())
	require.Empty(t, rep.Duplicates, rep.String())
	require.Empty(t, rep.OutOfOrder, rep.String())
	require.Len(t, rep.Unexpected, 4, rep.String())
	for i, seq := range []uint64{1, 2, 3, 4} {
		require.Equal(t, seq, rep.Unexpected[i].Seq)
	}
}

// A relay publishing and appends committing while Check runs cause no false alarm: every
// check of a live system finds nothing wrong.
func TestCheckDuringRelayActivity(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := setup(t)
	_, err := relay.EnsureStream(ctx, env.js, relay.StreamConfig{})
	require.NoError(t, err)
	r, err := relay.New(relay.Config{Pool: env.pool, Conn: env.nc, PollInterval: 5 * time.Millisecond})
	require.NoError(t, err)
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 2)
	go func() { done <- r.Run(rctx) }()
	go func() {
		for i := 0; rctx.Err() == nil; i++ {
			stream := fmt.Sprintf("order-%d", i%8)
			if _, err := env.store.Append(rctx, stream, pgjet.Any, cancelled(stream, i), cancelled(stream, i)); err != nil && rctx.Err() == nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	cfg := verify.Config{Pool: env.pool, JetStream: env.js}
	require.Eventually(t, func() bool {
		info, err := env.js.Stream(ctx, "PGJET_EVENTS")
		return err == nil && info.CachedInfo().State.Msgs > 0
	}, 10*time.Second, 10*time.Millisecond)
	for range 15 {
		rep, err := verify.Check(ctx, cfg)
		require.NoError(t, err)
		require.True(t, rep.OK(), rep.String())
	}
	stop()
	require.NoError(t, <-done)
	require.NoError(t, <-done)
	rep, err := verify.Check(ctx, cfg)
	require.NoError(t, err)
	require.True(t, rep.OK(), rep.String())
	require.Greater(t, rep.JetStream, 0)
}

// Over a slow link (every byte from the server a second and a half late), Check reads the
// whole stream rather than taking a late answer for its end.
func TestCheckOverASlowLink(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := natstest.Server(t)
	env := setup(t, srv)
	for i := range 30 {
		stream := fmt.Sprintf("order-%d", i%3)
		_, err := env.store.Append(ctx, stream, pgjet.Any, cancelled(stream, i))
		require.NoError(t, err)
	}
	env.relayAll(t)

	slow := netproxy.New(t, strings.TrimPrefix(srv.ClientURL(), "nats://"), netproxy.Config{ToClientDelay: 1500 * time.Millisecond})
	nc, err := nats.Connect("nats://"+slow.Addr(), nats.Timeout(30*time.Second))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(30*time.Second))
	require.NoError(t, err)
	rep, err := verify.Check(ctx, verify.Config{Pool: env.pool, JetStream: js})
	require.NoError(t, err)
	require.True(t, rep.OK(), rep.String())
	require.Equal(t, 30, rep.JetStream)
}

// A stream longer than one pull is read whole: Check finds exactly the events deleted in
// its middle and at its end, and removes its consumer.
func TestCheckReadsABigStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := setup(t)
	for i := range 25 {
		stream := fmt.Sprintf("order-%d", i)
		evs := make([]pgjet.EventData, 100)
		for j := range evs {
			evs[j] = cancelled(stream, j)
		}
		_, err := env.store.Append(ctx, stream, pgjet.NoStream, evs...)
		require.NoError(t, err)
	}
	env.relayAll(t)
	s, err := env.js.Stream(ctx, "PGJET_EVENTS")
	require.NoError(t, err)
	deleted := map[string]bool{}
	for _, seq := range []uint64{1234, 2500} {
		m, err := s.GetMsg(ctx, seq)
		require.NoError(t, err)
		deleted[m.Header.Get("ce-id")] = true
		require.NoError(t, s.DeleteMsg(ctx, seq))
	}

	rep, err := verify.Check(ctx, verify.Config{Pool: env.pool, JetStream: env.js})
	require.NoError(t, err)
	require.Equal(t, 2500, rep.Postgres)
	require.Equal(t, 2498, rep.JetStream)
	require.Len(t, rep.Missing, 2, rep.String())
	for _, e := range rep.Missing {
		require.True(t, deleted[e.ID], e.String())
	}
	require.Empty(t, rep.Duplicates)
	require.Empty(t, rep.OutOfOrder)
	require.Empty(t, rep.Unexpected)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	require.Zero(t, info.State.Consumers, "the check leaves no consumer behind")
}

// Repair stores each missing event once, however often it runs on one report: an event
// deleted from the stream while its id is still in the duplicate window is re-published
// under a repair id of its own, which the window then guards, and an event JetStream holds
// (the report is stale) is not published again.
func TestRepairStoresEachEventOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := setup(t)
	for i := range 12 {
		stream := fmt.Sprintf("order-%d", i%3)
		_, err := env.store.Append(ctx, stream, pgjet.Any, cancelled(stream, i))
		require.NoError(t, err)
	}
	env.relayAll(t)
	s, err := env.js.Stream(ctx, "PGJET_EVENTS")
	require.NoError(t, err)
	lost, err := s.GetMsg(ctx, 5)
	require.NoError(t, err)
	require.NoError(t, s.DeleteMsg(ctx, 5))
	kept, err := s.GetMsg(ctx, 6)
	require.NoError(t, err)

	cfg := verify.Config{Pool: env.pool, JetStream: env.js}
	rep, err := verify.Check(ctx, cfg)
	require.NoError(t, err)
	require.Len(t, rep.Missing, 1, rep.String())
	require.Equal(t, lost.Header.Get("ce-id"), rep.Missing[0].ID)
	stale := append(rep.Missing, verify.Event{ID: kept.Header.Get("ce-id"), Position: mustInt(t, kept.Header.Get(relay.HeaderPosition))})
	for _, want := range []int{1, 0, 0} {
		n, err := verify.Repair(ctx, cfg, stale)
		require.NoError(t, err)
		require.Equal(t, want, n)
	}

	rep, err = verify.Check(ctx, cfg)
	require.NoError(t, err)
	require.Empty(t, rep.Missing, rep.String())
	require.Empty(t, rep.Duplicates, rep.String())
	require.Equal(t, 12, rep.JetStream)
	repaired, err := s.GetMsg(ctx, 13)
	require.NoError(t, err)
	require.Equal(t, lost.Header.Get("ce-id"), repaired.Header.Get("ce-id"))
	require.Equal(t, lost.Header.Get("ce-id")+"/repaired", repaired.Header.Get("Nats-Msg-Id"))
}

func mustInt(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	require.NoError(t, err)
	return n
}
