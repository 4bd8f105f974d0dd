package service

import (
	"context"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// Check is one readiness condition; nil means satisfied.
type Check func(ctx context.Context) error

type namedCheck struct {
	name  string
	check Check
}

// AddCheck adds a readiness condition.
func (o *Ops) AddCheck(name string, c Check) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.checks = append(o.checks, namedCheck{name, c})
}

func (o *Ops) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	o.mu.Lock()
	checks := append([]namedCheck(nil), o.checks...)
	o.mu.Unlock()
	results := map[string]string{}
	ok := true
	for _, c := range checks {
		err := c.check(ctx)
		o.mu.Lock()
		was := o.failing[c.name]
		o.failing[c.name] = err != nil
		o.mu.Unlock()
		switch {
		case err != nil:
			ok = false
			results[c.name] = err.Error()
			if !was {
				o.log.Warn("readiness check failing", zap.String("check", c.name), zap.Error(err))
			}
		default:
			results[c.name] = "ok"
			if was {
				o.log.Info("readiness check recovered", zap.String("check", c.name))
			}
		}
	}
	status, code := "ready", http.StatusOK
	if !ok {
		status, code = "not ready", http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{"status": status, "checks": results})
}
