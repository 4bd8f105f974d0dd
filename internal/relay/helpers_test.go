package relay_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/pgtest"
	"github.com/pgjet/pgjet/internal/relay"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

// newEnvOn is newEnv with NATS chosen by the test: a cluster, a server it restarts, or a
// proxy in front of one. url is the Postgres database; "" makes a fresh one.
func newEnvOn(t testing.TB, url string, nc *nats.Conn, js jetstream.JetStream, nurl string) *env {
	t.Helper()
	ctx := context.Background()
	if url == "" {
		url = pgtest.DB(t)
	}
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, pgjet.Migrate(ctx, pool))
	store, err := pgjet.New(pgjet.Config{Pool: pool})
	require.NoError(t, err)
	_, err = store.Registry().RegisterFS(ctx, demoschemas.Files)
	require.NoError(t, err)
	return &env{store: store, pool: pool, url: url, nc: nc, js: js, nurl: nurl}
}

// runningRelay is an in-process relay with its own pool, as a separate process would have.
type runningRelay struct {
	r    *relay.Relay
	stop func()
}

// startOwnRelay starts a relay on its own Postgres pool and the given NATS connection.
func startOwnRelay(t testing.TB, url string, nc *nats.Conn, cfg relay.Config) *runningRelay {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	require.NoError(t, err)
	cfg.Pool, cfg.Conn = pool, nc
	cfg.PollInterval = cmpDur(cfg.PollInterval, 100*time.Millisecond)
	r, err := relay.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
			pool.Close()
		})
	}
	t.Cleanup(stop)
	return &runningRelay{r: r, stop: stop}
}

func cmpDur(a, b time.Duration) time.Duration {
	if a != 0 {
		return a
	}
	return b
}

// startChildRelay starts runChild in a new process and waits until it is ready.
func startChildRelay(t *testing.T, dbURL, natsURL string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "DATABASE_URL="+dbURL, "NATS_URL="+natsURL)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "ready\n", line)
	return cmd
}

// waitUntil polls cond every 20ms until it holds, failing the test after within.
func waitUntil(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writers append events in the background until stopped. Every append is retried with the
// same event ids until it succeeds (idempotent append), so an append whose commit outcome
// was unknown, because Postgres went away, ends committed exactly once.
type writers struct {
	mu        sync.Mutex
	committed map[string]string // event id -> stream id
	appends   int
	retries   int
	pace      time.Duration // pause between one writer's appends
	stop      chan struct{}
	done      chan struct{}
}

// startWriters runs n writers over streams streams, each appending up to max times (1 or 2
// events per append) or until stop.
func startWriters(t *testing.T, store *pgjet.Store, n, max, streams int) *writers {
	return startPacedWriters(t, store, n, max, streams, 0)
}

// startPacedWriters is startWriters with a pause between one writer's appends, which keeps
// the number of events (and the test's time) bounded while a fault takes seconds.
func startPacedWriters(t *testing.T, store *pgjet.Store, n, max, streams int, pace time.Duration) *writers {
	w := &writers{committed: map[string]string{}, stop: make(chan struct{}), done: make(chan struct{}), pace: pace}
	go func() {
		defer close(w.done)
		var wg sync.WaitGroup
		for k := range n {
			wg.Go(func() {
				for i := range max {
					select {
					case <-w.stop:
						return
					case <-time.After(w.pace):
					}
					stream := fmt.Sprintf("order-%d", (k*7+i)%streams)
					evs := []pgjet.EventData{cancelled(stream, i)}
					if i%3 == 0 {
						evs = append(evs, cancelled(stream, i+1000))
					}
					for attempt := 0; ; attempt++ {
						ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
						_, err := store.Append(ctx, stream, pgjet.Any, evs...)
						cancel()
						if err == nil {
							break
						}
						if attempt > 400 {
							t.Errorf("append to %s still failing: %v", stream, err)
							return
						}
						w.mu.Lock()
						w.retries++
						w.mu.Unlock()
						time.Sleep(25 * time.Millisecond) // retry backoff while the database is away
					}
					w.mu.Lock()
					w.appends++
					for _, ev := range evs {
						w.committed[ev.ID.String()] = stream
					}
					w.mu.Unlock()
				}
			})
		}
		wg.Wait()
	}()
	return w
}

// count returns how many appends succeeded so far.
func (w *writers) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.appends
}

// finish stops the writers, waits for them and returns what they committed.
func (w *writers) finish() map[string]string {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.committed
}

// waitAppends waits until the writers made n more appends than now, so a fault lands while
// they write.
func (w *writers) waitAppends(t *testing.T, n int) {
	t.Helper()
	target := w.count() + n
	waitUntil(t, 20*time.Second, fmt.Sprintf("%d appends", target), func() bool {
		select {
		case <-w.done: // the writers ran out of work first
			return true
		default:
			return w.count() >= target
		}
	})
}

// partitionHolders returns, per Postgres backend, how many outbox partition locks it holds.
func partitionHolders(t testing.TB, pool *pgxpool.Pool) map[int]int {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT pid, count(*)::int FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND classid = $1::int::oid AND objsubid = 2
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		GROUP BY pid`, int32(0x706a0002))
	require.NoError(t, err)
	defer rows.Close()
	out := map[int]int{}
	for rows.Next() {
		var pid, n int
		require.NoError(t, rows.Scan(&pid, &n))
		out[pid] = n
	}
	require.NoError(t, rows.Err())
	return out
}

// fairlyShared reports whether holders are exactly n relays that together own every
// partition, none more than its fair share.
func fairlyShared(holders map[int]int, n int) bool {
	if len(holders) != n {
		return false
	}
	share, total := (32+n-1)/n, 0
	for _, c := range holders {
		if c > share {
			return false
		}
		total += c
	}
	return total == 32
}

// streamMsgs returns how many messages the events stream holds.
func streamMsgs(t testing.TB, js jetstream.JetStream) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "PGJET_EVENTS")
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// childRelay is a relay process started by startChildRelay.
type childRelay struct{ cmd *exec.Cmd }
