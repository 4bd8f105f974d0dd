package relay

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
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

// publish sends batch to JetStream and returns the positions acknowledged. Different
// streams are pipelined; within a stream, an event is sent only after the previous one was
// acknowledged, and a failure stops that stream for this batch. The returned error
// summarises failures; the acknowledged rows are still returned.
func (r *Relay) publish(ctx context.Context, batch []row) ([]int64, error) {
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
		pending  []inflight
		done     = make([]int64, 0, len(batch))
		failures int
		firstErr error
	)
	for len(ready) > 0 || len(pending) > 0 {
		for len(ready) > 0 && len(pending) < r.cfg.Window && ctx.Err() == nil {
			s := ready[0]
			ready = ready[1:]
			x := queues[s][0]
			queues[s] = queues[s][1:]
			fut, err := r.js.PublishMsgAsync(r.message(x), jetstream.WithExpectStream(r.cfg.Stream.Name))
			if err != nil {
				failures++
				firstErr = cmpErr(firstErr, fmt.Errorf("publishing %s (%s v%d): %w", x.eventID, x.stream, x.version, err))
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
			failures++
			firstErr = cmpErr(firstErr, fmt.Errorf("publishing %s (%s v%d): %w", p.row.eventID, p.row.stream, p.row.version, err))
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
	if failures > 0 {
		r.log.Warn("publishes failed; their streams wait for the next round", zap.Int("failed", failures), zap.Error(firstErr))
		return done, fmt.Errorf("%d publishes failed, first: %w", failures, firstErr)
	}
	return done, ctx.Err()
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
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

// message builds the NATS message of an event per the NATS contract: Confluent wire-format
// payload, Nats-Msg-Id, CloudEvents binary-mode headers and pgjet's extensions.
func (r *Relay) message(x *row) *nats.Msg {
	subj, err := r.cfg.Stream.Subjects.For(x.stream, x.typ)
	if err != nil {
		// Stream ids and types are validated before they are stored; a failure here means
		// a row written by something else. Publish it where it cannot be mistaken.
		subj = r.cfg.Stream.Subjects.Prefix + "._invalid"
	}
	h := nats.Header{}
	h.Set(jetstream.MsgIDHeader, x.eventID)
	h.Set("ce-specversion", "1.0")
	h.Set("ce-id", x.eventID)
	h.Set("ce-source", r.cfg.Source)
	h.Set("ce-type", x.typ)
	h.Set("ce-subject", x.stream)
	h.Set("ce-time", x.createdAt.UTC().Format(time.RFC3339Nano))
	h.Set("ce-datacontenttype", "application/avro")
	h.Set("ce-dataschema", r.cfg.RegistryURL+"/schemas/ids/"+strconv.Itoa(x.schemaID))
	h.Set(HeaderSchemaID, strconv.Itoa(x.schemaID))
	h.Set(HeaderStreamVersion, strconv.FormatInt(x.version, 10))
	h.Set(HeaderPosition, strconv.FormatInt(x.position, 10))
	if x.traceparent != nil {
		h.Set(HeaderTraceparent, *x.traceparent)
	}
	return &nats.Msg{Subject: subj, Header: h, Data: x.data}
}
