package service

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/pgtest"
	"github.com/pgjet/pgjet/internal/projection"
	"github.com/pgjet/pgjet/internal/promtest"
	"github.com/pgjet/pgjet/internal/registry"
	"github.com/pgjet/pgjet/internal/relay"
	"github.com/pgjet/pgjet/internal/subject"
	"github.com/pgjet/pgjet/internal/verify"
	"github.com/pgjet/pgjet/internal/writer"
	"github.com/pgjet/pgjet/subscription"
)

// The NATS permissions of docs/security.md are enough: a service appends over NATS, the
// writer serves it, the relay publishes, the projector projects, a subscriber group and an
// ordered group handle and dead-letter (the ordered group parking a stream) and verify
// checks, each as its own NATS user with only the documented permissions.
func TestLeastPrivilegeNATS(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	users := []string{"writer", "relay", "projector", "verify", "deadletters", "billing", "shipping", "orders-service"}
	var conf strings.Builder
	conf.WriteString("listen: 127.0.0.1:-1\njetstream { store_dir: \"" + t.TempDir() + "\" }\n")
	for _, u := range users {
		conf.WriteString(strings.ToUpper(strings.SplitN(u, "-", 2)[0]) + "_NATS_PASSWORD: \"pw-" + u + "\"\n")
	}
	conf.WriteString(securitySQL(t, "nats", "", ""))
	path := filepath.Join(t.TempDir(), "nats.conf")
	require.NoError(t, os.WriteFile(path, []byte(conf.String()), 0o600))
	opts, err := server.ProcessConfigFile(path)
	require.NoError(t, err)
	opts.NoLog, opts.NoSigs = true, true
	srv, err := server.NewServer(opts)
	require.NoError(t, err)
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	require.True(t, srv.ReadyForConnections(10*time.Second))
	connectAs := func(user string) *nats.Conn {
		c := Common{NATSURL: srv.ClientURL(), NATSSecurity: NATSSecurity{User: user, Password: "pw-" + user}}
		n, err := c.ConnectNATS(ctx, "pgjet-"+user, zap.NewNop())
		require.NoError(t, err, "connecting as %s", user)
		t.Cleanup(n.Close)
		return n.Conn
	}
	// A permission violation is reported asynchronously: collect them.
	violations := make(chan error, 100)
	watch := func(nc *nats.Conn) *nats.Conn {
		nc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err })
		return nc
	}

	c := Common{DatabaseURL: pgtest.DB(t), DataDir: t.TempDir()}
	pg, err := c.OpenMigrated(ctx, zap.NewNop())
	require.NoError(t, err)
	t.Cleanup(func() { pg.Close(context.WithoutCancel(ctx)) })
	store, err := pgjet.New(pgjet.Config{Pool: pg.Pool})
	require.NoError(t, err)
	_, err = store.Registry().Register(ctx, "test.lp.Thing",
		`{"type":"record","name":"Thing","namespace":"test.lp","fields":[{"name":"n","type":"int"}]}`)
	require.NoError(t, err)

	// writer serves appends over NATS; a service appends.
	api, err := writer.NewNATSService(writer.NATSConfig{Store: store, Conn: watch(connectAs("writer")), Subject: "pgjet.api.append", Logger: zap.NewNop()})
	require.NoError(t, err)
	apiCtx, stopAPI := context.WithCancel(ctx)
	apiDone := make(chan error, 1)
	go func() { apiDone <- api.Run(apiCtx) }()
	t.Cleanup(func() { stopAPI(); <-apiDone })
	client := watch(connectAs("orders-service"))
	const events = 3
	for i := range events {
		body := `{"stream":"thing-1","expected_version":"any","events":[{"type":"test.lp.Thing","data":{"n":` + string(rune('0'+i)) + `}}]}`
		var reply *nats.Msg
		require.Eventually(t, func() bool {
			reply, err = client.Request("pgjet.api.append", []byte(body), 5*time.Second)
			return err == nil
		}, 20*time.Second, 50*time.Millisecond, "append over NATS: %v", err)
		require.Equal(t, "200", reply.Header.Get("Pgjet-Status"), "%s", reply.Data)
	}

	// relay
	r, err := relay.New(relay.Config{Pool: pg.Pool, Conn: watch(connectAs("relay")), PollInterval: 100 * time.Millisecond, Logger: zap.NewNop()})
	require.NoError(t, err)
	runUntil(t, r.Run, func() bool { return count(t, pg.Pool, "SELECT count(*) FROM pgjet.outbox") == 0 })

	// projector, for the projection the snippet names ("orders")
	reg, err := registry.New(registry.Config{Pool: pg.Pool})
	require.NoError(t, err)
	projectorConfig := projection.Config{Pool: pg.Pool, Conn: watch(connectAs("projector")), Registry: reg, Logger: zap.NewNop(),
		IdleWait: 200 * time.Millisecond,
		Projection: projection.Projection{Name: "orders", Schema: "orders_lp",
			Setup: func(ctx context.Context, tx pgx.Tx) error {
				_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS things (n int PRIMARY KEY)`)
				return err
			},
			Apply: func(ctx context.Context, tx pgx.Tx, ev projection.Event) error {
				_, err := tx.Exec(ctx, `INSERT INTO things (n) VALUES ($1)`, ev.Data["n"])
				return err
			}}}
	p, err := projection.New(projectorConfig)
	require.NoError(t, err)
	runUntil(t, p.Run, func() bool { return count(t, pg.Pool, "SELECT count(*) FROM orders_lp.things") == events })
	// Started again, it reads the message at its checkpoint before placing its consumer.
	metrics := prometheus.NewRegistry()
	projectorConfig.Registerer = metrics
	p, err = projection.New(projectorConfig)
	require.NoError(t, err)
	runUntil(t, p.Run, func() bool { return promtest.Value(t, metrics, "pgjet_projection_checkpoint_sequence") == events })

	// A subscriber group and an ordered group, each failing the second event: the group
	// dead-letters it; the ordered group parks its stream and holds the third event.
	for _, sub := range []struct {
		user   string
		cfg    subscription.Config
		result map[string]float64
	}{
		{"billing", subscription.Config{Group: "billing"}, map[string]float64{"handled": 2, "deadlettered": 1}},
		{"shipping", subscription.Config{Group: "shipping", Ordered: true}, map[string]float64{"handled": 1, "deadlettered": 1, "held": 1}},
	} {
		sjs, err := jetstream.New(watch(connectAs(sub.user)))
		require.NoError(t, err)
		metrics := prometheus.NewRegistry()
		cfg := sub.cfg
		cfg.MaxDeliver, cfg.BackoffMin, cfg.BackoffMax, cfg.Registerer, cfg.Logger = 2, 10*time.Millisecond, 20*time.Millisecond, metrics, zaptest.NewLogger(t)
		cfg.Handler = func(_ context.Context, ev subscription.Event) error {
			if ev.Version == 2 {
				return errors.New("refused")
			}
			return nil
		}
		sb, err := subscription.New(sjs, cfg)
		require.NoError(t, err)
		runUntil(t, sb.Run, func() bool {
			for result, n := range sub.result {
				if promtest.Value(t, metrics, "pgjet_subscription_events_total", "result", result) != n {
					return false
				}
			}
			return true
		})
	}

	// verify
	js, err := jetstream.New(watch(connectAs("verify")))
	require.NoError(t, err)
	scheme, err := subject.New(subject.DefaultPrefix)
	require.NoError(t, err)
	vcfg := verify.Config{Pool: pg.Pool, JetStream: js, Stream: "PGJET_EVENTS", Subjects: scheme}
	rep, err := verify.Check(ctx, vcfg)
	require.NoError(t, err)
	require.True(t, rep.OK(), "%s", rep)
	// verify -repair of an event the stream holds: JetStream answers "duplicate", and the
	// repair reads the message kept under the id instead of publishing again.
	var held verify.Event
	require.NoError(t, pg.Pool.QueryRow(ctx, `SELECT event_id::text, position FROM pgjet.events ORDER BY position LIMIT 1`).Scan(&held.ID, &held.Position))
	n, err := verify.Repair(ctx, vcfg, []verify.Event{held})
	require.NoError(t, err)
	require.Zero(t, n)

	// Nobody hit a permission they lack, and the permissions do bite: the service may not
	// publish events itself.
	select {
	case err := <-violations:
		t.Fatalf("permission violation: %v", err)
	default:
	}
	require.NoError(t, client.Publish("pgjet.events.thing.test:lp:Thing.thing-1", []byte("forged")))
	require.NoError(t, client.Flush())
	select {
	case err := <-violations:
		require.ErrorIs(t, err, nats.ErrPermissionViolation)
	case <-time.After(10 * time.Second):
		t.Fatal("the service published an event without a permission violation")
	}
}
