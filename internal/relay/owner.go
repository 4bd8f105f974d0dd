package relay

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet/internal/outbox"
)

// Advisory lock keys (two-int form). Membership is a shared lock every live relay holds on
// (lockClassMembers, 0); partition p is an exclusive lock on (lockClassPartition, p). Both
// live on the owner's dedicated session: if the session dies, Postgres frees them and
// another relay takes over. A relay ensuring the JetStream stream holds a transaction lock
// on (lockClassStream, hashtext(stream name)) meanwhile (see Relay.ensureStream).
const (
	lockClassMembers   int32 = 0x706a0001
	lockClassPartition int32 = 0x706a0002
	lockClassStream    int32 = 0x706a0004
)

// owner keeps this relay's fair share of the outbox partitions.
type owner struct {
	connConfig *pgx.ConnConfig
	poll       time.Duration // how often rebalance runs
	log        *zap.Logger

	conn *pgx.Conn // used only by rebalance, which runs on one goroutine

	// mu fences batches from releases: drain workers hold it for reading during a batch;
	// releasing partitions (and forgetting them all) holds it for writing, so a partition
	// is never given away mid-batch by this relay. Claiming does not take it: a batch stuck
	// on a lock held by a dead relay's session must not stop this relay taking over more.
	mu sync.RWMutex
	// mapMu guards owned.
	mapMu sync.Mutex
	owned map[int16]bool
}

func newOwner(cc *pgx.ConnConfig, poll time.Duration, log *zap.Logger) *owner {
	return &owner{connConfig: cc, poll: poll, log: log, owned: map[int16]bool{}}
}

// opTimeout bounds one rebalance's work on the lock session, so a session whose network
// hangs is given up instead of blocking rebalancing forever.
func (o *owner) opTimeout() time.Duration { return max(5*o.poll, 2*time.Second) }

// idleTimeout is the lock session's idle_session_timeout. Rebalance pings the session every
// poll interval; a relay cut off from Postgres without a TCP reset (a network partition,
// a frozen process) stops pinging, and Postgres ends the session after idleTimeout, which
// frees its partitions for the other relays. Without it the locks stay held until TCP
// keepalives notice, which by default takes hours, and those partitions are not relayed.
//
// A relay that takes over publishes again the rows the cut-off relay published but could not
// delete, so the stream's duplicate window must be longer than this timeout plus a batch's
// publish time (by default 2 minutes against 10 s).
func (o *owner) idleTimeout() time.Duration { return max(10*o.poll, 2*time.Second) }

// ownedOf returns the owned partitions among want.
func (o *owner) ownedOf(want []int16) []int16 {
	o.mapMu.Lock()
	defer o.mapMu.Unlock()
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
	o.mapMu.Lock()
	defer o.mapMu.Unlock()
	return len(o.owned)
}

// rebalance reconnects if needed, then takes or releases partitions to reach a fair share:
// ceil(Partitions / live relays). It returns whether ownership changed.
func (o *owner) rebalance(parent context.Context) (changed bool, err error) {
	ctx, cancel := context.WithTimeout(parent, o.opTimeout())
	defer cancel()
	if o.conn != nil && o.conn.Ping(ctx) != nil {
		o.lost(ctx)
	}
	if o.conn == nil {
		conn, err := pgx.ConnectConfig(ctx, o.connConfig)
		if err != nil {
			return false, fmt.Errorf("connecting the partition-lock session: %w", err)
		}
		// Before joining, so the session never holds locks without the timeout.
		idle := strconv.FormatInt(o.idleTimeout().Milliseconds(), 10)
		if _, err := conn.Exec(ctx, `SELECT set_config('idle_session_timeout', $1, false)`, idle); err != nil {
			o.log.Warn("cannot set idle_session_timeout (Postgres 14+) on the partition-lock session; "+
				"a relay partitioned from Postgres keeps its partitions until TCP keepalives notice", zap.Error(err))
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

	have := o.count()
	switch {
	case have > share:
		pingErr := o.lockBatches(parent)
		defer o.mu.Unlock()
		if pingErr != nil {
			return true, o.failLocked(parent, fmt.Errorf("keeping the partition-lock session alive while batches finish: %w", pingErr))
		}
		// The releases get a time of their own: a batch that took longer than the timeout
		// must not make them fail, which gave up every partition as if the session were lost.
		ctx, cancel := context.WithTimeout(parent, o.opTimeout())
		defer cancel()
		o.mapMu.Lock()
		owned := make([]int16, 0, len(o.owned))
		for p := range o.owned {
			owned = append(owned, p)
		}
		o.mapMu.Unlock()
		slices.Sort(owned)
		for _, p := range owned[share:] {
			if _, err := o.conn.Exec(ctx, `SELECT pg_advisory_unlock($1, $2)`, lockClassPartition, int32(p)); err != nil {
				return true, o.failLocked(ctx, fmt.Errorf("releasing partition %d: %w", p, err))
			}
			o.mapMu.Lock()
			delete(o.owned, p)
			o.mapMu.Unlock()
			o.log.Info("released partition", zap.Int16("partition", p), zap.Int("relays", members))
		}
		return true, nil
	case have < share:
		// Start at a random partition so relays starting together spread out.
		start := rand.IntN(outbox.Partitions)
		for i := 0; i < outbox.Partitions && have < share; i++ {
			p := int16((start + i) % outbox.Partitions)
			o.mapMu.Lock()
			mine := o.owned[p]
			o.mapMu.Unlock()
			if mine {
				continue
			}
			var got bool
			if err := o.conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, $2)`, lockClassPartition, int32(p)).Scan(&got); err != nil {
				return changed, o.fail(ctx, fmt.Errorf("claiming partition %d: %w", p, err))
			}
			if got {
				o.mapMu.Lock()
				o.owned[p] = true
				o.mapMu.Unlock()
				have++
				changed = true
				o.log.Info("claimed partition", zap.Int16("partition", p), zap.Int("relays", members))
			}
		}
	}
	return changed, nil
}

// lockBatches locks mu for writing, which waits for this relay's batches to finish, and
// pings the lock session every poll interval meanwhile. A batch may take longer than the
// session's idle timeout (its publishes alone run up to half the duplicate window), and
// Postgres would end the idle session, handing this relay's partitions to another relay
// while this one still publishes them. It returns the first failed ping's error: the
// session is gone.
func (o *owner) lockBatches(ctx context.Context) error {
	locked := make(chan struct{})
	go func() {
		o.mu.Lock()
		close(locked)
	}()
	t := time.NewTicker(o.poll)
	defer t.Stop()
	var err error
	for {
		select {
		case <-locked:
			return err
		case <-t.C:
			if err == nil {
				pctx, cancel := context.WithTimeout(ctx, o.opTimeout())
				err = o.conn.Ping(pctx)
				cancel()
			}
		}
	}
}

// lost forgets every partition: the session holding their locks is gone.
func (o *owner) lost(ctx context.Context) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.lostLocked(ctx)
}

func (o *owner) lostLocked(ctx context.Context) {
	o.mapMu.Lock()
	if len(o.owned) > 0 {
		o.log.Warn("partition-lock session lost; releasing all partitions", zap.Int("partitions", len(o.owned)))
	}
	clear(o.owned)
	o.mapMu.Unlock()
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
	o.mapMu.Lock()
	clear(o.owned)
	o.mapMu.Unlock()
	if o.conn != nil {
		o.conn.Close(ctx)
		o.conn = nil
	}
}
