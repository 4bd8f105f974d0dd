package relay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Extension headers beside the CloudEvents ones.
const (
	HeaderStreamVersion = "ce-streamversion" // the event's version in its stream
	HeaderPosition      = "ce-position"      // the event's global position in Postgres
	HeaderSchemaID      = "ce-schemaid"      // registry id, also in the payload's first bytes
	HeaderTraceparent   = "traceparent"      // W3C trace context of the append
)

type inflight struct {
	row   *row
	fut   jetstream.PubAckFuture
	start time.Time
}

// failure is a publish that failed: the first event of its stream that this round did not
// store, and why.
type failure struct {
	row *row
	err error
}

// publish sends batch to JetStream and returns the positions acknowledged, and the
// publishes that failed. Different streams are pipelined; within a stream, an event is sent
// only after the previous one was acknowledged, and a failure stops that stream for this
// batch, so each stream fails at most once. The error reports a batch that could not be
// published as a whole (stale, or ctx cancelled).
//
// A batch older than half the duplicate window (read at readAt) stops being published: this
// relay may have been cut off meanwhile, and another relay may have published and deleted
// the same rows long enough ago that JetStream would no longer drop them as duplicates. The
// rows left are read again, fresh, by their owner.
func (r *Relay) publish(ctx context.Context, batch []row, readAt time.Time) ([]int64, []failure, error) {
	// Queue each stream's rows in position (= version) order; streams in order of first row.
	queues := map[string][]*row{}
	var ready []string
	for i := range batch {
		s := batch[i].stream
		if _, ok := queues[s]; !ok {
			ready = append(ready, s)
		}
		queues[s] = append(queues[s], &batch[i])
	}
	var (
		pending []inflight
		done    = make([]int64, 0, len(batch))
		failed  []failure
		stale   error
	)
	for len(ready) > 0 || len(pending) > 0 {
		for len(ready) > 0 && len(pending) < r.cfg.Window && ctx.Err() == nil {
			if age := time.Since(readAt); age > r.cfg.Stream.DuplicateWindow/2 {
				stale = fmt.Errorf("batch read %s ago is stale; %d streams left for a fresh read", age.Round(time.Millisecond), len(ready))
				ready = nil
				break
			}
			s := ready[0]
			ready = ready[1:]
			x := queues[s][0]
			queues[s] = queues[s][1:]
			fut, err := r.js.PublishMsgAsync(r.message(x), jetstream.WithExpectStream(r.cfg.Stream.Name))
			if err != nil {
				failed = append(failed, failure{row: x, err: err})
				r.metrics.published.WithLabelValues("error").Inc()
				continue // stream s stops for this batch
			}
			pending = append(pending, inflight{row: x, fut: fut, start: time.Now()})
		}
		if len(pending) == 0 {
			break
		}
		// Acks arrive in publish order on one connection, so waiting on the oldest first
		// costs little and keeps the bookkeeping a queue.
		p := pending[0]
		pending = pending[1:]
		ack, err := wait(ctx, p.fut, r.cfg.PublishTimeout)
		r.metrics.latency.Observe(time.Since(p.start).Seconds())
		if err != nil {
			failed = append(failed, failure{row: p.row, err: err})
			r.metrics.published.WithLabelValues("error").Inc()
			continue
		}
		if ack.Duplicate {
			r.metrics.published.WithLabelValues("duplicate").Inc()
		} else {
			r.metrics.published.WithLabelValues("ok").Inc()
		}
		done = append(done, p.row.position)
		if len(queues[p.row.stream]) > 0 && ctx.Err() == nil {
			ready = append(ready, p.row.stream)
		}
	}
	if len(done) > 0 {
		r.metrics.lastPublish.SetToCurrentTime()
	}
	return done, failed, cmp.Or(stale, ctx.Err())
}

// wait waits for one acknowledgement. Cancelling ctx does not abandon it early: the message
// may be stored, and the row must be deleted if it is; the timeout bounds the wait.
func wait(ctx context.Context, fut jetstream.PubAckFuture, timeout time.Duration) (*jetstream.PubAck, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case ack := <-fut.Ok():
		return ack, nil
	case err := <-fut.Err():
		return nil, err
	case <-t.C:
		return nil, errors.New("timed out waiting for the JetStream acknowledgement")
	}
}

// message builds the NATS message of a row; see Message.
func (r *Relay) message(x *row) *nats.Msg {
	e := Event{
		Position: x.position, ID: x.eventID, Stream: x.stream, Version: x.version, Type: x.typ,
		SchemaID: x.schemaID, Data: x.data, CreatedAt: x.createdAt,
	}
	if x.traceparent != nil {
		e.Traceparent = *x.traceparent
	}
	return Message(e, MessageOptions{Subjects: r.cfg.Stream.Subjects, Source: r.cfg.Source, RegistryURL: r.cfg.RegistryURL})
}
