package verify

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgjet/pgjet/internal/relay"
	"github.com/pgjet/pgjet/internal/subject"
)

// Config configures Check and Repair.
type Config struct {
	// Pool is the Postgres pool holding pgjet's tables. Required.
	Pool *pgxpool.Pool
	// JetStream is the JetStream context holding the events stream. Required.
	JetStream jetstream.JetStream
	// Stream is the JetStream stream name. Default "PGJET_EVENTS".
	Stream string
	// Subjects is the relay's subject scheme, for repaired messages. Default prefix
	// "pgjet.events".
	Subjects subject.Scheme
	// Source is the CloudEvents source of repaired messages. Default "pgjet".
	Source string
	// RegistryURL is the schema registry's base URL, for ce-dataschema of repaired
	// messages. Default "http://localhost:8080".
	RegistryURL string
	// FromPosition checks only events at or after this global position, e.g. when the
	// stream's retention dropped older ones. Default 0: all events.
	FromPosition int64
	// PublishTimeout bounds each repair publish. Default 5s.
	PublishTimeout time.Duration
}

func (c *Config) setDefaults() {
	c.Stream = cmp.Or(c.Stream, "PGJET_EVENTS")
	c.Subjects.Prefix = cmp.Or(c.Subjects.Prefix, subject.DefaultPrefix)
	c.Source = cmp.Or(c.Source, "pgjet")
	c.RegistryURL = strings.TrimSuffix(cmp.Or(c.RegistryURL, "http://localhost:8080"), "/")
	c.PublishTimeout = cmp.Or(c.PublishTimeout, 5*time.Second)
}

func (c *Config) validate() error {
	switch {
	case c.Pool == nil:
		return errors.New("verify: Config.Pool is required")
	case c.JetStream == nil:
		return errors.New("verify: Config.JetStream is required")
	}
	return nil
}

// Event identifies an event in a report.
type Event struct {
	ID       string
	Stream   string
	Version  int64
	Position int64  // global position in Postgres; 0 when unknown
	Seq      uint64 // JetStream sequence; 0 when not in JetStream
}

// String names the event for reports: id, stream, version, and position and sequence when
// known.
func (e Event) String() string {
	s := fmt.Sprintf("%s %s v%d", e.ID, e.Stream, e.Version)
	if e.Position > 0 {
		s += " position " + strconv.FormatInt(e.Position, 10)
	}
	if e.Seq > 0 {
		s += " seq " + strconv.FormatUint(e.Seq, 10)
	}
	return s
}

// Report is the outcome of Check.
type Report struct {
	// Postgres counts the committed events checked, Pending those of them still in the
	// outbox (not yet due in JetStream), JetStream the messages read.
	Postgres, Pending, JetStream int
	// Missing: committed, no longer in the outbox (so acknowledged by JetStream once), and
	// not in the stream.
	Missing []Event
	// Duplicates: messages repeating an event id, or a (stream, version), seen earlier in
	// the stream.
	Duplicates []Event
	// OutOfOrder: messages whose version is below one already seen for the same stream.
	OutOfOrder []Event
	// Unexpected: messages without a committed event (a rolled-back transaction, or a
	// message that is not pgjet's).
	Unexpected []Event
}

// OK reports whether the check found nothing wrong.
func (r *Report) OK() bool {
	return len(r.Missing)+len(r.Duplicates)+len(r.OutOfOrder)+len(r.Unexpected) == 0
}

// String summarises the report in one line.
func (r *Report) String() string {
	return fmt.Sprintf("postgres=%d pending=%d jetstream=%d missing=%d duplicates=%d out_of_order=%d unexpected=%d",
		r.Postgres, r.Pending, r.JetStream, len(r.Missing), len(r.Duplicates), len(r.OutOfOrder), len(r.Unexpected))
}

