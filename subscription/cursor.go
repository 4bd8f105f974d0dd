package subscription

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrGap is returned by [Cursor.Fetch] when a delivery does not follow the one before it:
// a message was lost in flight (a dropped connection, a restarted server). Nothing of the
// fetch is returned; create the cursor again at the position you keep.
var ErrGap = errors.New("subscription: a delivery was lost in flight")

// CursorConfig configures a [Cursor].
type CursorConfig struct {
	// Stream is the JetStream stream of the events. Default "PGJET_EVENTS".
	Stream string
	// Name is the durable consumer the cursor reads through. [NewCursor] deletes a
	// consumer of that name and creates it again at the position given. Letters, digits,
	// '-' and '_'. Required.
	Name string
	// Subjects are the JetStream subject filters of the events to read ([Subscriber.Filters]
	// gives those of a [Filter] list). Default: all events.
	Subjects []string
}

// Cursor reads events in stream order for a reader that keeps its position itself, such as
// a projection that commits its read model and the stream sequence it has reached in one
// Postgres transaction. The reader's position is the truth: the consumer behind the cursor
// takes no acknowledgements (AckNone), so nothing waits for an acknowledgement a dropped
// connection lost, and after any failure the reader creates a new cursor at its position.
// Every delivery must follow the one before it (consumer sequences without a gap); Fetch
// reports a lost one with [ErrGap], so no event is ever passed over.
//
// Unlike a [Subscriber], a Cursor has no handler, no acknowledgements, redeliveries or dead
// letters: the reader pulls, and a failed event stops it until it is dealt with. One
// process at a time may read through a Name. A Cursor is not safe for concurrent use.
type Cursor struct {
	cons      jetstream.Consumer
	delivered uint64 // consumer sequence of the last message fetched
}

// NewCursor (re)creates the consumer cfg.Name on js so that it delivers from the event
// after stream sequence after (0: from the first), and returns a cursor on it.
func NewCursor(ctx context.Context, js jetstream.JetStream, cfg CursorConfig, after uint64) (*Cursor, error) {
	stream := cmp.Or(cfg.Stream, DefaultStream)
	if !validGroup.MatchString(cfg.Name) {
		return nil, fmt.Errorf("subscription: cursor name %q must be 1-64 letters, digits, '-' or '_'", cfg.Name)
	}
	if err := js.DeleteConsumer(ctx, stream, cfg.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("subscription: resetting consumer %q: %w", cfg.Name, err)
	}
	cc := jetstream.ConsumerConfig{
		Durable:       cfg.Name,
		Description:   "pgjet cursor",
		AckPolicy:     jetstream.AckNonePolicy,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   after + 1,
	}
	switch len(cfg.Subjects) {
	case 0:
	case 1:
		cc.FilterSubject = cfg.Subjects[0]
	default:
		cc.FilterSubjects = cfg.Subjects
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, cc)
	if err != nil {
		return nil, fmt.Errorf("subscription: creating consumer %q on %q: %w", cfg.Name, stream, err)
	}
	return &Cursor{cons: cons}, nil
}

// Fetch returns up to n events in stream order: those ready at once or, when none is, the
// first to come within wait. None means nothing came within wait, and the consumer has
// delivered nothing the cursor did not get. After an error (ErrGap, a malformed event, a
// lost consumer or connection) the cursor must not be used again.
//
// It asks for what is ready first, so a busy cursor (events arrived while the caller
// handled the last batch) gets its batch in one round trip; only an idle one waits, and
// hands over the first event as soon as it comes. (Waiting for the first and then asking
// for the rest took two round trips a batch, and added one to an idle cursor's first
// event.)
func (c *Cursor) Fetch(n int, wait time.Duration) ([]Event, error) {
	if n < 1 {
		return nil, fmt.Errorf("subscription: fetching %d events: n must be at least 1", n)
	}
	var msgs []jetstream.Msg
	// What the server has at once; an error here shows as a gap, or again, below.
	if ready, err := c.cons.FetchNoWait(n); err == nil {
		for m := range ready.Messages() {
			msgs = append(msgs, m)
		}
	}
	if len(msgs) == 0 {
		first, err := c.cons.Fetch(1, jetstream.FetchMaxWait(wait))
		if err != nil {
			return nil, fmt.Errorf("subscription: fetching: %w", err)
		}
		for m := range first.Messages() {
			msgs = append(msgs, m)
		}
		if err := first.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, fmt.Errorf("subscription: fetching: %w", err)
		}
		if len(msgs) == 0 {
			// Nothing came: a lost delivery shows only here when it was the newest (no
			// later one arrives with a jump in the sequence).
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			info, err := c.cons.Info(ctx)
			cancel()
			if err != nil {
				return nil, fmt.Errorf("subscription: reading the consumer after an empty fetch: %w", err)
			}
			if info.Delivered.Consumer > c.delivered {
				return nil, fmt.Errorf("%w: the consumer delivered up to %d, the cursor got %d", ErrGap, info.Delivered.Consumer, c.delivered)
			}
		}
	}
	evs := make([]Event, 0, len(msgs))
	for _, m := range msgs {
		md, err := m.Metadata()
		if err != nil {
			return nil, fmt.Errorf("subscription: reading message metadata: %w", err)
		}
		if md.Sequence.Consumer != c.delivered+1 {
			return nil, fmt.Errorf("%w: consumer sequence %d after %d", ErrGap, md.Sequence.Consumer, c.delivered)
		}
		c.delivered = md.Sequence.Consumer
		ev, err := eventFrom(m)
		if err != nil {
			return nil, fmt.Errorf("subscription: malformed event at sequence %d: %w", md.Sequence.Stream, err)
		}
		evs = append(evs, ev)
	}
	return evs, nil
}

// Info returns the consumer's information from the server: NumPending is how many events
// it has not delivered yet, Delivered.Stream the last stream sequence it delivered.
func (c *Cursor) Info(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	return c.cons.Info(ctx)
}
