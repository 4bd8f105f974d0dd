package projection

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet/subscription"
)

// RebuildPhase names a step of a rebuild.
type RebuildPhase string

// The phases of a rebuild, in order. Catching up and swapping repeat when a swap gives up
// on a lock.
const (
	// PhaseCatchingUp: the history is being applied to the shadow schema.
	PhaseCatchingUp RebuildPhase = "catching up"
	// PhaseSwapping: the swap transaction runs; the live projector waits for it.
	PhaseSwapping RebuildPhase = "swapping"
	// PhaseSwapped: the rebuilt read model serves under the projection's schema.
	PhaseSwapped RebuildPhase = "swapped"
)

// RebuildProgress says how far a rebuild is.
type RebuildProgress struct {
	// Phase is what the rebuild is doing.
	Phase RebuildPhase
	// Checkpoint is the JetStream sequence of the last event applied to the rebuilt model.
	Checkpoint uint64
	// Head is the stream's last sequence, asked at most once a second.
	Head uint64
	// Applied counts the events this run applied to the rebuilt model.
	Applied int
}

// RebuildOptions tunes Rebuild.
type RebuildOptions struct {
	// Resume continues an interrupted rebuild from its checkpoint (its shadow schema and
	// checkpoint are consistent, being written in one transaction). Only resume with the
	// same projection code. Default false: start over from sequence 1.
	Resume bool
	// LockTimeout bounds each lock wait of the swap transaction (the live projector's batch
	// in flight, readers still inside the old tables). On timeout the rebuild catches up
	// again and retries the swap, so a long reader never queues everyone behind the swap.
	// Default 5s.
	LockTimeout time.Duration
	// Progress, if set, is called after each batch of the rebuild and at each phase.
	Progress func(RebuildProgress)
}

// RebuildSchema is the shadow schema a rebuild of a projection with the given Schema
// builds in.
func RebuildSchema(schema string) string { return schema + "_rebuild" }

// RebuildCheckpoint is the pgjet.checkpoints row of a projection's rebuild (a name no
// projection can have).
func RebuildCheckpoint(projection string) string { return "rebuild:" + projection }

// RebuildConsumerName is the durable JetStream consumer a projection's rebuild reads from.
func RebuildConsumerName(projection string) string { return "rebuild-" + projection }

// Rebuild builds cfg's projection again from the first event while the live projector
// keeps serving and applying, then swaps the rebuilt model in, and returns the checkpoint
// it swapped in at.
//
// The rebuild runs a second projector instance with its own checkpoint
// (RebuildCheckpoint), consumer (RebuildConsumerName) and schema (RebuildSchema of
// Projection.Schema), from JetStream sequence 1, until it has applied everything the
// stream holds. Then one transaction: locks the live checkpoint row, which waits for the
// live projector's batch in flight and holds its next batch; applies to the shadow any
// events the live model has and the shadow lacks; drops the live schema and renames the
// shadow schema to it; sets the live checkpoint to the shadow's. When it commits, the live
// projector goes on from the rebuilt checkpoint, skipping what the rebuild applied.
// Readers see the old model or the new one, never a mix: dropping the old tables waits
// for every transaction that read them, and statements waiting on them resolve the names
// again after the commit.
//
// Config is the live projector's; its AfterCommit is not called for the rebuild's
// batches, and its Registerer gets the rebuild's projector metrics under the projection
// label RebuildCheckpoint(name).
//
// Rebuild fails with ErrNoSchema without Projection.Schema, ErrRebuildRunning when
// another rebuild of the projection runs, and ErrHistoryTruncated when the stream's
// retention has removed events it would need. When ctx ends or anything fails before the
// swap commits, the live model is untouched; run Rebuild again (with Resume to keep the
// shadow's progress; a Resume after the stream was re-created fails with
// ErrCheckpointBeyondStream or ErrCheckpointNotInStream: start over without it).
//
// A live checkpoint that the stream does not hold (it was re-created: the remedy of those
// two errors is a rebuild) is not caught up with: the swap sets the live checkpoint to the
// rebuild's.
func Rebuild(ctx context.Context, cfg Config, opts RebuildOptions) (uint64, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return 0, err
	}
	pr := cfg.Projection
	if pr.Schema == "" {
		return 0, fmt.Errorf("rebuilding %q: %w", pr.Name, ErrNoSchema)
	}
	opts.LockTimeout = cmp.Or(opts.LockTimeout, 5*time.Second)
	r := &rebuild{opts: opts, live: pr.Name, liveSchema: pr.Schema}
	cfg.AfterCommit = func(evs []Event) {
		r.applied += len(evs)
		r.checkpoint = evs[len(evs)-1].Sequence
	}
	p, err := newProjector(cfg, target{
		checkpoint: RebuildCheckpoint(pr.Name), consumer: RebuildConsumerName(pr.Name), schema: RebuildSchema(pr.Schema),
	})
	if err != nil {
		return 0, err
	}
	r.p = p
	seq, err := r.run(ctx)
	if err != nil {
		return 0, fmt.Errorf("projection: rebuilding %q: %w", pr.Name, err)
	}
	return seq, nil
}

