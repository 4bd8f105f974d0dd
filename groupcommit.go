package pgjet

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

// groupCommit combines concurrent Append calls into shared transactions, so that many small
// writers pay for one commit (one WAL flush) between them, as Postgres's own group commit
// would if it could see them together.
//
// There is no standing goroutine: an appender that finds fewer than conns committers at
// work starts one, which takes everything queued (up to max appends), sends it as one
// pipelined batch — one implicit transaction, one round trip — and goes on until the queue
// is empty, then ends. Every appender, the one that started it too, waits for its own
// result only, or until its context ends: one still queued leaves the queue and is not
// written; one already in a batch may still commit, as a cancelled lone append may.
//
// Each append keeps its own expectation check and outcome: the append statement reports
// conflicts and stored ids as data instead of failing. If the batch fails as a whole (a
// deadlock, a lost connection, two appends racing on one event id), every append in it is
// run again on its own, so one bad append never fails its neighbours.
type groupCommit struct {
	store *Store
	max   int
	conns int

	mu         sync.Mutex
	queue      []*groupRequest
	committers int
}

type groupRequest struct {
	ctx  context.Context
	p    *prepared
	res  AppendResult
	err  error
	done chan struct{}
}

func (g *groupCommit) append(ctx context.Context, p *prepared) (AppendResult, error) {
	req := &groupRequest{ctx: ctx, p: p, done: make(chan struct{})}
	g.mu.Lock()
	g.queue = append(g.queue, req)
	lead := g.committers < g.conns
	if lead {
		g.committers++
	}
	g.mu.Unlock()
	if lead {
		// In a goroutine of its own: the committer goes on while the queue holds appends,
		// and its caller's append, done with the first batch, must not wait for them all.
		go g.commitAll(ctx)
	}
	select {
	case <-req.done:
		return req.res, req.err
	case <-ctx.Done():
	}
	g.mu.Lock()
	i := slices.Index(g.queue, req)
	if i >= 0 {
		g.queue = slices.Delete(g.queue, i, i+1)
	}
	g.mu.Unlock()
	if i >= 0 {
		return AppendResult{}, fmt.Errorf("pgjet: append left the group-commit queue, not written: %w", ctx.Err())
	}
	return AppendResult{}, fmt.Errorf("pgjet: append abandoned while its batch commits; it may still be stored: %w", ctx.Err())
}

// commitAll commits batches until the queue is empty.
func (g *groupCommit) commitAll(ctx context.Context) {
	// The batch carries other callers' appends: the leader's cancellation must not abort them.
	ctx = context.WithoutCancel(ctx)
	for {
		g.mu.Lock()
		n := min(len(g.queue), g.max)
		if n == 0 {
			g.committers--
			g.mu.Unlock()
			return
		}
		batch := slices.Clone(g.queue[:n])
		g.queue = g.queue[n:]
		g.mu.Unlock()
		g.commit(ctx, batch)
	}
}

func (g *groupCommit) commit(ctx context.Context, batch []*groupRequest) {
	defer func() {
		for _, r := range batch {
			close(r.done)
		}
	}()
	if len(batch) == 1 {
		r := batch[0]
		r.res, r.err = g.store.runAlone(r.ctx, r.p)
		return
	}
	// One lock order for every batch: no deadlocks between concurrent committers.
	slices.SortStableFunc(batch, func(a, b *groupRequest) int { return strings.Compare(a.p.stream, b.p.stream) })
	outcomes := make([]outcome, len(batch))
	var err error
	if mergeable(batch) {
		err = g.runMerged(ctx, batch, outcomes)
	} else {
		err = g.runEach(ctx, batch, outcomes)
	}
	if err != nil {
		g.store.metrics.groupFallbacks.Inc()
		for _, r := range batch {
			// The batch may have committed before its answer was lost (a dropped
			// connection): then each append finds its own events again.
			r.p.mayBeStored = true
			r.res, r.err = g.store.runAlone(r.ctx, r.p)
		}
		return
	}
	g.store.metrics.groupSize.Observe(float64(len(batch)))
	for i, r := range batch {
		r.res, r.err = r.p.result(r.ctx, g.store.pool, outcomes[i])
	}
}

// batchPartitions returns the outbox partitions batch writes to, for its wake-up.
func batchPartitions(batch []*groupRequest) []int16 {
	out := make([]int16, len(batch))
	for i, r := range batch {
		out[i] = r.p.partition
	}
	return out
}

// runEach runs the batch as one transaction of one append statement each, then wakes the
// relays of its partitions, in one round trip (see execWaking).
func (g *groupCommit) runEach(ctx context.Context, batch []*groupRequest, outcomes []outcome) error {
	stmts := []statement{{sql: genericPlans}}
	for _, r := range batch {
		sql, args := r.p.statement(false)
		stmts = append(stmts, statement{sql: sql, args: args})
	}
	return execWaking(ctx, g.store.pool, stmts, batchPartitions(batch), func(i int, rows pgx.Rows) error {
		if i == 0 {
			return nil
		}
		o := &outcomes[i-1]
		return scanOne(rows, &o.dup, &o.last, &o.positions)
	})
}

// runMerged runs a batch of Any appends as one transaction of one statement per round (see
// rounds), each for many appends, then wakes the relays of its partitions, in one round
// trip (see execWaking).
func (g *groupCommit) runMerged(ctx context.Context, batch []*groupRequest, outcomes []outcome) error {
	rs := rounds(batch)
	stmts := []statement{{sql: genericPlans}}
	for _, round := range rs {
		stmts = append(stmts, statement{sql: mergedAnySQL, args: mergedArgs(batch, round)})
	}
	err := execWaking(ctx, g.store.pool, stmts, batchPartitions(batch), func(i int, rows pgx.Rows) error {
		if i == 0 {
			return nil
		}
		round := rs[i-1]
		n := 0
		for rows.Next() {
			if n == len(round) {
				return fmt.Errorf("pgjet: merged append returned more than %d rows", len(round))
			}
			if err := scanMerged(rows, &outcomes[round[n]]); err != nil {
				return err
			}
			n++
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if n != len(round) {
			return fmt.Errorf("pgjet: merged append returned %d rows for %d appends", n, len(round))
		}
		return nil
	})
	if err == nil {
		g.store.metrics.groupMerged.Add(float64(len(batch)))
	}
	return err
}
