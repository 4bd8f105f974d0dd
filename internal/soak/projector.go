package soak

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet/internal/projection"
)

// runningProjector is one instance of the read model's projector, with its own Postgres
// pool and NATS connection, as a separate process would have.
type runningProjector struct {
	cut  func() // cancel it, terminate its Postgres sessions, close its NATS connection
	wait func() // wait for it to return and release its pool
}

func (p *runningProjector) stop() {
	p.cut()
	p.wait()
}

// startProjector starts an instance of the read model's projector; the n-th instance of a
// run is named by n. Odd instances run the projection's Apply, even ones its Queue.
func (s *system) startProjector(ctx context.Context, n int) (*runningProjector, error) {
	pcfg, err := pgxpool.ParseConfig(s.cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	// Every session of the instance, its lock session included (a copy of the pool's
	// config), carries this name.
	name := fmt.Sprintf("%s-projector-%d", appName, n)
	pcfg.ConnConfig.RuntimeParams["application_name"] = name
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("soak: projector: %w", err)
	}
	nc, err := connect(s.nats.ClientURL(), fmt.Sprintf("projector-%d", n))
	if err != nil {
		pool.Close()
		return nil, err
	}
	p, err := projection.New(projection.Config{
		Pool: pool, Conn: nc, Registry: s.store.Registry(), Projection: s.modelProjection(n%2 == 0),
		BatchSize: 50, IdleWait: 200 * time.Millisecond,
		Logger: s.cfg.Logger.With(zap.String("instance", name)),
	})
	if err != nil {
		nc.Close()
		pool.Close()
		return nil, err
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.Run(pctx)
	}()
	return &runningProjector{
		cut: func() {
			// A batch in flight does not commit: its statements fail on the dead session
			// (the projector finishes a batch on cancellation, so cancelling alone would not
			// cut it), and its acknowledgements cannot be sent.
			cancel()
			_, _ = s.pool.Exec(context.WithoutCancel(ctx), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
				WHERE datname = current_database() AND application_name = $1`, name)
			nc.Close()
		},
		wait: func() {
			<-done
			pool.Close()
		},
	}, nil
}

// killProjector kills the projector in the middle of a batch (or, if none comes within
// wait, wherever it is) and starts a new instance. It reports whether a batch was caught.
func (s *system) killProjector(ctx context.Context, wait time.Duration) (bool, error) {
	s.mu.Lock()
	old := s.projector
	s.mu.Unlock()
	if old == nil { // starting the last one failed
		s.mu.Lock()
		defer s.mu.Unlock()
		return false, s.restartProjector(ctx)
	}
	caught := s.projectorBatch.kill(ctx, wait, func(int) { old.cut() })
	if !caught {
		old.cut()
	}
	old.wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return caught, s.restartProjector(ctx)
}

// restartProjector starts the run's next projector instance; s.mu is held.
func (s *system) restartProjector(ctx context.Context) error {
	s.projectors++
	p, err := s.startProjector(context.WithoutCancel(ctx), s.projectors)
	if err != nil {
		s.projector = nil
		return err
	}
	s.projector = p
	return nil
}

// waitProjected polls until the projector's checkpoint reaches the stream's last sequence.
func (s *system) waitProjected(ctx context.Context, last uint64) bool {
	return poll(ctx, func(ctx context.Context) bool {
		seq, err := projection.Checkpoint(ctx, s.pool, modelName)
		return err == nil && seq >= last
	})
}
