package pgjet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// CommandNamespace is the UUIDv5 namespace of the event ids derived from command ids (see
// CommandEventID). It is uuid.NewSHA1(uuid.NameSpaceURL, "https://github.com/pgjet/pgjet/command").
var CommandNamespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/pgjet/pgjet/command"))

// CommandEventID returns the id of the index-th event (from 0) appended by the command
// commandID: the UUIDv5 in CommandNamespace of commandID + "/" + index, e.g. of
// "checkout-42/0". Any language can derive the same ids.
func CommandEventID(commandID string, index int) uuid.UUID {
	return uuid.NewSHA1(CommandNamespace, []byte(commandID+"/"+strconv.Itoa(index)))
}

// UpdateOptions tunes Store.Update and Aggregate.Update. The zero value is ready to use.
type UpdateOptions struct {
	// CommandID makes the update an idempotent command. The events decide returns get the
	// ids CommandEventID(CommandID, i), so decide must leave their IDs zero; before each attempt the store looks for the
	// command's first event, and when it is stored already (the command was applied, by
	// this call's earlier attempt, a concurrent call or an earlier one) the update returns
	// the original result with Duplicate set, without calling decide. Using one command id
	// on two streams fails with ErrEventIDReused. Default "": no idempotency, every call
	// decides and appends anew.
	CommandID string
	// MaxAttempts bounds how often the update reads, decides and appends while its appends
	// conflict with other writers; 1 means no retry. Default 5.
	MaxAttempts int
	// MinBackoff is the wait before the first retry; each further retry doubles it, up to
	// MaxBackoff. Each wait is jittered to between half and all of it, so that writers of a
	// hot stream fall out of step. Default 2ms.
	MinBackoff time.Duration
	// MaxBackoff caps the wait between attempts. Default 250ms.
	MaxBackoff time.Duration
}

func (o UpdateOptions) withDefaults() (UpdateOptions, error) {
	switch {
	case o.MaxAttempts < 0:
		return o, fmt.Errorf("%w: UpdateOptions.MaxAttempts must not be negative", ErrInvalidAppend)
	case o.MinBackoff < 0 || o.MaxBackoff < 0:
		return o, fmt.Errorf("%w: UpdateOptions.MinBackoff and MaxBackoff must not be negative", ErrInvalidAppend)
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 5
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = 2 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 250 * time.Millisecond
	}
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
	return o, nil
}

