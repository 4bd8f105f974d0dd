package service

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Ops is the operations HTTP server of a binary: /metrics, /healthz (the process is alive)
// and /readyz (every readiness check passes). Both health endpoints answer JSON saying
// what is wrong. The readiness checks run concurrently, each within 2 s of its own;
// probes that arrive during a run share it, and a result less than a second old answers
// without running the checks again. A failing check is logged when it starts failing and
// when it recovers, not on every probe.
type Ops struct {
	Registry *prometheus.Registry
	Mux      *http.ServeMux
	log      *zap.Logger

	// checkTimeout is each readiness check's budget (readyCheckTimeout) and maxAge how
	// long a run's result answers /readyz (readyMaxAge), by the clock now.
	checkTimeout, maxAge time.Duration
	now                  func() time.Time

	mu      sync.Mutex
	checks  []namedCheck
	failing map[string]bool
	running *readyRun // the run of the checks in flight, if any
	lastRun *readyRun // the last finished run, if any
}

// NewOps returns an Ops with a fresh metrics registry that already holds the Go runtime
// and process collectors.
func NewOps(log *zap.Logger) *Ops {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	o := &Ops{
		Registry: reg, Mux: http.NewServeMux(), log: log,
		checkTimeout: readyCheckTimeout, maxAge: readyMaxAge, now: time.Now, failing: map[string]bool{},
	}
	o.Mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	o.Mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	o.Mux.HandleFunc("GET /readyz", o.ready)
	return o
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// httpLimits bounds what one client can hold of an HTTP server, and how long a shutdown
// waits for the requests in flight.
type httpLimits struct {
	readHeader, read, write, idle, shutdown time.Duration
	maxHeaderBytes                          int
}

// defaultHTTPLimits are the limits of every binary's HTTP server (docs/operations.md).
// A request has a minute to arrive whole (4 MiB bodies over slow links) and two to be
// answered; idle keep-alive connections close after two minutes.
func defaultHTTPLimits() httpLimits {
	return httpLimits{
		readHeader:     10 * time.Second,
		read:           time.Minute,
		write:          2 * time.Minute,
		idle:           2 * time.Minute,
		shutdown:       10 * time.Second,
		maxHeaderBytes: 64 << 10,
	}
}

// Serve serves handler on addr until ctx is cancelled, then shuts down gracefully: it
// stops accepting connections and waits up to 10 seconds for the requests in flight,
// then closes the connections of those still running. Slow or idle clients are cut off
// (see docs/operations.md for the limits). An empty addr serves nothing, says so, and
// returns when ctx ends.
func Serve(ctx context.Context, addr string, handler http.Handler, log *zap.Logger) error {
	return serve(ctx, addr, handler, log, defaultHTTPLimits())
}

func serve(ctx context.Context, addr string, handler http.Handler, log *zap.Logger, lim httpLimits) error {
	if addr == "" {
		log.Warn("the HTTP address is empty: serving no HTTP (no API, /metrics, /healthz or /readyz)")
		<-ctx.Done()
		return nil
	}
	// net/http's own complaints (accept errors, a handler's misuse) go to the JSON log,
	// not to stderr as plain text.
	errLog, err := zap.NewStdLogAt(log.Named("http"), zap.WarnLevel)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: lim.readHeader,
		ReadTimeout:       lim.read,
		WriteTimeout:      lim.write,
		IdleTimeout:       lim.idle,
		MaxHeaderBytes:    lim.maxHeaderBytes,
		ErrorLog:          errLog,
	}
	log.Info("serving HTTP", zap.String("addr", ln.Addr().String()))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lim.shutdown)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("HTTP requests still running at the end of the shutdown; closing their connections",
			zap.Duration("waited", lim.shutdown), zap.Error(err))
		_ = srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
