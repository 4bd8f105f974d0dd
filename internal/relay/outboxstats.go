package relay

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// OutboxCountCap bounds the rows ReadOutboxStats counts exactly. Beyond it, the pending
// count is the planner's estimate (pg_class.reltuples), so a scrape stays cheap however
// far behind the relays are.
const OutboxCountCap = 10_000

// OutboxStats describes the rows waiting in the outbox.
type OutboxStats struct {
	// Pending is the number of unpublished rows: exact up to OutboxCountCap, an estimate
	// (at least OutboxCountCap) beyond.
	Pending int64
	// Exact reports whether Pending was counted rather than estimated.
	Exact bool
	// OldestAge is how long the oldest unpublished row (lowest position) has waited, by
	// the database's clock; 0 when the outbox is empty.
	OldestAge time.Duration
	// DeadRows is the number of published rows deleted from the outbox and not yet
	// vacuumed away, by Postgres's cumulative statistics (which lag by up to a second or
	// so). Relays step over them on every read until a vacuum removes them; a count that
	// only grows means autovacuum is off or cannot keep up.
	DeadRows int64
}

// ReadOutboxStats reads the outbox's backlog with two index-bounded queries, and its dead
// rows from Postgres's statistics.
func ReadOutboxStats(ctx context.Context, db interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}) (OutboxStats, error) {
	var (
		s             OutboxStats
		estimate, age float64
	)
	err := db.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM (SELECT 1 FROM pgjet.outbox LIMIT $1) x),
		       coalesce((SELECT reltuples FROM pg_class WHERE oid = 'pgjet.outbox'::regclass), 0)::float8,
		       coalesce((SELECT extract(epoch FROM clock_timestamp() - created_at)
		                 FROM pgjet.outbox ORDER BY position LIMIT 1), 0)::float8,
		       pg_stat_get_dead_tuples('pgjet.outbox'::regclass)`,
		OutboxCountCap).Scan(&s.Pending, &estimate, &age, &s.DeadRows)
	if err != nil {
		return OutboxStats{}, fmt.Errorf("reading outbox stats: %w", err)
	}
	s.OldestAge = time.Duration(max(age, 0) * float64(time.Second))
	s.Exact = s.Pending < OutboxCountCap
	if !s.Exact {
		s.Pending = max(s.Pending, int64(estimate))
	}
	return s, nil
}

// OutboxCollector exports OutboxStats as pgjet_outbox_pending_rows,
// pgjet_outbox_oldest_age_seconds and pgjet_outbox_dead_rows, read from Postgres at scrape
// time (bounded by a timeout). A failed read leaves them out of that scrape and counts
// pgjet_outbox_stats_errors_total.
type OutboxCollector struct {
	db interface {
		QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	}
	timeout time.Duration
	errors  atomic.Int64

	pending, age, dead, errs *prometheus.Desc
}

// NewOutboxCollector returns a collector reading db's outbox; timeout bounds each scrape's
// queries (0 means 2s).
func NewOutboxCollector(db interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, timeout time.Duration) *OutboxCollector {
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	return &OutboxCollector{
		db: db, timeout: timeout,
		pending: prometheus.NewDesc("pgjet_outbox_pending_rows",
			fmt.Sprintf("Outbox rows not yet published: exact up to %d, an estimate beyond.", OutboxCountCap), nil, nil),
		age: prometheus.NewDesc("pgjet_outbox_oldest_age_seconds",
			"How long the oldest unpublished outbox row has waited; 0 when the outbox is empty.", nil, nil),
		dead: prometheus.NewDesc("pgjet_outbox_dead_rows",
			"Deleted outbox rows not yet vacuumed away, which relays step over on every read.", nil, nil),
		errs: prometheus.NewDesc("pgjet_outbox_stats_errors_total",
			"Scrapes that could not read the outbox statistics.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *OutboxCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.age
	ch <- c.dead
	ch <- c.errs
}

// Collect implements prometheus.Collector.
func (c *OutboxCollector) Collect(ch chan<- prometheus.Metric) {
	// Collect has no context of its own: a scrape is bounded by the timeout alone.
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	s, err := ReadOutboxStats(ctx, c.db)
	if err != nil {
		c.errors.Add(1)
	} else {
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(s.Pending))
		ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, s.OldestAge.Seconds())
		ch <- prometheus.MustNewConstMetric(c.dead, prometheus.GaugeValue, float64(s.DeadRows))
	}
	ch <- prometheus.MustNewConstMetric(c.errs, prometheus.CounterValue, float64(c.errors.Load()))
}
