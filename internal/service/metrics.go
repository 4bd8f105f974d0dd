package service

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// PoolCollector exports a pgx pool's statistics as pgjet_db_pool_* metrics, read at scrape
// time.
type PoolCollector struct {
	pool *pgxpool.Pool

	acquired, idle, total, max, constructing *prometheus.Desc
	acquires, acquireSeconds, emptyAcquires  *prometheus.Desc
	canceledAcquires, newConns               *prometheus.Desc
	lifetimeDestroys, idleDestroys           *prometheus.Desc
}

// NewPoolCollector returns a collector of pool's statistics.
func NewPoolCollector(pool *pgxpool.Pool) *PoolCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("pgjet_db_pool_"+name, help, nil, nil)
	}
	return &PoolCollector{
		pool:             pool,
		acquired:         d("acquired_conns", "Connections currently in use."),
		idle:             d("idle_conns", "Idle connections in the pool."),
		total:            d("total_conns", "Connections in the pool: acquired, idle and being opened."),
		max:              d("max_conns", "The pool's size limit."),
		constructing:     d("constructing_conns", "Connections being opened."),
		acquires:         d("acquires_total", "Successful connection acquisitions."),
		acquireSeconds:   d("acquire_duration_seconds_total", "Total time spent waiting to acquire connections."),
		emptyAcquires:    d("empty_acquires_total", "Acquisitions that waited because the pool had no idle connection."),
		canceledAcquires: d("canceled_acquires_total", "Acquisitions abandoned because their context ended."),
		newConns:         d("new_conns_total", "Connections opened."),
		lifetimeDestroys: d("max_lifetime_destroys_total", "Connections closed for reaching their maximum lifetime."),
		idleDestroys:     d("max_idle_destroys_total", "Connections closed for idling too long."),
	}
}

// Describe implements prometheus.Collector.
func (c *PoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.acquired, c.idle, c.total, c.max, c.constructing, c.acquires,
		c.acquireSeconds, c.emptyAcquires, c.canceledAcquires, c.newConns, c.lifetimeDestroys, c.idleDestroys} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *PoolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	n := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	g(c.acquired, float64(s.AcquiredConns()))
	g(c.idle, float64(s.IdleConns()))
	g(c.total, float64(s.TotalConns()))
	g(c.max, float64(s.MaxConns()))
	g(c.constructing, float64(s.ConstructingConns()))
	n(c.acquires, float64(s.AcquireCount()))
	n(c.acquireSeconds, s.AcquireDuration().Seconds())
	n(c.emptyAcquires, float64(s.EmptyAcquireCount()))
	n(c.canceledAcquires, float64(s.CanceledAcquireCount()))
	n(c.newConns, float64(s.NewConnsCount()))
	n(c.lifetimeDestroys, float64(s.MaxLifetimeDestroyCount()))
	n(c.idleDestroys, float64(s.MaxIdleDestroyCount()))
}

// NATSCollector exports the state of a NATS connection: pgjet_nats_connected and
// pgjet_nats_reconnects_total, read at scrape time.
type NATSCollector struct {
	conn                  *nats.Conn
	connected, reconnects *prometheus.Desc
}

// NewNATSCollector returns a collector of conn's state.
func NewNATSCollector(conn *nats.Conn) *NATSCollector {
	return &NATSCollector{
		conn:       conn,
		connected:  prometheus.NewDesc("pgjet_nats_connected", "1 while the NATS connection is up, else 0.", nil, nil),
		reconnects: prometheus.NewDesc("pgjet_nats_reconnects_total", "Times the NATS connection reconnected.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *NATSCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.connected; ch <- c.reconnects }

// Collect implements prometheus.Collector.
func (c *NATSCollector) Collect(ch chan<- prometheus.Metric) {
	up := 0.0
	if c.conn.IsConnected() {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(c.reconnects, prometheus.CounterValue, float64(c.conn.Stats().Reconnects))
}
