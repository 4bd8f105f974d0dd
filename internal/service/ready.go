package service

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
)

const (
	// readyCheckTimeout is the budget of each readiness check. The checks run
	// concurrently, so a slow one does not spend the others' time.
	readyCheckTimeout = 2 * time.Second
	// readyMaxAge is how long /readyz answers with the last run's result instead of
	// running the checks again: however many probers there are (Kubernetes, load
	// balancers, monitors), the checks run about once a second at most, and a busy
	// pool is not made busier by being watched.
	readyMaxAge = time.Second
)

// Check is one readiness condition; nil means satisfied. It must return soon after ctx
// ends: ctx carries the check's own budget, and /readyz waits for every check.
type Check func(ctx context.Context) error

type namedCheck struct {
	name  string
	check Check
}

// AddCheck adds a readiness condition. Every check runs concurrently with the others,
// with a budget of its own; the next /readyz runs it.
func (o *Ops) AddCheck(name string, c Check) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.checks = append(o.checks, namedCheck{name, c})
	o.lastRun = nil
}

// readyReport is what one run of the readiness checks found: each check's "ok" or error,
// and whether all passed.
type readyReport struct {
	ok      bool
	results map[string]string
}

// readyRun is one run of the readiness checks, shared by the probes that arrive while it
// runs. report and at are set before done is closed.
type readyRun struct {
	done    chan struct{}
	report  readyReport
	at      time.Time // when the run finished
	waiters int       // probes that waited for it: tests wait for them to join
}

func (o *Ops) ready(w http.ResponseWriter, r *http.Request) {
	rep, err := o.readiness(r.Context())
	if err != nil { // the prober has gone
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "checks": map[string]string{}})
		return
	}
	status, code := "ready", http.StatusOK
	if !rep.ok {
		status, code = "not ready", http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{"status": status, "checks": rep.results})
}

// readiness returns the last run's report if it is younger than o.maxAge; otherwise it
// waits for the run in flight, starting one if none is. The run does not depend on ctx:
// if ctx ends first, readiness returns its error and the run goes on for the other
// probes.
func (o *Ops) readiness(ctx context.Context) (readyReport, error) {
	o.mu.Lock()
	if last := o.lastRun; last != nil && o.now().Sub(last.at) < o.maxAge {
		o.mu.Unlock()
		return last.report, nil
	}
	run := o.running
	if run == nil {
		run = &readyRun{done: make(chan struct{})}
		o.running = run
		go o.run(context.WithoutCancel(ctx), run)
	}
	run.waiters++
	o.mu.Unlock()
	select {
	case <-run.done:
		return run.report, nil
	case <-ctx.Done():
		return readyReport{}, ctx.Err()
	}
}

// run runs the checks for run and makes its report the last one.
func (o *Ops) run(ctx context.Context, run *readyRun) {
	rep := o.runChecks(ctx)
	o.mu.Lock()
	run.report, run.at = rep, o.now()
	o.running, o.lastRun = nil, run
	o.mu.Unlock()
	close(run.done)
}

// runChecks runs every check concurrently, each bounded by o.checkTimeout, and logs the
// checks that start failing or recover.
func (o *Ops) runChecks(ctx context.Context) readyReport {
	o.mu.Lock()
	checks := append([]namedCheck(nil), o.checks...)
	o.mu.Unlock()
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() { errs[i] = o.runCheck(ctx, c.check) })
	}
	wg.Wait()

	rep := readyReport{ok: true, results: make(map[string]string, len(checks))}
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, c := range checks {
		err := errs[i]
		was := o.failing[c.name]
		o.failing[c.name] = err != nil
		switch {
		case err != nil:
			rep.ok = false
			rep.results[c.name] = err.Error()
			if !was {
				o.log.Warn("readiness check failing", zap.String("check", c.name), zap.Error(err))
			}
		default:
			rep.results[c.name] = "ok"
			if was {
				o.log.Info("readiness check recovered", zap.String("check", c.name))
			}
		}
	}
	return rep
}

// runCheck runs c within its own budget. An error after the budget has run out says so,
// whatever the check made of its context's end.
func (o *Ops) runCheck(ctx context.Context, c Check) error {
	ctx, cancel := context.WithTimeout(ctx, o.checkTimeout)
	defer cancel()
	err := c(ctx)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("timed out after %s: %w", o.checkTimeout, err)
	}
	return err
}
