package projection_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/natstest"
	"github.com/pgjet/pgjet/internal/pgtest"
	"github.com/pgjet/pgjet/internal/projection"
	"github.com/pgjet/pgjet/internal/registry"
	"github.com/pgjet/pgjet/internal/relay"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

const (
	childEnv  = "PGJET_PROJECTOR_TEST_CHILD"
	queuedEnv = "PGJET_PROJECTOR_TEST_QUEUED" // the child's projection queues its statements
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		runChild()
		return
	}
	pgtest.Main(m)
}

// counting records every application of every event, so a double application or a
// reordering is visible: applying is deliberately not idempotent. With queued, it queues
// its statement (Projection.Queue) instead of running it (Apply).
func counting(queued bool) projection.Projection {
	const insert = `INSERT INTO applied (event_id, stream_id, version) VALUES ($1, $2, $3)`
	p := projection.Projection{
		Name: "counting",
		Setup: func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS applied (
				seq bigserial PRIMARY KEY, event_id text NOT NULL, stream_id text NOT NULL, version bigint NOT NULL)`)
			return err
		},
	}
	if queued {
		p.Queue = func(_ context.Context, b *pgx.Batch, ev projection.Event) error {
			if ev.Data["reason"] == nil {
				return fmt.Errorf("event %s was not decoded", ev.ID)
			}
			b.Queue(insert, ev.ID, ev.StreamID, ev.Version)
			return nil
		}
		return p
	}
	p.Apply = func(ctx context.Context, tx pgx.Tx, ev projection.Event) error {
		if ev.Data["reason"] == nil {
			return fmt.Errorf("event %s was not decoded", ev.ID)
		}
		_, err := tx.Exec(ctx, insert, ev.ID, ev.StreamID, ev.Version)
		return err
	}
	return p
}

func runChild() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		panic(err)
	}
	nc, err := nats.Connect(os.Getenv("NATS_URL"))
	if err != nil {
		panic(err)
	}
	reg, err := registry.New(registry.Config{Pool: pool})
	if err != nil {
		panic(err)
	}
	p, err := projection.New(projection.Config{Pool: pool, Conn: nc, Registry: reg, Projection: counting(os.Getenv(queuedEnv) == "1"), BatchSize: 10, IdleWait: 100 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	fmt.Println("ready")
	if err := p.Run(ctx); err != nil {
		panic(err)
	}
}

func cancelled(i int) pgjet.EventData {
	return pgjet.EventData{ID: uuid.New(), Type: "pgjet.demo.order.OrderCancelled", Data: json.RawMessage(fmt.Sprintf(
		`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","reason":"#%d","cancelled_at":"2026-11-26T10:00:00Z"}`, i))}
}

// The projector process is SIGKILLed at random points while it applies; after a final
// restart every event has been applied exactly once, each stream in version order, and
// the checkpoint sits at the last JetStream sequence.
// Both with Apply and with queued statements (Projection.Queue).
func TestProjectorKilledAppliesExactlyOnce(t *testing.T) {
	t.Parallel()
	t.Run("apply", func(t *testing.T) { t.Parallel(); killedAppliesExactlyOnce(t, false) })
	t.Run("queue", func(t *testing.T) { t.Parallel(); killedAppliesExactlyOnce(t, true) })
}

func killedAppliesExactlyOnce(t *testing.T, queued bool) {
	ctx := context.Background()
	url := pgtest.DB(t)
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, pgjet.Migrate(ctx, pool))
	store, err := pgjet.New(pgjet.Config{Pool: pool})
	require.NoError(t, err)
	_, err = store.Registry().RegisterFS(ctx, demoschemas.Files)
	require.NoError(t, err)
	srv := natstest.Server(t)
	nc, js := natstest.Connect(t, srv)

	const total = 1500
	for i := 0; i < total; i += 5 {
		stream := fmt.Sprintf("order-%d", i%13)
		_, err := store.Append(ctx, stream, pgjet.Any, cancelled(i), cancelled(i+1), cancelled(i+2), cancelled(i+3), cancelled(i+4))
		require.NoError(t, err)
	}
	r, err := relay.New(relay.Config{Pool: pool, Conn: nc, PollInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	rctx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- r.Run(rctx) }()
	t.Cleanup(func() { stopRelay(); <-relayDone })

	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=1", "DATABASE_URL="+url, "NATS_URL="+srv.ClientURL())
		if queued {
			cmd.Env = append(cmd.Env, queuedEnv+"=1")
		}
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		line, err := bufio.NewReader(out).ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, "ready\n", line)
		return cmd
	}
	applied := func() int {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM applied`).Scan(&n); err != nil {
			return 0 // the table may not exist yet
		}
		return n
	}
	rng := rand.New(rand.NewPCG(7, 7))
	kills := 0
	for kills < 8 && applied() < total {
		cmd := start()
		time.Sleep(time.Duration(20+rng.IntN(150)) * time.Millisecond) // a random point to kill at
		require.NoError(t, cmd.Process.Kill())
		_ = cmd.Wait()
		kills++
	}
	cmd := start()
	stream, err := js.Stream(ctx, "PGJET_EVENTS")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := stream.Info(ctx)
		require.NoError(t, err)
		seq, err := projection.Checkpoint(ctx, pool, "counting")
		require.NoError(t, err)
		return info.State.Msgs == total && seq == info.State.LastSeq
	}, 60*time.Second, 20*time.Millisecond)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait())
	t.Logf("projector killed %d times", kills)

	var events, distinct int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT event_id) FROM applied`).Scan(&events, &distinct))
	require.Equal(t, total, distinct, "every event applied")
	require.Equal(t, total, events, "no event applied twice")
	var disorder int
	require.NoError(t, pool.QueryRow(ctx, `
		SELECT count(*) FROM (SELECT version, lag(version) OVER (PARTITION BY stream_id ORDER BY seq) AS prev FROM applied) x
		WHERE version <> coalesce(prev, 0) + 1`).Scan(&disorder))
	require.Zero(t, disorder, "each stream applied in version order")
}

// A standby waiting for the active projector's lock is not stalled (its readiness stays
// green while there is nothing it may do), and takes over when the active one stops.
func TestStandbyIsNotStalledAndTakesOver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, registerDemo(t))
	e.appendCancelled(t, 5)
	stopActive := e.run(t, fastConfig(ledger("live")))
	e.waitApplied(t, "ledger")

	cfg := fastConfig(ledger("live"))
	cfg.Pool, cfg.Conn, cfg.Registry = e.pool, e.nc, e.store.Registry()
	standby, err := projection.New(cfg)
	require.NoError(t, err)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- standby.Run(sctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	require.Eventually(t, func() bool { // the standby waits for the lock
		var waiting int
		err := e.pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&waiting)
		return err == nil && waiting == 1
	}, 10*time.Second, 5*time.Millisecond)
	require.Zero(t, standby.Stalled(time.Nanosecond), "a standby is not stalled")

	stopActive()
	e.appendCancelled(t, 3)
	e.waitApplied(t, "ledger")
	requireLedgerExact(t, e.pool, e.total())
}
