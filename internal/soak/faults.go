package soak

import (
	"context"
	"math/rand/v2"
	"time"
)

// Fault names, as counted in Result.Faults.
const (
	FaultRelayStop         = "relay stopped"
	FaultRelayCrash        = "relay crashed"
	FaultRelayStart        = "relay started"
	FaultNATSRestart       = "nats-server restarted"
	FaultTerminateSessions = "postgres sessions terminated"
)

// injectFaults injects a random fault every FaultInterval on average until ctx ends, and
// returns how many of each it injected. Relays are stopped gracefully or crashed (their NATS
// connection closed and Postgres sessions terminated before they stop) and started again;
// all may be down for a while.
func (s *system) injectFaults(ctx context.Context, seed uint64) map[string]int {
	rng := rand.New(rand.NewPCG(seed, 7))
	counts := map[string]int{}
	for {
		pause := time.Duration(rng.Int64N(int64(2 * s.cfg.FaultInterval)))
		select {
		case <-ctx.Done():
			return counts
		case <-time.After(pause):
		}
		switch f := rng.IntN(5); f {
		case 0, 1:
			s.mu.Lock()
			i := rng.IntN(len(s.relays))
			r := s.relays[i]
			s.relays[i] = nil
			s.mu.Unlock()
			switch {
			case r == nil:
				if err := s.healRelays(ctx); err == nil {
					counts[FaultRelayStart]++
				}
			case f == 0:
				r.stop()
				counts[FaultRelayStop]++
			default:
				r.crash()
				counts[FaultRelayCrash]++
			}
		case 2:
			if err := s.nats.Restart(); err != nil {
				s.cfg.Logf("restarting nats-server: %v", err)
				continue
			}
			counts[FaultNATSRestart]++
		default:
			// Writers' and relays' sessions: appends in flight fail with an unknown outcome,
			// relays lose their partition locks and LISTEN sessions.
			_, err := s.pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
				WHERE datname = current_database() AND application_name LIKE $1 AND pid <> pg_backend_pid()`,
				appName+"-%")
			if err == nil {
				counts[FaultTerminateSessions]++
			}
		}
		if ctx.Err() == nil && rng.IntN(3) == 0 {
			if err := s.healRelays(ctx); err == nil {
				counts[FaultRelayStart]++
			}
		}
	}
}
