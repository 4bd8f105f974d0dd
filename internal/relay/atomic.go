package relay

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
	"go.uber.org/zap"
)

// atomicBatchSize is the most events in one atomic batch publish: nats-server's default
// limit. A server configured with a lower one (max_batch_size) refuses larger batches,
// naming its limit; the relay keeps to it from then on (Relay.atomicSize).
const atomicBatchSize = 1000

// nats-server's error codes for an atomic batch over its limit, and for a stream that does
// not take atomic batches or batch (fast-ingest) publishes.
const (
	errCodeAtomicTooLarge = 10199
	errCodeAtomicDisabled = 10174
	errCodeBatchDisabled  = 10205
)

// publishAtomic sends batch, in position order, as atomic batch publishes of up to
// atomicBatchSize events, one after the other (JetStream 2.12+, a stream with
// AllowAtomicPublish), and returns the positions stored.
//
// Order holds because the server stores an atomic batch whole or not at all: it checks
// every message before it stores any, and a standalone server whose disk write fails
// midway stops there, so what it stored is a prefix; and the next batch is sent only after
// this one was acknowledged. Where the server syncs every message to disk (sync_interval:
// always) it syncs once per atomic batch, which makes this several times faster than
// per-stream publishes; with the lazy default it is slower (BENCHMARKS.md).
//
// A batch the server does not take is published again per stream (see publish), which
// tells which stream failed, holds back only that one, and skips what was stored: a message
// the server refuses fails the whole atomic batch, and so does one whose Nats-Msg-Id it
// stored before (the rows of a relay that stopped before deleting them, or of a hand-over);
// an unanswered batch (the server unreachable, a disk write that failed midway) may be
// stored in part.
func (r *Relay) publishAtomic(ctx context.Context, batch []row, readAt time.Time) ([]int64, []failure, error) {
	done := make([]int64, 0, len(batch))
	size := int(r.atomicSize.Load())
	for from := 0; from < len(batch); from += size {
		if err := ctx.Err(); err != nil {
			return done, nil, err
		}
		if age := time.Since(readAt); age > r.cfg.Stream.DuplicateWindow/2 {
			return done, nil, fmt.Errorf("batch read %s ago is stale; %d events left for a fresh read", age.Round(time.Millisecond), len(batch)-from)
		}
		part := batch[from:min(from+size, len(batch))]
		msgs := make([]*nats.Msg, len(part))
		for i := range part {
			msgs[i] = r.message(&part[i])
			msgs[i].Header.Set(jetstream.ExpectedStreamHeader, r.cfg.Stream.Name)
		}
		start := time.Now()
		// Cancelling ctx does not abandon the batch: it may be stored, and its rows must be
		// deleted if it is. The timeout bounds the wait.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.PublishTimeout)
		_, err := jetstreamext.PublishMsgBatch(pctx, r.js, msgs,
			jetstreamext.BatchFlowControl{AckFirst: false, AckTimeout: r.cfg.PublishTimeout})
		cancel()
		r.metrics.latency.Observe(time.Since(start).Seconds())
		if limit, ok := tooLarge(err); ok && limit < size {
			r.atomicSize.Store(int32(limit))
			r.log.Warn("the server takes smaller atomic batches; keeping to its limit", zap.Int("max_batch_size", limit))
		}
		if isAPIError(err, errCodeAtomicDisabled) && r.atomic.CompareAndSwap(true, false) {
			// Turned off on the stream since the relay started (nats stream edit): every
			// batch would be refused. The relay's next start allows them again.
			r.log.Warn("the JetStream stream no longer takes atomic batch publishes; publishing one event per stream at a time until the relay restarts", zap.Error(err))
		}
		if err != nil {
			r.metrics.atomic.WithLabelValues("per_stream").Inc()
			r.log.Info("atomic batch publish not taken; publishing its events per stream",
				zap.Int("events", len(batch)-from), zap.String("first_event_id", part[0].eventID), zap.Error(err))
			more, failed, err := r.publish(ctx, batch[from:], readAt)
			return append(done, more...), failed, err
		}
		for i := range part {
			done = append(done, part[i].position)
		}
		r.metrics.atomic.WithLabelValues("stored").Inc()
		r.metrics.published.WithLabelValues("ok").Add(float64(len(part)))
		r.metrics.lastPublish.SetToCurrentTime()
	}
	return done, nil, nil
}

// isAPIError reports whether err is a JetStream API error with the error code code.
func isAPIError(err error, code jetstream.ErrorCode) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == code
}

// tooLarge returns the server's limit when err refuses an atomic batch as too large.
func tooLarge(err error) (int, bool) {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != errCodeAtomicTooLarge {
		return 0, false
	}
	_, after, _ := strings.Cut(apiErr.Description, "too large: ")
	limit, convErr := strconv.Atoi(strings.TrimSpace(after))
	return limit, convErr == nil && limit > 0
}
