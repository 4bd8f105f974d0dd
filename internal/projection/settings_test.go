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
// set, commits without waiting for the WAL flush: with Apply, and with Queue, whose batches
// go in one pipeline each.
func TestBatchTransactionSettings(t *testing.T) {
	t.Parallel()
	e := newEnv(t, registerDemo(t))
	e.appendCancelled(t, 3)
	e.waitRelayed(t)
	const settings = `SELECT current_setting('synchronous_commit') || ' ' || current_setting('search_path')`
	for _, queued := range []bool{false, true} {
		for _, durable := range []bool{false, true} {
			name := fmt.Sprintf("settings_%v_%v", queued, durable)
			var (
				mu   sync.Mutex
				seen []string
			)
			see := func(s string) {
				mu.Lock()
				seen = append(seen, s)
				mu.Unlock()
			}
			pr := ledgerNamed(name, "rm_"+name, "g1")
			apply := pr.Apply
			if queued {
				pr.Apply = nil
				pr.Queue = func(ctx context.Context, b *pgx.Batch, ev projection.Event) error {
					b.Queue(settings).QueryRow(func(row pgx.Row) error {
						var s string
						err := row.Scan(&s)
						see(s)
						return err
					})
					return nil
				}
			} else {
				pr.Apply = func(ctx context.Context, tx pgx.Tx, ev projection.Event) error {
					var s string
					if err := tx.QueryRow(ctx, settings).Scan(&s); err != nil {
						return err
					}
					see(s)
					return apply(ctx, tx, ev)
				}
			}
			stop := e.run(t, projection.Config{Projection: pr, SynchronousCommit: durable, IdleWait: 100 * time.Millisecond})
			e.waitApplied(t, name)
			stop()
			want := map[bool]string{false: "off", true: "on"}[durable] + " rm_" + name + ", public"
			require.Equal(t, []string{want, want, want}, seen)
		}
	}
}
