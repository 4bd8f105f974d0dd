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

// readyCheckTimeout is the budget of each readiness check. The checks run concurrently,
// so a slow one does not spend the others' time.
const readyCheckTimeout = 2 * time.Second

// Check is one readiness condition; nil means satisfied. It must return soon after ctx
// ends: ctx carries the check's own budget, and /readyz waits for every check.
type Check func(ctx context.Context) error

type namedCheck struct {
	name  string
	check Check
}

// AddCheck adds a readiness condition. Every check runs concurrently with the others,
// with a budget of its own.
func (o *Ops) AddCheck(name string, c Check) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.checks = append(o.checks, namedCheck{name, c})
}

// readyReport is what one run of the readiness checks found: each check's "ok" or error,
// and whether all passed.
type readyReport struct {
	ok      bool
	results map[string]string
}

func (o *Ops) ready(w http.ResponseWriter, r *http.Request) {
	rep := o.runChecks(r.Context())
	status, code := "ready", http.StatusOK
	if !rep.ok {
		status, code = "not ready", http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{"status": status, "checks": rep.results})
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
