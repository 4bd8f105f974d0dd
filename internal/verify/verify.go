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
	// Subjects is the relay's subject scheme: messages outside it are not checked, and
	// repaired messages go to its subjects. Default prefix "pgjet.events".
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
	// Pending: the event was still in the outbox when Check read Postgres.
	Pending bool
	// After is, for an event stored (or, when Pending, still to be stored) behind a later
	// version of its stream, the highest such version; 0 otherwise.
	After int64
}

// String names the event for reports: id, stream, version, and what else is known.
func (e Event) String() string {
	s := fmt.Sprintf("%s %s v%d", e.ID, e.Stream, e.Version)
	if e.Position > 0 {
		s += " position " + strconv.FormatInt(e.Position, 10)
	}
	if e.Seq > 0 {
		s += " seq " + strconv.FormatUint(e.Seq, 10)
	}
	if e.Pending {
		s += ", still in the outbox"
	}
	if e.After > 0 {
		s += ", behind v" + strconv.FormatInt(e.After, 10)
	}
	return s
}

// Report is the outcome of Check.
type Report struct {
	// Postgres counts the committed events checked, Pending those of them still in the
	// outbox (not yet due in JetStream), JetStream the messages read on the events'
	// subjects, Other the messages of the stream on other subjects (not pgjet's; not
	// checked).
	Postgres, Pending, JetStream, Other int
	// Missing: committed, no longer in the outbox (so acknowledged by JetStream once), and
	// not in the stream.
	Missing []Event
	// Duplicates: messages repeating the event id of a message earlier in the stream.
	Duplicates []Event
	// OutOfOrder: messages stored behind a later version of their stream (After), and
	// events still in the outbox (Pending) whose stream has a later version in JetStream
	// already: the relay will store them behind it. Repaired messages are not listed here.
	OutOfOrder []Event
	// Unexpected: messages on the events' subjects without a committed event behind them
	// (a rolled-back transaction, a message that is not pgjet's, one without an event id).
	Unexpected []Event
	// Repaired: messages that Repair re-published (they carry HeaderRepaired). Those
	// behind later versions of their stream have After set: that is where a repair puts
	// a lost event, not a violation.
	Repaired []Event
}

// OK reports whether the check found nothing wrong. Pending and repaired events are not
// wrong.
func (r *Report) OK() bool {
	return len(r.Missing)+len(r.Duplicates)+len(r.OutOfOrder)+len(r.Unexpected) == 0
}

// String summarises the report in one line.
func (r *Report) String() string {
	return fmt.Sprintf("postgres=%d pending=%d jetstream=%d other_subjects=%d missing=%d duplicates=%d out_of_order=%d unexpected=%d repaired=%d",
		r.Postgres, r.Pending, r.JetStream, r.Other, len(r.Missing), len(r.Duplicates), len(r.OutOfOrder), len(r.Unexpected), len(r.Repaired))
}

// message is a message of the stream, as read by readStream.
type message struct {
	Event
	subject  string
	repaired bool
}

// Check compares the stream with Postgres. It reads a consistent snapshot of Postgres
// first and the stream afterwards, so that a relay publishing meanwhile causes no false
// alarm: an event committed during the check is neither missing nor unexpected, and one
// published during it was pending.
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
	rep := &Report{Postgres: len(events), Pending: len(pending)}
	byID := make(map[string]Event, len(events))
	for _, e := range events {
		byID[e.ID] = e
	}
	// Messages of events committed after the snapshot are expected: look them up.
	prefix := cfg.Subjects.Prefix + "."
	var unknown []string
	for _, m := range msgs {
		if _, ok := byID[m.ID]; !ok && strings.HasPrefix(m.subject, prefix) && !beforeRange(m, cfg.FromPosition) {
			unknown = append(unknown, m.ID)
		}
	}
	late, err := committed(ctx, cfg.Pool, unknown)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	maxVersion := map[string]int64{}
	for _, m := range msgs {
		if !strings.HasPrefix(m.subject, prefix) {
			rep.Other++
			continue
		}
		rep.JetStream++
		e, ok := byID[m.ID]
		if !ok {
			e, ok = late[m.ID]
		}
		switch {
		case ok:
			// Postgres is the truth about which stream and version the event is.
			m.Stream, m.Version, m.Position = e.Stream, e.Version, e.Position
		case beforeRange(m, cfg.FromPosition):
			// Older than the check: not looked up, trusted for the order of later ones.
		default:
			// A stray message takes no part in the checks of the real ones: its version
			// would make them look out of order, its id or (stream, version) duplicates.
			rep.Unexpected = append(rep.Unexpected, m.Event)
			continue
		}
		if seen[m.ID] {
			rep.Duplicates = append(rep.Duplicates, m.Event)
			continue
		}
		seen[m.ID] = true
		if top := maxVersion[m.Stream]; m.Version < top {
			m.After = top
			if !m.repaired {
				rep.OutOfOrder = append(rep.OutOfOrder, m.Event)
			}
		}
		if m.repaired {
			rep.Repaired = append(rep.Repaired, m.Event)
		}
		maxVersion[m.Stream] = max(maxVersion[m.Stream], m.Version)
	}
	for _, e := range events {
		switch {
		case seen[e.ID]:
		case !pending[e.Position]:
			rep.Missing = append(rep.Missing, e)
		case maxVersion[e.Stream] > e.Version:
			// The relay publishes a stream's events one after the other, each after the
			// previous one's ack, so it never stores a later version while this one is still
			// to come, however it races with this check (the stream is read after the
			// snapshot, and a prefix of it).
			e.Pending, e.After = true, maxVersion[e.Stream]
			rep.OutOfOrder = append(rep.OutOfOrder, e)
		}
	}
	return rep, nil
}

