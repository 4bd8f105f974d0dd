package soak

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet/internal/relay"
)

// runningRelay is one relay with its own Postgres pool and NATS connection, as a separate
// process would have.
type runningRelay struct {
	stop  func()
	crash func() // cut its NATS connection and Postgres sessions first, then stop
}

func (s *system) startRelay(ctx context.Context, i int) (*runningRelay, error) {
	pcfg, err := pgxpool.ParseConfig(s.cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("%s-relay-%d", appName, i)
	pcfg.ConnConfig.RuntimeParams["application_name"] = name
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("soak: relay %d: %w", i, err)
	}
	nc, err := connect(s.nats.ClientURL(), fmt.Sprintf("relay-%d", i))
	if err != nil {
		pool.Close()
		return nil, err
	}
	r, err := relay.New(relay.Config{
		Pool: pool, Conn: nc, BatchSize: 100, Window: 64,
		PollInterval: 200 * time.Millisecond, PublishTimeout: 2 * time.Second,
		// Every way of publishing, side by side and handing over.
		BatchPublish: i%3 == 1, AtomicPublish: i%3 == 2,
		Logger: s.cfg.Logger.With(zap.String("instance", name)),
	})
	if err != nil {
		nc.Close()
		pool.Close()
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	stop := func() {
		cancel()
		<-done
		nc.Close()
		pool.Close()
	}
	crash := func() {
		// Publishes in flight fail, acknowledgements are lost, a delete may not commit.
		nc.Close()
		_, _ = s.pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = $1`, name)
		stop()
	}
	return &runningRelay{stop: stop, crash: crash}, nil
}

// healRelays starts a relay in every empty slot.
func (s *system) healRelays(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range s.relays {
		if r != nil {
			continue
		}
		r, err := s.startRelay(ctx, i)
		if err != nil {
			return err
		}
		s.relays[i] = r
	}
	return nil
}