// rebuild is the state of one Rebuild call.
type rebuild struct {
	p          *Projector // the shadow instance
	opts       RebuildOptions
	live       string // the live checkpoint name
	liveSchema string

	checkpoint uint64
	applied    int
	head       uint64
	headAt     time.Time
}

func (r *rebuild) run(ctx context.Context) (uint64, error) {
	p := r.p
	lock, err := p.session(ctx)
	if err != nil {
		return 0, err
	}
	var got bool
	if err := lock.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, lockClassProjection, p.target.checkpoint).Scan(&got); err != nil {
		lock.Close(context.WithoutCancel(ctx))
		return 0, err
	}
	if !got {
		lock.Close(context.WithoutCancel(ctx))
		return 0, ErrRebuildRunning
	}
	defer r.unlock(ctx, lock)
	if !r.opts.Resume {
		if err := r.reset(ctx); err != nil {
			return 0, err
		}
	}
	if err := p.setup(ctx); err != nil {
		return 0, err
	}
	if r.checkpoint, err = Checkpoint(ctx, p.cfg.Pool, p.target.checkpoint); err != nil {
		return 0, fmt.Errorf("reading checkpoint: %w", err)
	}
	if err := r.checkHistory(ctx); err != nil {
		return 0, err
	}
	p.log.Info("rebuilding", zap.String("schema", p.target.schema), zap.Uint64("from_sequence", r.checkpoint+1))
	cur, err := p.consumer(ctx)
	if err != nil {
		return 0, err
	}
	defer func() {
		// The consumer is of no use after the swap, nor after an interruption (the next
		// run re-creates it at the shadow's checkpoint).
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = p.js.DeleteConsumer(dctx, p.cfg.Stream, p.target.consumer)
	}()
	for {
		if err := r.catchUp(ctx, lock, cur); err != nil {
			return 0, err
		}
		seq, err := r.swap(ctx, lock, cur)
		if err == nil {
			r.checkpoint = seq
			r.report(ctx, PhaseSwapped)
			p.log.Info("rebuilt model swapped in", zap.String("schema", r.liveSchema), zap.Uint64("sequence", seq))
			return seq, nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if !retryableLock(err) && !errors.Is(err, subscription.ErrGap) {
			return 0, fmt.Errorf("swapping: %w", err)
		}
		p.log.Warn("swap gave up; catching up and trying again", zap.Error(err))
		if cur, err = p.consumer(ctx); err != nil {
			return 0, err
		}
	}
}

