package projection_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet/internal/projection"
)

// A batch's transaction runs in the projection's schema and, unless SynchronousCommit is
// set, commits without waiting for the WAL flush.
func TestBatchTransactionSettings(t *testing.T) {
	t.Parallel()
	e := newEnv(t, registerDemo(t))
	e.appendCancelled(t, 3)
	e.waitRelayed(t)
	for _, durable := range []bool{false, true} {
		name := fmt.Sprintf("settings_%v", durable)
		var (
			mu   sync.Mutex
			seen []string
		)
		pr := ledgerNamed(name, "rm_"+name, "g1")
		apply := pr.Apply
		pr.Apply = func(ctx context.Context, tx pgx.Tx, ev projection.Event) error {
			var sync, path string
			if err := tx.QueryRow(ctx, `SELECT current_setting('synchronous_commit'), current_setting('search_path')`).Scan(&sync, &path); err != nil {
				return err
			}
			mu.Lock()
			seen = append(seen, sync+" "+path)
			mu.Unlock()
			return apply(ctx, tx, ev)
		}
		stop := e.run(t, projection.Config{Projection: pr, SynchronousCommit: durable, IdleWait: 100 * time.Millisecond})
		e.waitApplied(t, name)
		stop()
		want := map[bool]string{false: "off", true: "on"}[durable] + " rm_" + name + ", public"
		require.Equal(t, []string{want, want, want}, seen)
	}
}
