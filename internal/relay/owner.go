package relay

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet/internal/outbox"
)

// Advisory lock keys (two-int form). Membership is a shared lock every live relay holds on
// (lockClassMembers, 0); partition p is an exclusive lock on (lockClassPartition, p). Both
// live on the owner's dedicated session: if the session dies, Postgres frees them and
// another relay takes over.
const (
	lockClassMembers   int32 = 0x706a0001
	lockClassPartition int32 = 0x706a0002
)

// owner keeps this relay's fair share of the outbox partitions.
type owner struct {
	connConfig *pgx.ConnConfig
	log        *zap.Logger

	conn *pgx.Conn // used only by rebalance, which runs on one goroutine

	// mu guards owned. Drain workers hold it for reading during a batch; rebalance holds it
	// for writing while it releases partitions, so a partition is never given away
	// mid-batch by this relay.
	mu    sync.RWMutex
	owned map[int16]bool
}

func newOwner(cc *pgx.ConnConfig, log *zap.Logger) *owner {
	return &owner{connConfig: cc, log: log, owned: map[int16]bool{}}
}

// ownedOf returns the owned partitions among want.
func (o *owner) ownedOf(want []int16) []int16 {
	var out []int16
	for _, p := range want {
		if o.owned[p] {
			out = append(out, p)
		}
	}
	return out
}

// count returns how many partitions this relay owns.
func (o *owner) count() int {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return len(o.owned)
}

// rebalance reconnects if needed, then takes or releases partitions to reach a fair share:
// ceil(Partitions / live relays). It returns whether ownership changed.
func (o *owner) rebalance(ctx context.Context) (changed bool, err error) {
	if o.conn != nil && o.conn.Ping(ctx) != nil {
		o.lost(ctx)
	}
	if o.conn == nil {
		conn, err := pgx.ConnectConfig(ctx, o.connConfig)
		if err != nil {
			return false, fmt.Errorf("connecting the partition-lock session: %w", err)
		}
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock_shared($1, 0)`, lockClassMembers); err != nil {
			conn.Close(ctx)
			return false, fmt.Errorf("joining the relay group: %w", err)
		}
		o.conn = conn
	}
	var members int
	err = o.conn.QueryRow(ctx, `
		SELECT count(*) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND classid = $1::int::oid AND objid = 0 AND objsubid = 2
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
		lockClassMembers).Scan(&members)
	if err != nil {
		return false, o.fail(ctx, fmt.Errorf("counting relays: %w", err))
	}
	share := (outbox.Partitions + max(members, 1) - 1) / max(members, 1)

	o.mu.RLock()
	have := len(o.owned)
	o.mu.RUnlock()
	switch {
	case have > share:
		o.mu.Lock()
		defer o.mu.Unlock()
		owned := make([]int16, 0, len(o.owned))
		for p := range o.owned {
			owned = append(owned, p)
		}
		slices.Sort(owned)
		for _, p := range owned[share:] {
			if _, err := o.conn.Exec(ctx, `SELECT pg_advisory_unlock($1, $2)`, lockClassPartition, int32(p)); err != nil {
				return true, o.failLocked(ctx, fmt.Errorf("releasing partition %d: %w", p, err))
			}
			delete(o.owned, p)
			o.log.Info("released partition", zap.Int16("partition", p), zap.Int("relays", members))
		}
		return true, nil
	case have < share:
		// Start at a random partition so relays starting together spread out.
		start := rand.IntN(outbox.Partitions)
		for i := 0; i < outbox.Partitions && have < share; i++ {
			p := int16((start + i) % outbox.Partitions)
			o.mu.RLock()
			mine := o.owned[p]
			o.mu.RUnlock()
			if mine {
				continue
			}
			var got bool
			if err := o.conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, $2)`, lockClassPartition, int32(p)).Scan(&got); err != nil {
				return changed, o.fail(ctx, fmt.Errorf("claiming partition %d: %w", p, err))
			}
			if got {
				o.mu.Lock()
				o.owned[p] = true
				o.mu.Unlock()
				have++
				changed = true
				o.log.Info("claimed partition", zap.Int16("partition", p), zap.Int("relays", members))
			}
		}
	}
	return changed, nil
}

// lost forgets every partition: the session holding their locks is gone.
func (o *owner) lost(ctx context.Context) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.lostLocked(ctx)
}

func (o *owner) lostLocked(ctx context.Context) {
	if len(o.owned) > 0 {
		o.log.Warn("partition-lock session lost; releasing all partitions", zap.Int("partitions", len(o.owned)))
	}
	clear(o.owned)
	if o.conn != nil {
		o.conn.Close(ctx)
		o.conn = nil
	}
}

func (o *owner) fail(ctx context.Context, err error) error {
	o.lost(ctx)
	return err
}

func (o *owner) failLocked(ctx context.Context, err error) error {
	o.lostLocked(ctx)
	return err
}

// close ends the session, which releases every lock at once.
func (o *owner) close(ctx context.Context) {
	o.mu.Lock()
	defer o.mu.Unlock()
	clear(o.owned)
	if o.conn != nil {
		o.conn.Close(ctx)
		o.conn = nil
	}
}
