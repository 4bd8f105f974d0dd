package subscription_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/pgjet/pgjet/subscription"
)

// Run releases everything it started: after a recovery, a batch and a cancellation, no
// goroutine of the subscription is left. Not parallel: goleak sees the whole process.
func TestRunLeaksNoGoroutines(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // after the server and client are gone
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	done := make(chan struct{}, 64)
	s := newSub(t, e.js, subscription.Config{Group: "leak", BatchSize: 4, BatchWait: 20 * time.Millisecond, Registerer: reg,
		BatchHandler: func(_ context.Context, evs []subscription.Event) error {
			for range evs {
				done <- struct{}{}
			}
			return nil
		}})
	stop := run(t, s)
	e.publish(t, "order-1", placed)
	<-done
	if err := e.js.DeleteConsumer(t.Context(), subscription.DefaultStream, "leak"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a recovery", func() bool { return metric(t, reg, "pgjet_subscription_recoveries_total", nil) >= 1 })
	e.publish(t, "order-1", placed)
	<-done
	stop()
	e.nc.Close()
	e.srv.Shutdown()
}

// An ordered member releases everything it started too: partition workers, leases and
// the bucket listings of its rounds. Not parallel, as above.
func TestOrderedRunLeaksNoGoroutines(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	e := newEnv(t)
	done := make(chan struct{}, 64)
	s := newSub(t, e.js, subscription.Config{Group: "leak-ordered", Ordered: true, Partitions: 3, PartitionLease: time.Second,
		Handler: func(context.Context, subscription.Event) error {
			done <- struct{}{}
			return nil
		}})
	stop := run(t, s)
	e.publish(t, "order-1", placed)
	e.publish(t, "order-2", placed)
	<-done
	<-done
	stop()
	e.nc.Close()
	e.srv.Shutdown()
}
