package soak

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/pgjet/pgjet/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// A short run with every kind of fault finds no violation.
func TestShortRunWithFaultsHasNoViolations(t *testing.T) {
	t.Parallel()
	res, err := Run(context.Background(), Config{
		DatabaseURL: pgtest.DB(t), NATSDir: t.TempDir(),
		Duration: 5 * time.Second, MaxAppends: 6000, FaultInterval: 250 * time.Millisecond,
		Settle: 20 * time.Second, Seed: 3, Logf: t.Logf,
		// Shown when the test fails: what each part recovered from, and when.
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
	})
	require.NoError(t, err)
	t.Log("\n" + res.String())
	require.True(t, res.OK(), res.String())
	require.Positive(t, res.Committed)
	require.Positive(t, res.Conflicts)
	require.Positive(t, res.RolledBack)
	require.NotEmpty(t, res.Faults)
	require.Positive(t, res.Faults[FaultProjectorKill], "the projector was never killed mid-batch")
	require.Positive(t, res.Faults[FaultMemberKill], "no group member was killed mid-batch")
	require.Equal(t, res.Events, res.ModelEvents)
	require.Equal(t, res.Events, res.GroupEvents)
}

// The checker is not blind: a message lost from JetStream, an append recorded as rolled
// back whose events are in Postgres, a corrupted and a missing read-model row, and an event
// the group never got are all reported.
func TestCheckerReportsViolations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := Config{DatabaseURL: pgtest.DB(t), NATSDir: t.TempDir(), Relays: 1, Consumers: 1, Streams: 4, FaultInterval: -1}
	cfg.setDefaults()
	sys, err := start(ctx, cfg)
	require.NoError(t, err)
	defer sys.close()
	c, err := startConsumer(ctx, sys.js, 0)
	require.NoError(t, err)
	defer c.stop()
	h := newHistory()
	sys.write(ctx, 0, 1, newBudget(40), h)
	require.True(t, sys.waitDrained(ctx))
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	last, ok := sys.waitConsumers(wctx, []*consumer{c})
	require.True(t, ok)
	require.True(t, sys.waitProjected(wctx, last))
	require.True(t, sys.waitGroup(wctx))
	sys.group.stop()

	clean := &Result{}
	require.NoError(t, check(ctx, sys, h, []*consumer{c}, clean))
	require.True(t, clean.OK(), clean.String())

	st, err := sys.js.Stream(ctx, "PGJET_EVENTS")
	require.NoError(t, err)
	require.NoError(t, st.DeleteMsg(ctx, 1))
	h.mu.Lock()
	for i, a := range h.attempts {
		if a.outcome == outcomeCommitted {
			h.attempts[i].outcome = outcomeRolledBack
			break
		}
	}
	h.mu.Unlock()
	model, err := readModel(ctx, sys.pool)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(model), 2)
	streams := slices.Sorted(maps.Keys(model))
	_, err = sys.pool.Exec(ctx, `UPDATE soak_model.streams SET digest = 'corrupt' WHERE stream_id = $1`, streams[0])
	require.NoError(t, err)
	_, err = sys.pool.Exec(ctx, `DELETE FROM soak_model.streams WHERE stream_id = $1`, streams[1])
	require.NoError(t, err)
	sys.group.mu.Lock()
	lost := sys.group.seen[0]
	kept := sys.group.seen[:0]
	for _, d := range sys.group.seen {
		if d.stream != lost.stream || d.version != lost.version {
			kept = append(kept, d)
		}
	}
	sys.group.seen = kept
	sys.group.mu.Unlock()
	bad := &Result{}
	require.NoError(t, check(ctx, sys, h, []*consumer{c}, bad))
	t.Log("\n" + bad.String())
	require.False(t, bad.OK())
	require.Contains(t, bad.String(), "committed event not in JetStream")
	require.Contains(t, bad.String(), "rolled back append to")
	require.Contains(t, bad.String(), "read model row of "+streams[0]+" differs from the rebuild")
	require.Contains(t, bad.String(), "read model lacks stream "+streams[1])
	require.Contains(t, bad.String(), fmt.Sprintf("group: committed event %s (%s v%d) never handed to a member", lost.id, lost.stream, lost.version))
}