// unlock gives up the rebuild's lock and closes its session before Rebuild returns.
// Closing alone is not enough: the server releases a closed session's locks when its
// backend exits, which may be after Close has returned, and a rebuild started at once then
// failed with ErrRebuildRunning. When the unlock cannot be sent (an interruption broke the
// session), unlock waits up to 5 s for the server to let the lock go.
func (r *rebuild) unlock(ctx context.Context, lock *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	pid := lock.PgConn().PID()
	_, err := lock.Exec(ctx, `SELECT pg_advisory_unlock($1, hashtext($2))`, lockClassProjection, r.p.target.checkpoint)
	lock.Close(ctx)
	if err == nil {
		return
	}
	for ctx.Err() == nil {
		var held bool
		if r.p.cfg.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND locktype = 'advisory')`, pid).Scan(&held) != nil || !held {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// reset drops what an earlier, interrupted rebuild left.
func (r *rebuild) reset(ctx context.Context) error {
	return pgx.BeginFunc(ctx, r.p.cfg.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{r.p.target.schema}.Sanitize()+` CASCADE`); err != nil {
			return fmt.Errorf("dropping the shadow schema: %w", err)
		}
		_, err := tx.Exec(ctx, `DELETE FROM pgjet.checkpoints WHERE name = $1`, r.p.target.checkpoint)
		return err
	})
}

// checkHistory fails when the stream no longer holds the event after the checkpoint.
func (r *rebuild) checkHistory(ctx context.Context) error {
	s, err := r.p.js.Stream(ctx, r.p.cfg.Stream)
	if err != nil {
		return fmt.Errorf("looking up stream %q: %w", r.p.cfg.Stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("looking up stream %q: %w", r.p.cfg.Stream, err)
	}
	if info.State.FirstSeq > r.checkpoint+1 {
		return fmt.Errorf("%w: stream %q starts at sequence %d, the rebuild needs it from %d (replaying from Postgres is not supported; see docs/operations.md)",
			ErrHistoryTruncated, r.p.cfg.Stream, info.State.FirstSeq, r.checkpoint+1)
	}
	return nil
}

// catchUp applies batches to the shadow until it has reached the stream's last sequence
// as of the start (the swap applies what came since), or until nothing is pending. After a
// delivery lost in flight it re-creates cur at the checkpoint.
func (r *rebuild) catchUp(ctx context.Context, lock *pgx.Conn, cur *subscription.Cursor) error {
	p := r.p
	s, err := p.js.Stream(ctx, p.cfg.Stream)
	if err != nil {
		return fmt.Errorf("looking up stream %q: %w", p.cfg.Stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("looking up stream %q: %w", p.cfg.Stream, err)
	}
	head := info.State.LastSeq
	lastPing := time.Now()
	r.report(ctx, PhaseCatchingUp)
	for r.checkpoint < head {
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Since(lastPing) > time.Second {
			if err := lock.Ping(ctx); err != nil {
				return fmt.Errorf("lock session lost: %w", err)
			}
			lastPing = time.Now()
		}
		n, err := p.step(ctx, lock, cur)
		if errors.Is(err, subscription.ErrGap) {
			p.log.Info("deliveries lost in flight; reading on from the checkpoint", zap.Error(err))
			fresh, err := p.reposition(ctx)
			if err != nil {
				return err
			}
			*cur = *fresh
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if n == 0 {
			return nil // a whole IdleWait passed without an event
		}
		r.report(ctx, PhaseCatchingUp)
		if n < p.cfg.BatchSize && r.checkpoint < head {
			// With Filters the last event up to head may not be the projection's.
			info, err := cur.Info(ctx)
			if err != nil {
				return fmt.Errorf("reading consumer info: %w", err)
			}
			if info.NumPending == 0 || info.Delivered.Stream >= head {
				return nil
			}
		}
	}
	return ctx.Err()
}

// swap applies what the shadow lacks of the live model and swaps the schemas and
// checkpoints in one transaction on lock, the session that holds the rebuild's lock: a
// rebuild whose session has ended (and whose shadow another rebuild may be resetting)
// cannot swap. It returns the checkpoint the live projection goes on from. When it fails,
// cur may have moved past the checkpoint: re-create it.
func (r *rebuild) swap(ctx context.Context, lock *pgx.Conn, cur *subscription.Cursor) (uint64, error) {
	p := r.p
	r.report(ctx, PhaseSwapping)
	var (
		fetched int
		applied []Event
		seq     uint64
	)
	start := time.Now()
	err := pgx.BeginFunc(ctx, lock, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf(`SET LOCAL lock_timeout = %d`, r.opts.LockTimeout.Milliseconds())); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO pgjet.checkpoints (name, sequence) VALUES ($1, 0) ON CONFLICT DO NOTHING`, r.live); err != nil {
			return err
		}
		// The live projector locks this row first in each batch: taking it waits for the
		// batch in flight and holds the next one until this transaction ends.
		live, liveID, err := readCheckpoint(ctx, tx, r.live, true)
		if err != nil {
			return fmt.Errorf("locking the live checkpoint: %w", err)
		}
		if err := tx.QueryRow(ctx, `SELECT sequence FROM pgjet.checkpoints WHERE name = $1 FOR UPDATE`, p.target.checkpoint).Scan(&seq); err != nil {
			return fmt.Errorf("reading the rebuild checkpoint: %w", err)
		}
		if seq < live {
			// A live checkpoint the stream does not hold (re-created: the remedy of
			// ErrCheckpointBeyondStream and ErrCheckpointNotInStream is this rebuild) numbers
			// events of an earlier stream: there is nothing to catch up with, and the
			// stream may never reach it.
			err := p.inStream(ctx, r.live, live, liveID)
			if errors.Is(err, ErrCheckpointBeyondStream) || errors.Is(err, ErrCheckpointNotInStream) {
				p.log.Info("the live checkpoint numbers an earlier stream; swapping in at the rebuild's", zap.Error(err), zap.Uint64("sequence", seq))
				live = seq
			} else if err != nil {
				return err
			}
		}
		// The live model may have applied events the shadow has not: apply them here,
		// while the live projector cannot move on.
		for seq < live {
			// The events are there: the wait only bounds a stuck server.
			delivered, err := cur.Fetch(p.cfg.BatchSize, max(p.cfg.IdleWait, 5*time.Second))
			if err != nil {
				return err
			}
			if len(delivered) == 0 {
				return fmt.Errorf("the stream delivered nothing after sequence %d, yet the live projection is at %d", seq, live)
			}
			fetched += len(delivered)
			evs, _, _, err := p.applyTx(ctx, tx, delivered)
			if err != nil {
				return err
			}
			applied = append(applied, evs...)
			if len(evs) > 0 {
				seq = evs[len(evs)-1].Sequence
			}
		}
		// applyTx turns synchronous_commit off for the transaction (a lost batch is applied
		// again); the swap must not be lost after Rebuild has reported it done.
		if _, err := tx.Exec(ctx, `SELECT set_config('synchronous_commit', 'on', true)`); err != nil {
			return err
		}
		liveSchema, shadow := pgx.Identifier{r.liveSchema}.Sanitize(), pgx.Identifier{p.target.schema}.Sanitize()
		// Dropping takes an ACCESS EXCLUSIVE lock on every old table, so it waits for the
		// transactions reading them; statements that come later wait and then find the
		// new tables under the same names.
		if _, err := tx.Exec(ctx, `DROP SCHEMA IF EXISTS `+liveSchema+` CASCADE`); err != nil {
			return fmt.Errorf("dropping the old model: %w", err)
		}
		if _, err := tx.Exec(ctx, `ALTER SCHEMA `+shadow+` RENAME TO `+liveSchema); err != nil {
			return fmt.Errorf("renaming the rebuilt model: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE pgjet.checkpoints l SET sequence = $2, event_id = s.event_id, event_sequence = s.event_sequence, updated_at = now()
			FROM pgjet.checkpoints s WHERE l.name = $1 AND s.name = $3`, r.live, seq, p.target.checkpoint); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM pgjet.checkpoints WHERE name = $1`, p.target.checkpoint)
		return err
	})
	if err != nil {
		if fetched > 0 {
			p.metrics.batches.WithLabelValues("error").Inc()
		}
		return 0, err
	}
	if fetched > 0 {
		p.committed(start, applied, fetched-len(applied))
	}
	return seq, nil
}

// report passes the progress to RebuildOptions.Progress.
func (r *rebuild) report(ctx context.Context, phase RebuildPhase) {
	if r.opts.Progress == nil {
		return
	}
	if time.Since(r.headAt) > time.Second || phase != PhaseCatchingUp {
		if s, err := r.p.js.Stream(ctx, r.p.cfg.Stream); err == nil {
			if info, err := s.Info(ctx); err == nil {
				r.head, r.headAt = info.State.LastSeq, time.Now()
			}
		}
	}
	r.opts.Progress(RebuildProgress{Phase: phase, Checkpoint: r.checkpoint, Head: r.head, Applied: r.applied})
}