// beforeRange reports whether m is the message of an event before cfg.FromPosition, going
// by its position header.
func beforeRange(m message, from int64) bool {
	return m.Position > 0 && m.Position < from
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
//
// The end of the read is where the server says it is: a message with nothing pending
// after it, or the last sequence. A pause in the flow is not the end (a fetch that answers
// nothing within a second is, to nats.go, the same as one that found nothing; read that
// way, a slow server or link made every event look missing): it is the end only if the
// consumer has delivered everything and all of it was read.
func readStream(ctx context.Context, cfg Config) (out []message, err error) {
	fail := func(err error) ([]message, error) {
		return nil, fmt.Errorf("verify: reading stream %q: %w", cfg.Stream, err)
	}
	s, err := cfg.JetStream.Stream(ctx, cfg.Stream)
	if err != nil {
		return fail(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fail(err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		return nil, nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{HeadersOnly: true, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return fail(err)
	}
	it, err := c.Messages(jetstream.PullMaxMessages(readBatch))
	if err != nil {
		return fail(err)
	}
	defer func() {
		it.Stop()
		// The server would drop the consumer after a while of inactivity; do not leave it
		// to every run.
		if ci := c.CachedInfo(); ci != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = cfg.JetStream.DeleteConsumer(dctx, cfg.Stream, ci.Name)
		}
	}()
	var read uint64 // stream sequence of the last message read
	for {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		m, err := next(ctx, it, readPause)
		if errors.Is(err, errPause) {
			ci, err := c.Info(ctx)
			if err != nil {
				return fail(err)
			}
			if ci.NumPending == 0 && ci.Delivered.Stream <= read {
				return out, nil // what was left up to last was deleted meanwhile
			}
			continue
		}
		if err != nil {
			return fail(err)
		}
		md, err := m.Metadata()
		if err != nil {
			return fail(err)
		}
		if md.Sequence.Stream > last {
			return out, nil
		}
		read = md.Sequence.Stream
		h := m.Headers()
		v, _ := strconv.ParseInt(h.Get(relay.HeaderStreamVersion), 10, 64)
		p, _ := strconv.ParseInt(h.Get(relay.HeaderPosition), 10, 64)
		out = append(out, message{
			Event: Event{
				ID: cmp.Or(h.Get("ce-id"), h.Get(jetstream.MsgIDHeader)), Stream: h.Get("ce-subject"),
				Version: v, Position: p, Seq: md.Sequence.Stream,
			},
			subject:  m.Subject(),
			repaired: h.Get(HeaderRepaired) != "",
		})
		if md.Sequence.Stream >= last || md.NumPending == 0 {
			return out, nil
		}
	}
}

const (
	readBatch = 1000            // messages asked for at a time
	readPause = 2 * time.Second // no message for this long: ask the consumer where it is
)

var errPause = errors.New("no message for a while")

// next returns the next message of it, or errPause when none comes within pause.
func next(ctx context.Context, it jetstream.MessagesContext, pause time.Duration) (jetstream.Msg, error) {
	nctx, cancel := context.WithTimeout(ctx, pause)
	defer cancel()
	m, err := it.Next(jetstream.NextContext(nctx))
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return nil, errPause
	}
	return m, err
}

// committed returns the events among ids that are in pgjet.events, by id. Ids that are
// not UUIDs were never pgjet's.
func committed(ctx context.Context, pool *pgxpool.Pool, ids []string) (map[string]Event, error) {
	out := map[string]Event{}
	if len(ids) == 0 {
		return out, nil
	}
	uuids := make([]uuid.UUID, 0, len(ids))
	for _, s := range ids {
		if id, err := uuid.Parse(s); err == nil {
			uuids = append(uuids, id)
		}
	}
	rows, err := pool.Query(ctx, `SELECT event_id::text, stream_id, version, position FROM pgjet.events
		WHERE event_id = ANY($1::uuid[])`, uuids)
	if err != nil {
		return nil, fmt.Errorf("verify: reading Postgres: %w", err)
	}
	found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Event, error) {
		var e Event
		return e, r.Scan(&e.ID, &e.Stream, &e.Version, &e.Position)
	})
	if err != nil {
		return nil, fmt.Errorf("verify: reading Postgres: %w", err)
	}
	for _, e := range found {
		out[e.ID] = e
	}
	return out, nil
}