// backoff is the jittered wait before retry n (from 1).
func (o UpdateOptions) backoff(n int) time.Duration {
	d := o.MinBackoff
	for i := 1; i < n && d < o.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, o.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

// Update runs a command against a stream with optimistic concurrency, and retries it when
// another writer got there first: it reads the stream's events, calls decide with them,
// and appends what decide returns expecting the version it read. On a conflict it waits
// (see UpdateOptions), reads again, decides again and appends again, at most
// opts.MaxAttempts times; when every attempt conflicted it returns the last
// *WrongExpectedVersionError, wrapped. No decision is ever appended on top of events it
// did not see, so concurrent updates never lose one another's changes.
//
// decide sees the whole history, version 1 first (empty for a stream without events), and
// may run several times: it must not have side effects beyond its result. An error from
// decide ends the update with that error and nothing appended. When decide returns no
// events, nothing is appended and the result holds only StreamID and LastVersion (the
// version decided on).
//
// With opts.CommandID set, the update is idempotent: see UpdateOptions.CommandID. For
// long streams, fold them into state with an Aggregate and use Aggregate.Update, which
// reads from a snapshot.
func (s *Store) Update(ctx context.Context, streamID string, opts UpdateOptions, decide func(ctx context.Context, history []RecordedEvent) ([]EventData, error)) (AppendResult, error) {
	return s.update(ctx, streamID, opts, func(ctx context.Context) ([]EventData, int64, error) {
		var history []RecordedEvent
		err := s.eachStreamEvent(ctx, streamID, 1, func(e RecordedEvent) error {
			history = append(history, e)
			return nil
		})
		if err != nil {
			return nil, 0, err
		}
		events, err := decide(ctx, history)
		return events, int64(len(history)), err
	})
}

// update is the retry loop of Update and Aggregate.Update. attempt reads, decides and
// returns the events to append and the version they were decided on.
func (s *Store) update(ctx context.Context, streamID string, opts UpdateOptions, attempt func(ctx context.Context) ([]EventData, int64, error)) (AppendResult, error) {
	if err := ValidateStreamID(streamID); err != nil {
		return AppendResult{}, err
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return AppendResult{}, err
	}
	for n := 1; ; n++ {
		if opts.CommandID != "" {
			res, applied, err := s.commandResult(ctx, streamID, opts.CommandID)
			if err != nil || applied {
				return res, err
			}
		}
		events, version, err := attempt(ctx)
		if err != nil {
			return AppendResult{}, err
		}
		if len(events) == 0 {
			return AppendResult{StreamID: streamID, LastVersion: version}, nil
		}
		if opts.CommandID != "" {
			events = slices.Clone(events)
			for i := range events {
				id := CommandEventID(opts.CommandID, i)
				if events[i].ID != uuid.Nil && events[i].ID != id {
					return AppendResult{}, fmt.Errorf("%w: events[%d]: with UpdateOptions.CommandID, decide must leave event ids zero", ErrInvalidAppend, i)
				}
				events[i].ID = id
			}
		}
		res, err := s.Append(ctx, streamID, Exact(version), events...)
		switch {
		case err == nil:
			return res, nil
		case opts.CommandID != "" && errors.Is(err, ErrEventIDReused):
			// A concurrent run of the same command stored its events first, decided on
			// other data: its result is the command's result.
			if res, applied, cerr := s.commandResult(ctx, streamID, opts.CommandID); cerr != nil || applied {
				return res, cerr
			}
			return AppendResult{}, err
		case !errors.Is(err, ErrWrongExpectedVersion):
			return AppendResult{}, err
		case n >= opts.MaxAttempts:
			s.aggs.exhausted.Inc()
			return AppendResult{}, fmt.Errorf("pgjet: updating stream %q: all %d attempts conflicted with other writers: %w", streamID, n, err)
		}
		s.aggs.retries.Inc()
		t := time.NewTimer(opts.backoff(n))
		select {
		case <-ctx.Done():
			t.Stop()
			return AppendResult{}, fmt.Errorf("pgjet: updating stream %q: %w (after a conflict: %w)", streamID, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// commandResult looks for the events of a command. applied is true when its first event is
// stored in streamID; res is then the original append's result, with Duplicate set.
func (s *Store) commandResult(ctx context.Context, streamID, commandID string) (res AppendResult, applied bool, err error) {
	first := CommandEventID(commandID, 0)
	var (
		stream  string
		version int64
	)
	err = s.pool.QueryRow(ctx, `SELECT stream_id, version FROM pgjet.events WHERE event_id = $1`, first).Scan(&stream, &version)
	if errors.Is(err, pgx.ErrNoRows) {
		return AppendResult{}, false, nil
	}
	if err != nil {
		return AppendResult{}, false, fmt.Errorf("looking up command %q: %w", commandID, translate(err))
	}
	if stream != streamID {
		return AppendResult{}, false, fmt.Errorf("%w: command %q was applied to stream %q, not %q", ErrEventIDReused, commandID, stream, streamID)
	}
	rows, err := s.pool.Query(ctx, `SELECT event_id, version, position FROM pgjet.events
		WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3`, streamID, version, s.cfg.MaxEventsPerAppend)
	if err != nil {
		return AppendResult{}, false, fmt.Errorf("looking up command %q: %w", commandID, translate(err))
	}
	defer rows.Close()
	res = AppendResult{StreamID: streamID, FirstVersion: version, Duplicate: true}
	for rows.Next() {
		var (
			id  uuid.UUID
			v   int64
			pos int64
		)
		if err := rows.Scan(&id, &v, &pos); err != nil {
			return AppendResult{}, false, fmt.Errorf("looking up command %q: %w", commandID, translate(err))
		}
		if id != CommandEventID(commandID, len(res.EventIDs)) {
			break
		}
		res.EventIDs = append(res.EventIDs, id)
		res.Positions = append(res.Positions, pos)
		res.LastVersion = v
	}
	if err := rows.Err(); err != nil {
		return AppendResult{}, false, fmt.Errorf("looking up command %q: %w", commandID, translate(err))
	}
	return res, true, nil
}

// aggMetrics are the metrics of Update and of aggregate loads.
type aggMetrics struct {
	retries   prometheus.Counter
	exhausted prometheus.Counter
	ignored   *prometheus.CounterVec
	writes    *prometheus.CounterVec
	replayed  prometheus.Histogram
}

func newAggMetrics(reg prometheus.Registerer) (*aggMetrics, error) {
	m := &aggMetrics{
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgjet_update_retries_total",
			Help: "Update attempts repeated because the previous one conflicted with another writer.",
		}),
		exhausted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgjet_update_exhausted_total",
			Help: "Updates that gave up because every attempt conflicted.",
		}),
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgjet_snapshot_ignored_total",
			Help: "Snapshots found unusable and ignored by a load, by reason: schema (another SchemaVersion), corrupt (does not decode) or stale (does not match the stream).",
		}, []string{"reason"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgjet_snapshot_writes_total",
			Help: "Snapshot writes by result: ok, error, or lossy (not written: the snapshot does not read back as the state it was taken of).",
		}, []string{"result"}),
		replayed: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pgjet_aggregate_load_events",
			Help:    "Events an aggregate load applied after its snapshot (or from the stream's start).",
			Buckets: []float64{0, 1, 10, 100, 1000, 10_000, 100_000},
		}),
	}
	// Every label value is there from the start, at 0, so rates work before the first one.
	for _, reason := range []string{snapshotSchema, snapshotCorrupt, snapshotStale} {
		m.ignored.WithLabelValues(reason)
	}
	for _, result := range []string{"ok", "error", snapshotLossy} {
		m.writes.WithLabelValues(result)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.retries, m.exhausted, m.ignored, m.writes, m.replayed} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