// Check compares the stream with Postgres. It reads a consistent snapshot of Postgres
// first and the stream afterwards, so events committed during the check are neither
// missing nor unexpected.
func Check(ctx context.Context, cfg Config) (*Report, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	events, pending, err := readPostgres(ctx, cfg)
	if err != nil {
		return nil, err
	}
	msgs, err := readStream(ctx, cfg)
	if err != nil {
		return nil, err
	}
	rep := &Report{Postgres: len(events), Pending: len(pending), JetStream: len(msgs)}
	byID := make(map[string]Event, len(events))
	for _, e := range events {
		byID[e.ID] = e
	}
	seenID := map[string]bool{}
	type key struct {
		stream  string
		version int64
	}
	seenVersion := map[key]bool{}
	maxVersion := map[string]int64{}
	var unknown []Event
	for _, m := range msgs {
		if e, ok := byID[m.ID]; ok {
			m.Position = e.Position
		}
		switch {
		case seenID[m.ID] || seenVersion[key{m.Stream, m.Version}]:
			rep.Duplicates = append(rep.Duplicates, m)
			continue
		case m.Version < maxVersion[m.Stream]:
			rep.OutOfOrder = append(rep.OutOfOrder, m)
		}
		seenID[m.ID], seenVersion[key{m.Stream, m.Version}] = true, true
		maxVersion[m.Stream] = max(maxVersion[m.Stream], m.Version)
		if _, ok := byID[m.ID]; !ok && m.Position >= cfg.FromPosition {
			unknown = append(unknown, m)
		}
	}
	for _, e := range events {
		if !seenID[e.ID] && !pending[e.Position] {
			rep.Missing = append(rep.Missing, e)
		}
	}
	// Messages of events committed after the snapshot are expected; the rest are not.
	if rep.Unexpected, err = notCommitted(ctx, cfg.Pool, unknown); err != nil {
		return nil, err
	}
	return rep, nil
}

// readPostgres returns the events from cfg.FromPosition in position order and the
// positions still in the outbox, from one snapshot.
func readPostgres(ctx context.Context, cfg Config) ([]Event, map[int64]bool, error) {
	var (
		events  []Event
		pending = map[int64]bool{}
	)
	err := pgx.BeginTxFunc(ctx, cfg.Pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT event_id::text, stream_id, version, position FROM pgjet.events
			WHERE position >= $1 ORDER BY position`, cfg.FromPosition)
		if err != nil {
			return err
		}
		events, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Event, error) {
			var e Event
			return e, r.Scan(&e.ID, &e.Stream, &e.Version, &e.Position)
		})
		if err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT position FROM pgjet.outbox WHERE position >= $1`, cfg.FromPosition)
		if err != nil {
			return err
		}
		positions, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		for _, p := range positions {
			pending[p] = true
		}
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("verify: reading Postgres: %w", err)
	}
	return events, pending, nil
}

// readStream reads the headers of every message up to the stream's last sequence at the
// start, in sequence order.
func readStream(ctx context.Context, cfg Config) ([]Event, error) {
	s, err := cfg.JetStream.Stream(ctx, cfg.Stream)
	if err != nil {
		return nil, fmt.Errorf("verify: stream %q: %w", cfg.Stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("verify: stream %q: %w", cfg.Stream, err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		return nil, nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{HeadersOnly: true, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return nil, fmt.Errorf("verify: reading stream %q: %w", cfg.Stream, err)
	}
	var out []Event
	for {
		batch, err := c.FetchNoWait(1000)
		if err != nil {
			return nil, fmt.Errorf("verify: reading stream %q: %w", cfg.Stream, err)
		}
		n, done := 0, false
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("verify: reading stream %q: %w", cfg.Stream, err)
			}
			if md.Sequence.Stream > last {
				done = true
				break
			}
			v, _ := strconv.ParseInt(m.Headers().Get(relay.HeaderStreamVersion), 10, 64)
			p, _ := strconv.ParseInt(m.Headers().Get(relay.HeaderPosition), 10, 64)
			out = append(out, Event{
				ID: cmp.Or(m.Headers().Get("ce-id"), m.Headers().Get(jetstream.MsgIDHeader)), Stream: m.Headers().Get("ce-subject"),
				Version: v, Position: p, Seq: md.Sequence.Stream,
			})
			if md.Sequence.Stream == last || md.NumPending == 0 {
				done = true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, fmt.Errorf("verify: reading stream %q: %w", cfg.Stream, err)
		}
		if done || n == 0 {
			return out, nil
		}
	}
}

// notCommitted returns the messages among msgs whose event id is not in pgjet.events.
func notCommitted(ctx context.Context, pool *pgxpool.Pool, msgs []Event) ([]Event, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	// Ids that are not UUIDs were never pgjet's: they stay "not committed".
	ids := make([]uuid.UUID, 0, len(msgs))
	for _, m := range msgs {
		if id, err := uuid.Parse(m.ID); err == nil {
			ids = append(ids, id)
		}
	}
	rows, err := pool.Query(ctx, `SELECT event_id FROM pgjet.events WHERE event_id = ANY($1::uuid[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("verify: reading Postgres: %w", err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, fmt.Errorf("verify: reading Postgres: %w", err)
	}
	committed := make(map[uuid.UUID]bool, len(found))
	for _, id := range found {
		committed[id] = true
	}
	var out []Event
	for _, m := range msgs {
		if id, err := uuid.Parse(m.ID); err != nil || !committed[id] {
			out = append(out, m)
		}
	}
	return out, nil
}
