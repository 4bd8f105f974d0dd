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
	FaultProjectorKill     = "projector killed mid-batch"
	FaultProjectorKillIdle = "projector killed between batches"
	FaultMemberKill        = "group member killed mid-batch"
	FaultMemberKillIdle    = "group member killed between batches"
)

// injectFaults injects a random fault every FaultInterval on average until ctx ends, and
// returns how many of each it injected. Faults are dealt from a shuffled deck of the seven
// kinds, so every kind comes up once in each round of seven; dealt is closed when the
// first round is over. Relays are stopped gracefully or crashed (their NATS
// connection closed and Postgres sessions terminated before they stop) and started again;
// all may be down for a while. The projector and group members are killed, preferably in
// the middle of a batch, and replaced at once.
func (s *system) injectFaults(ctx context.Context, seed uint64, dealt chan<- struct{}) map[string]int {
	rng := rand.New(rand.NewPCG(seed, 7))
	counts := map[string]int{}
	var deck []int
	for round := 0; ; {
		if len(deck) == 0 {
			if round == 1 {
				close(dealt)
			}
			deck = rng.Perm(7)
			round++
		}
		pause := time.Duration(rng.Int64N(int64(2 * s.cfg.FaultInterval)))
		select {
		case <-ctx.Done():
			return counts
		case <-time.After(pause):
		}
		f := deck[0]
		deck = deck[1:]
		switch f {
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
		case 5, 6:
			// A projector or group member killed while it handles a batch: the projector's
			// transaction is open, the member's batch unacknowledged. Then a new instance.
			// Batches need events flowing, so every relay runs first; one that is slow to
			// come (the projector backs off after errors) is waited for.
			if err := s.healRelays(ctx); err == nil {
				counts[FaultRelayStart]++
			}
			wait := max(10*s.cfg.FaultInterval, 5*time.Second)
			var (
				caught   bool
				err      error
				mid, off = FaultProjectorKill, FaultProjectorKillIdle
			)
			if f == 6 && s.cfg.GroupMembers > 0 {
				caught, err = s.killMember(ctx, wait, rng.IntN(s.cfg.GroupMembers))
				mid, off = FaultMemberKill, FaultMemberKillIdle
			} else {
				caught, err = s.killProjector(ctx, wait)
			}
			if err != nil {
				s.cfg.Logf("restarting after %s: %v", mid, err)
			}
			if caught {
				counts[mid]++
			} else {
				counts[off]++
			}
		case 3, 4:
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
