package subscription

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/subject"
)

// History reads all events from Postgres, the source of truth, in the order of
// pgjet.Store.ReadAll, which implements it. Subscriptions starting [FromPosition] read it
// for the history JetStream no longer holds.
type History interface {
	ReadAll(ctx context.Context, after pgjet.AllPosition, limit int) ([]pgjet.RecordedEvent, error)
}

// Postgres runs one-row queries on the database of History (a *pgxpool.Pool does). A
// subscription starting from a Postgres position uses it to learn the transaction horizon.
type Postgres interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// FromPosition starts with the first event after pos in Postgres (the zero AllPosition is
// the very beginning), read through Config.History, then goes on with live JetStream
// with no gap and no duplicate at the seam. It applies when the consumer does not exist
// yet; a group that already has one resumes where it left off. Meant for one subscriber:
// members of a group starting together would each replay the history.
func FromPosition(pos pgjet.AllPosition) Start { return Start{kind: startPosition, pos: pos} }

// replayBatch is how many events one ReadAll returns during a replay.
const replayBatch = 500

// replay delivers the history from Postgres and returns the JetStream sequence live
// delivery starts at, having filled s.replayed.
//
// The seam. L is the events stream's last sequence, noted first; X is then the first
// transaction id not yet assigned (pg_snapshot_xmax). Every event stored in JetStream up
// to L was committed before L was noted, so by a transaction with id below X. ReadAll
// returns only events of transactions below the horizon (the oldest running transaction),
// so the replay reads on until a read is empty AND the horizon, taken just before that
// read, had passed X: then every transaction below X had ended when the read began, the
// read saw all their events, and every event JetStream holds up to L has been delivered
// from Postgres; live delivery starts at L+1. (The horizon taken after an empty read would
// not do: a transaction below X that commits between the two lets the horizon pass X
// while a younger one's event, published before L, was still behind it at the read.) Events after L that the replay delivered too (committed before the end
// of the replay, published after L was noted) are skipped by (stream, version): a
// stream's events reach JetStream in version order, so any version at or below the last
// one replayed for its stream is a repeat.
//
// Errors that may pass (a Postgres connection lost, the registry out of reach) are retried
// with backoff where they happen, so the replay goes on from where it was.
func (s *Subscriber) replay(ctx, hctx context.Context) (uint64, error) {
	var last, xmax uint64
	err := s.untilPassed(ctx, "reading the seam", func() error {
		stream, err := s.js.Stream(ctx, s.cfg.Stream)
		if err != nil {
			return fmt.Errorf("reading stream %q: %w", s.cfg.Stream, err)
		}
		last = stream.CachedInfo().State.LastSeq
		xmax, err = s.snapshotBound(ctx, "pg_snapshot_xmax")
		return err
	})
	if err != nil {
		return 0, err
	}
	scheme, err := subject.New(s.cfg.Prefix)
	if err != nil {
		return 0, err
	}
	s.log.Info("replaying history from Postgres", zap.Uint64("until_jetstream_sequence", last), zap.Uint64("xmax", xmax))
	cursor := s.cfg.Start.pos
	replayed := 0
	for {
		var (
			horizon uint64
			evs     []pgjet.RecordedEvent
		)
		err := s.untilPassed(ctx, "reading history", func() error {
			var err error
			if horizon, err = s.snapshotBound(ctx, "pg_snapshot_xmin"); err != nil {
				return err
			}
			if evs, err = s.cfg.History.ReadAll(ctx, cursor, replayBatch); err != nil {
				return fmt.Errorf("reading history: %w", err)
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		if len(evs) == 0 {
			if horizon >= xmax {
				break
			}
			if !sleep(ctx, 20*time.Millisecond) { // a transaction older than L is still open
				return 0, ctx.Err()
			}
			continue
		}
		cursor = evs[len(evs)-1].Next()
		batch := make([]Event, 0, s.cfg.BatchSize)
		for _, r := range evs {
			s.replayed[r.StreamID] = max(s.replayed[r.StreamID], r.Version)
			ev, ok, err := s.historic(ctx, scheme, r)
			if err != nil {
				return 0, err
			}
			if !ok {
				s.metrics.events.WithLabelValues("skipped").Inc()
				continue
			}
			batch = append(batch, ev)
			if len(batch) == s.cfg.BatchSize {
				if err := s.deliverHistoric(ctx, hctx, batch); err != nil {
					return 0, err
				}
				replayed += len(batch)
				batch = batch[:0]
			}
		}
		if len(batch) > 0 {
			if err := s.deliverHistoric(ctx, hctx, batch); err != nil {
				return 0, err
			}
			replayed += len(batch)
		}
	}
	s.log.Info("history replayed; going live", zap.Int("events", replayed), zap.Uint64("from_jetstream_sequence", last+1))
	return last + 1, nil
}

// historic turns a stored event into an Event, reporting false for one the filters or the
// predicate reject.
func (s *Subscriber) historic(ctx context.Context, scheme subject.Scheme, r pgjet.RecordedEvent) (Event, bool, error) {
	subj, err := scheme.For(r.StreamID, r.Type)
	if err != nil {
		return Event{}, false, fmt.Errorf("event %s: %w", r.ID, err)
	}
	if len(s.filters) > 0 {
		match := false
		for _, f := range s.filters {
			if covers(f, subj) {
				match = true
				break
			}
		}
		if !match {
			return Event{}, false, nil
		}
	}
	ev := Event{
		ID: r.ID.String(), StreamID: r.StreamID, Version: r.Version, Type: r.Type, Position: r.Position,
		Time: r.CreatedAt, SchemaID: r.SchemaID, Traceparent: r.Metadata["traceparent"], Subject: subj,
		Delivered: 1, Raw: r.Data,
	}
	// A replayed event cannot be naked or dead-lettered: a decoding failure (the registry
	// out of reach) is retried with backoff, MaxDeliver times in all (for ever with -1);
	// one that does not pass (a corrupt event, a deleted schema) then ends Run.
	for attempt := uint64(1); s.cfg.Decoder != nil; attempt++ {
		if ev.Data, err = s.decode(ctx, ev); err == nil {
			break
		}
		s.metrics.events.WithLabelValues("failed").Inc()
		if s.cfg.MaxDeliver > 0 && attempt >= uint64(s.cfg.MaxDeliver) {
			return Event{}, false, fmt.Errorf("decoding replayed %s %s, %d attempts: %w", ev.Type, ev.ID, attempt, err)
		}
		delay := backoff(s.cfg.BackoffMin, s.cfg.BackoffMax, attempt)
		s.log.Warn("decoding a replayed event failed; retrying", zap.String("event_id", ev.ID), zap.String("type", ev.Type),
			zap.Duration("retry_in", delay), zap.Error(err))
		if !sleep(ctx, delay) {
			return Event{}, false, ctx.Err()
		}
	}
	want, err := s.wants(ev)
	if err != nil {
		// Cannot be naked or dead-lettered, and a predicate that panics on an event will
		// again: Run ends, saying which event.
		return Event{}, false, fmt.Errorf("replayed %s %s: %w", ev.Type, ev.ID, err)
	}
	return ev, want, nil
}

// deliverHistoric hands events to the handler until it succeeds: a replayed event cannot
// be naked or dead-lettered, so failures are retried with backoff.
func (s *Subscriber) deliverHistoric(ctx, hctx context.Context, events []Event) error {
	for attempt := uint64(1); ; attempt++ {
		start := time.Now()
		err := s.traced(hctx, events)
		s.metrics.handleSeconds.Observe(time.Since(start).Seconds())
		if err == nil {
			s.metrics.events.WithLabelValues("handled").Add(float64(len(events)))
			return nil
		}
		s.metrics.events.WithLabelValues("failed").Add(float64(len(events)))
		delay := backoff(s.cfg.BackoffMin, s.cfg.BackoffMax, attempt)
		s.log.Warn("handler failed on replayed events; retrying", zap.String("event_id", events[0].ID), zap.Duration("retry_in", delay), zap.Error(err))
		if ctx.Err() != nil || !sleep(ctx, delay) {
			return ctx.Err()
		}
	}
}

// untilPassed runs fn until it succeeds, ctx ends, or it fails with an error that will not
// pass by itself (see passing), retrying with backoff up to RetryMax.
func (s *Subscriber) untilPassed(ctx context.Context, what string, fn func() error) error {
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, s.cfg.RetryMax) {
		err := fn()
		if err == nil || ctx.Err() != nil || !passing(err) || s.js.Conn().IsClosed() {
			return err
		}
		s.log.Warn(what+" failed; retrying", zap.Duration("retry_in", delay), zap.Error(err))
		if !sleep(ctx, delay) {
			return ctx.Err()
		}
	}
}

// passing reports whether err may go away by itself: what transient accepts, and any
// error that is not an answer of a server (a lost connection, a timeout). Of the answers,
// only Postgres's classes of lost connections (08), resources (53), an operator's shutdown
// (57) and rolled-back transactions (40) pass; the rest (a missing table, a missing
// privilege, a JetStream API error) need someone to act.
func passing(err error) bool {
	if transient(err) {
		return true
	}
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) {
		switch pgErr.Code[:min(2, len(pgErr.Code))] {
		case "08", "53", "57", "40":
			return true
		}
		return false
	}
	var apiErr *jetstream.APIError
	return !errors.As(err, &apiErr)
}

// snapshotBound returns fn (pg_snapshot_xmin or pg_snapshot_xmax) of the current snapshot.
func (s *Subscriber) snapshotBound(ctx context.Context, fn string) (uint64, error) {
	var text string
	if err := s.cfg.Postgres.QueryRow(ctx, `SELECT `+fn+`(pg_current_snapshot())::text`).Scan(&text); err != nil {
		return 0, fmt.Errorf("reading the transaction horizon: %w", err)
	}
	return strconv.ParseUint(text, 10, 64)
}
