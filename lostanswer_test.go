package pgjet_test

import (
	"bytes"
	"context"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/pgtest"
	"github.com/pgjet/pgjet/internal/promtest"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

// A group-commit batch that commits but whose answer is lost (the connection drops after
// the statements were sent) is run again append by append. Each append must then find its
// own events and report them stored, not a conflict with itself: here an append expecting
// version 1, with ids pgjet generated, whose first run moved the stream to 2.
func TestGroupCommitBatchWhoseAnswerIsLost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.DB(t)
	direct := pgtest.PoolOn(t, dbURL)
	require.NoError(t, pgjet.Migrate(ctx, direct))
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	const marker = "lose-the-answer-3f9a"
	p := newAnswerDropper(t, u.Host, []byte(marker))
	u.Host = p.addr
	reg := prometheus.NewRegistry()
	s, err := pgjet.New(pgjet.Config{Pool: pgtest.PoolOn(t, u.String()), GroupCommit: true, GroupCommitConns: 1, Registerer: reg})
	require.NoError(t, err)
	_, err = s.Registry().RegisterFS(ctx, demoschemas.Files)
	require.NoError(t, err)
	for _, stream := range []string{"order-held", "order-a", "order-b"} {
		_, err := s.Append(ctx, stream, pgjet.Any, cancelEvent("first"))
		require.NoError(t, err)
	}

	// The one committer waits on the held stream's row while the two appends queue, so
	// that they go in one batch.
	tx, err := direct.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, `SELECT 1 FROM pgjet.streams WHERE stream_id = 'order-held' FOR UPDATE`)
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := s.Append(ctx, "order-held", pgjet.Any, cancelEvent("held")); err != nil {
			t.Error(err)
		}
	})
	require.Eventually(t, func() bool { return s.GroupQueued() == 0 && lockWaiters(t, direct) == 1 },
		10*time.Second, 10*time.Millisecond)
	var (
		resA, resB pgjet.AppendResult
		errA, errB error
	)
	wg.Go(func() { resA, errA = s.Append(ctx, "order-a", pgjet.Exact(1), cancelEvent(marker)) })
	wg.Go(func() { resB, errB = s.Append(ctx, "order-b", pgjet.Any, cancelEvent("b")) })
	require.Eventually(t, func() bool { return s.GroupQueued() == 2 }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, tx.Rollback(ctx))
	wg.Wait()

	require.True(t, p.dropped.Load(), "the batch's answer was not dropped")
	require.Equal(t, 1.0, promtest.Must(t, reg, "pgjet_append_group_fallbacks_total"))
	require.NoError(t, errA, "the append's own first run counted as a conflict")
	require.Equal(t, int64(2), resA.FirstVersion)
	require.False(t, resA.Duplicate, "pgjet chose the ids: no caller retried")
	require.NoError(t, errB)
	require.Equal(t, int64(2), resB.FirstVersion)
	for _, stream := range []string{"order-a", "order-b"} {
		v, err := s.StreamVersion(ctx, stream)
		require.NoError(t, err)
		require.Equal(t, int64(2), v, "stream %s: stored once", stream)
	}
}

// lockWaiters returns how many sessions of pool's database wait for a lock.
func lockWaiters(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n))
	return n
}

// answerDropper is a TCP proxy to Postgres that, the first time a client sends bytes
// holding marker, passes them on, lets the server answer into the void and closes the
// connection: the statements run and commit, and the client never hears of it.
type answerDropper struct {
	addr    string
	target  string
	marker  []byte
	dropped atomic.Bool
}

func newAnswerDropper(t *testing.T, target string, marker []byte) *answerDropper {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	p := &answerDropper{addr: ln.Addr().String(), target: target, marker: marker}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go p.pipe(c, s)
		}
	}()
	return p
}

// readyIdle is Postgres's ReadyForQuery message outside a transaction: the server has
// finished what it was sent up to a Sync, a commit included.
var readyIdle = []byte{'Z', 0, 0, 0, 5, 'I'}

func (p *answerDropper) pipe(client, server net.Conn) {
	var mute atomic.Bool             // set once this connection's answers are to be dropped
	committed := make(chan struct{}) // closed when a dropped answer says the server is idle
	go func() {
		buf := make([]byte, 64<<10)
		var dropped []byte
		for {
			n, err := server.Read(buf)
			switch {
			case n == 0:
			case !mute.Load():
				if _, err := client.Write(buf[:n]); err != nil {
					return
				}
			default:
				if dropped = append(dropped, buf[:n]...); bytes.Contains(dropped, readyIdle) {
					close(committed)
					return
				}
			}
			if err != nil {
				client.Close()
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			drop := !p.dropped.Load() && bytes.Contains(buf[:n], p.marker) && p.dropped.CompareAndSwap(false, true)
			if drop {
				mute.Store(true)
			}
			if _, err := server.Write(buf[:n]); err != nil {
				break
			}
			if drop {
				select { // the server runs and commits what it got; its answer goes nowhere
				case <-committed:
				case <-time.After(30 * time.Second):
				}
				break
			}
		}
		if err != nil {
			break
		}
	}
	client.Close()
	server.Close()
}
