package relay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/synadia-io/orbit.go/jetstreamext"
	"go.uber.org/zap"
)

// publishOrdered sends batch, in position order, as one fast-ingest batch (JetStream 2.14+,
// a stream with AllowBatchPublish) and returns the positions stored. Every message is in
// flight at once, up to the window; the server acknowledges them in bulk.
//
// Order holds because the batch runs in "gap: fail" mode: the server stores a batch's
// messages in order and ends the batch at the first message it does not store (lost on the
// way, refused, or a gap seen at the next one). So what is stored is always a prefix of the
// batch; duplicates (Nats-Msg-Id seen before) are skipped as stored. The relay deletes the
// prefix it has seen acknowledged and reads the rest again, fresh: a stream's next event is
// never stored before the one it follows. The first event not stored is returned as the
// failure (at most one); the error reports a stale batch or a cancelled ctx.
//
// Used only with Config.BatchPublish, and no more once the stream refuses a batch publish
// as disabled (someone turned AllowBatchPublish off under a running relay). Known limits (nats-server 2.15.2, orbit.go
// jetstreamext 0.3.2): a message whose disk write fails on a standalone server does not end
// the batch and is acknowledged as stored; when acknowledgements stop coming for
// PublishTimeout (the server unreachable), the publisher's reply subscription is left
// behind until the connection closes; and a batch whose first message the server refuses
// waits PublishTimeout for that message's acknowledgement, which never comes (so a batch
// that retries a held-back stream is not published this way; see drain).
func (r *Relay) publishOrdered(ctx context.Context, batch []row, readAt time.Time) ([]int64, []failure, error) {
	start := time.Now()
	flow := uint16(min(r.cfg.Window, 100))
	var (
		mu       sync.Mutex
		asyncErr error // the server's own report of a gap or a refused message
	)
	fp, err := jetstreamext.NewFastPublisher(r.js,
		jetstreamext.FastPublishFlowControl{Flow: flow, MaxOutstandingAcks: uint16(max(2, r.cfg.Window/int(flow))), AckTimeout: r.cfg.PublishTimeout},
		jetstreamext.WithFastPublisherErrorHandler(func(err error) {
			mu.Lock()
			asyncErr = cmp.Or(asyncErr, err)
			mu.Unlock()
		}))
	if err != nil {
		return nil, nil, fmt.Errorf("starting a batch publish: %w", err)
	}
	var (
		stored  uint64 // a prefix of batch known to be stored
		sent    int
		sendErr error
		stale   error
	)
	for i := range batch {
		if ctx.Err() != nil {
			break
		}
		if age := time.Since(readAt); age > r.cfg.Stream.DuplicateWindow/2 {
			stale = fmt.Errorf("batch read %s ago is stale; %d events left for a fresh read", age.Round(time.Millisecond), len(batch)-i)
			break
		}
		ack, err := fp.AddMsg(r.message(&batch[i]))
		if err != nil {
			sendErr = err
			break
		}
		sent++
		stored = max(stored, ack.AckSequence)
	}
	if sent > 0 && !fp.IsClosed() {
		// Cancelling ctx does not abandon the batch: its messages may be stored, and their
		// rows must be deleted if they are. The timeout bounds the wait.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.PublishTimeout)
		back, err := fp.Close(cctx)
		cancel()
		if err != nil {
			sendErr = cmp.Or(sendErr, fmt.Errorf("committing the batch: %w", err))
		} else {
			stored = max(stored, back.BatchSize)
		}
	}
	stored = min(stored, uint64(sent))
	r.metrics.latency.Observe(time.Since(start).Seconds())
	done := make([]int64, stored)
	for i := range done {
		done[i] = batch[i].position
	}
	r.metrics.published.WithLabelValues("ok").Add(float64(stored))
	if stored > 0 {
		r.metrics.lastPublish.SetToCurrentTime()
	}
	if int(stored) < len(batch) && ctx.Err() == nil {
		if stale != nil && int(stored) == sent {
			return done, nil, stale // all that was sent is stored; the rest is read again
		}
		mu.Lock()
		if sendErr != nil && asyncErr != nil {
			sendErr = fmt.Errorf("%w (the server: %w)", sendErr, asyncErr)
		}
		sendErr = cmp.Or(sendErr, asyncErr)
		mu.Unlock()
		if isAPIError(sendErr, errCodeBatchDisabled) && r.ordered.CompareAndSwap(true, false) {
			// Turned off on the stream since the relay started (nats stream edit): every
			// batch would be refused, each after waiting PublishTimeout for its first
			// message. The relay's next start allows them again.
			r.log.Warn("the JetStream stream no longer takes batch publishes; publishing one event per stream at a time until the relay restarts", zap.Error(sendErr))
		}
		if sendErr == nil {
			sendErr = errors.New("the server stored only part of the batch")
		}
		r.metrics.published.WithLabelValues("error").Add(float64(len(batch) - int(stored)))
		x := &batch[stored]
		r.log.Warn("batch publish stopped; the rest waits for the next round",
			zap.Uint64("stored", stored), zap.Int("batch", len(batch)), zap.String("event_id", x.eventID), zap.Error(sendErr))
		return done, []failure{{row: x, err: sendErr}}, nil
	}
	return done, nil, ctx.Err()
}
