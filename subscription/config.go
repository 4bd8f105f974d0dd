package subscription

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/subject"
)

// Defaults of [Config].
const (
	DefaultStream           = "PGJET_EVENTS"
	DefaultPrefix           = subject.DefaultPrefix
	DefaultDeadLetterStream = "PGJET_DEADLETTERS"
	DefaultDeadLetterPrefix = "pgjet.deadletter"
)

// Handler handles one event. Returning an error naks the event: it is redelivered after a
// backoff, and dead-lettered after Config.MaxDeliver deliveries. The context is cancelled
// Config.DrainTimeout after Run's context, so a handler can finish its work on shutdown.
type Handler func(ctx context.Context, ev Event) error

// BatchHandler handles up to Config.BatchSize events at once, in delivery order. Returning
// an error naks every event of the batch (each is redelivered, and dead-lettered on its
// own after Config.MaxDeliver deliveries).
type BatchHandler func(ctx context.Context, evs []Event) error

// Predicate decides whether an event that passed the subject filters is handled. Events it
// rejects are acknowledged without reaching the handler and counted as skipped. A panic in
// it fails the event as a handler's error does (redelivered, then dead-lettered); during a
// history replay, where an event cannot be set aside, it ends Run with an error.
type Predicate func(ev Event) bool

// Config configures a [Subscriber]. The zero value of each field but Handler/BatchHandler
// means its documented default.
type Config struct {
	// Stream is the JetStream stream of the events. Default "PGJET_EVENTS".
	Stream string
	// Prefix is the events' subject prefix. Default "pgjet.events".
	Prefix string
	// Group is the durable consumer's name; subscribers with the same Group share the work.
	// Letters, digits, '-' and '_'. Default "": an ephemeral consumer of this subscriber
	// alone, removed by the server InactiveThreshold after the subscriber stops.
	Group string
	// InactiveThreshold is how long the server keeps an ephemeral consumer without a
	// subscriber. Ignored for groups. Default 1 minute.
	InactiveThreshold time.Duration
	// Filters select the events to receive; an event matching any one is delivered.
	// Default: all events.
	Filters []Filter
	// Predicate, if set, filters events further in Go (see [Predicate]).
	Predicate Predicate
	// Start is where a new consumer starts. It does not move an existing durable
	// consumer, which resumes where its group left off. Default [FromBeginning].
	Start Start
	// History and Postgres are required by a [FromPosition] start: the events before
	// JetStream's are read from there. A *pgjet.Store is a History; its *pgxpool.Pool
	// is the Postgres.
	History  History
	Postgres Postgres

	// Handler handles events one at a time. Exactly one of Handler and BatchHandler is
	// required.
	Handler Handler
	// BatchHandler handles events in batches of up to BatchSize, collected for at most
	// BatchWait.
	BatchHandler BatchHandler
	// BatchSize is the largest batch given to BatchHandler. Default 100.
	BatchSize int
	// BatchWait is how long a batch may wait to fill up after its first event. Default
	// 100ms.
	BatchWait time.Duration

	// Decoder decodes payloads into Event.Data. Default nil: Event.Data stays nil and
	// handlers read Event.Raw. See [RegistryDecoder].
	Decoder Decoder

	// AckWait is how long the server waits for an acknowledgement before redelivering.
	// Handlers (or batches) that take longer are redelivered. Default 30s.
	AckWait time.Duration
	// MaxAckPending bounds the group's unacknowledged events. Default 1000.
	MaxAckPending int
	// MaxDeliver is how many deliveries an event gets before it is dead-lettered.
	// Default 5; -1 never dead-letters.
	MaxDeliver int
	// BackoffMin is the delay before the first redelivery after a handler error; each
	// further failure doubles it up to BackoffMax. Default 1s.
	BackoffMin time.Duration
	// BackoffMax caps the redelivery delay. Default 1 minute.
	BackoffMax time.Duration

	// DeadLetterStream is the JetStream stream of dead letters, created if missing.
	// Default "PGJET_DEADLETTERS".
	DeadLetterStream string
	// DeadLetterPrefix is the dead-letter subject prefix; a group's dead letters go to
	// "<prefix>.<group>". Default "pgjet.deadletter".
	DeadLetterPrefix string

	// Heartbeat is the idle heartbeat the server sends on a pull with nothing to deliver;
	// two missed heartbeats make the subscriber check and, if needed, recreate its
	// consumer. 500ms to 30s. Default 5s.
	Heartbeat time.Duration
	// DrainTimeout bounds how long the in-flight handler may run after Run's context is
	// cancelled. Default 30s.
	DrainTimeout time.Duration
	// RetryMax caps the delay between attempts to recreate a lost consumer. Default 5s.
	RetryMax time.Duration

	// Ordered makes Group an ordered group: every event of one stream goes to the same
	// member, one at a time and in version order, while different streams spread over the
	// members; members joining or leaving move whole partitions without losing or
	// reordering a stream's events. A dead-lettered event parks its stream (see
	// docs/subscriptions.md). Requires Group and Handler; not FromPosition. Default false.
	Ordered bool
	// Partitions is how many partitions an ordered group spreads streams over (by a hash of
	// the stream id), and so the most members that get work. Every member of a group must
	// use the same number. 1 to 1024; ignored unless Ordered. Default 16.
	Partitions int
	// PartitionLease is how long an ordered group member's claim on a partition lasts
	// unrenewed: the partitions of a member that died without leaving move after it.
	// Members renew claims every quarter of it. At least 400ms. Default 10s.
	PartitionLease time.Duration

	// Logger receives structured logs. Default: none.
	Logger *zap.Logger
	// Registerer receives the subscriber's metrics (see metrics.go). Default: none.
	Registerer prometheus.Registerer
	// TracerProvider starts a consumer span per handled event (per batch, linked to each
	// event's trace, for a BatchHandler), a child of the trace context in the event's
	// traceparent header. The handler's context carries it. Default: no spans.
	TracerProvider trace.TracerProvider
}

// Filter selects events by any combination of category, type and stream. Empty fields
// match anything; a Filter with all fields empty matches every event. A stream implies its
// category; giving both requires they agree.
type Filter struct {
	// Category is a stream category: the text of a stream id before its first '-'.
	Category string
	// Type is an event type: an Avro full name such as "pgjet.demo.order.OrderPlaced".
	Type string
	// Stream is a stream id such as "order-123".
	Stream string
}

// subject returns the JetStream subject filter of f under scheme s.
func (f Filter) subject(s subject.Scheme) (string, error) {
	if f.Stream != "" && f.Category != "" && subject.Category(f.Stream) != f.Category {
		return "", fmt.Errorf("stream %q is not in category %q", f.Stream, f.Category)
	}
	switch {
	case f.Stream != "" && f.Type != "":
		return s.For(f.Stream, f.Type)
	case f.Stream != "":
		return s.ByStream(f.Stream)
	case f.Category != "" && f.Type != "":
		return s.ByCategoryAndType(f.Category, f.Type)
	case f.Category != "":
		return s.ByCategory(f.Category)
	case f.Type != "":
		return s.ByType(f.Type)
	default:
		return s.All(), nil
	}
}

// Start is the position a new consumer starts from. Build it with [FromBeginning],
// [FromSequence], [FromTime] or [NewOnly].
type Start struct {
	kind startKind
	seq  uint64
	time time.Time
	pos  pgjet.AllPosition
}

type startKind int

const (
	startBeginning startKind = iota
	startSequence
	startTime
	startNew
	startPosition
)

// FromBeginning starts with the oldest event JetStream holds.
func FromBeginning() Start { return Start{kind: startBeginning} }

// FromSequence starts with the event at JetStream stream sequence seq (1 is the first).
func FromSequence(seq uint64) Start { return Start{kind: startSequence, seq: seq} }

// FromTime starts with the first event JetStream stored at or after t.
func FromTime(t time.Time) Start { return Start{kind: startTime, time: t} }

// NewOnly starts with the first event stored after the consumer is created.
func NewOnly() Start { return Start{kind: startNew} }

// String describes the start position.
func (s Start) String() string {
	switch s.kind {
	case startSequence:
		return fmt.Sprintf("sequence %d", s.seq)
	case startTime:
		return "time " + s.time.Format(time.RFC3339Nano)
	case startNew:
		return "new only"
	case startPosition:
		return fmt.Sprintf("Postgres position (tx %d, position %d)", s.pos.TxID, s.pos.Position)
	default:
		return "beginning"
	}
}

var validGroup = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func (c *Config) setDefaults() {
	c.Stream = cmp.Or(c.Stream, DefaultStream)
	c.Prefix = cmp.Or(c.Prefix, DefaultPrefix)
	c.InactiveThreshold = cmp.Or(c.InactiveThreshold, time.Minute)
	c.BatchSize = cmp.Or(c.BatchSize, 100)
	if c.BatchHandler == nil {
		c.BatchSize = 1
	}
	c.BatchWait = cmp.Or(c.BatchWait, 100*time.Millisecond)
	c.AckWait = cmp.Or(c.AckWait, 30*time.Second)
	c.MaxAckPending = cmp.Or(c.MaxAckPending, 1000)
	c.MaxDeliver = cmp.Or(c.MaxDeliver, 5)
	c.BackoffMin = cmp.Or(c.BackoffMin, time.Second)
	c.BackoffMax = cmp.Or(c.BackoffMax, time.Minute)
	c.DeadLetterStream = cmp.Or(c.DeadLetterStream, DefaultDeadLetterStream)
	c.DeadLetterPrefix = cmp.Or(c.DeadLetterPrefix, DefaultDeadLetterPrefix)
	c.Heartbeat = cmp.Or(c.Heartbeat, 5*time.Second)
	c.DrainTimeout = cmp.Or(c.DrainTimeout, 30*time.Second)
	c.RetryMax = cmp.Or(c.RetryMax, 5*time.Second)
	c.Partitions = cmp.Or(c.Partitions, 16)
	c.PartitionLease = cmp.Or(c.PartitionLease, 10*time.Second)
	c.Logger = cmp.Or(c.Logger, zap.NewNop())
	if c.TracerProvider == nil {
		c.TracerProvider = noop.NewTracerProvider()
	}
}

// validate checks c (with defaults filled in) and returns the subject filters. It reports
// every problem at once, each naming its field.
func (c *Config) validate() ([]string, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("Config.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	scheme, err := subject.New(c.Prefix)
	if err != nil {
		bad("Prefix", "%v", err)
	}
	if c.Group != "" && !validGroup.MatchString(c.Group) {
		bad("Group", "%q must be 1-64 letters, digits, '-' or '_'", c.Group)
	}
	if (c.Handler == nil) == (c.BatchHandler == nil) {
		bad("Handler", "exactly one of Handler and BatchHandler is required")
	}
	if c.BatchSize < 1 {
		bad("BatchSize", "%d must be positive", c.BatchSize)
	}
	if c.MaxDeliver < -1 || c.MaxDeliver == 0 {
		bad("MaxDeliver", "%d must be positive or -1", c.MaxDeliver)
	}
	for _, d := range []struct {
		field string
		d     time.Duration
	}{{"InactiveThreshold", c.InactiveThreshold}, {"BatchWait", c.BatchWait}, {"AckWait", c.AckWait},
		{"BackoffMin", c.BackoffMin}, {"DrainTimeout", c.DrainTimeout}, {"RetryMax", c.RetryMax}} {
		if d.d < 0 {
			bad(d.field, "%s is negative", d.d)
		}
	}
	if c.BackoffMax < c.BackoffMin {
		bad("BackoffMax", "%s is less than BackoffMin %s", c.BackoffMax, c.BackoffMin)
	}
	if c.Heartbeat < 500*time.Millisecond || c.Heartbeat > 30*time.Second {
		bad("Heartbeat", "%s is outside JetStream's 500ms-30s", c.Heartbeat)
	}
	if strings.ContainsAny(c.DeadLetterPrefix, "*> ") || strings.HasPrefix(c.DeadLetterPrefix, c.Prefix+".") || c.DeadLetterPrefix == c.Prefix {
		bad("DeadLetterPrefix", "%q must be a literal subject outside the events' prefix", c.DeadLetterPrefix)
	}
	if c.Start.kind == startSequence && c.Start.seq == 0 {
		bad("Start", "FromSequence(0): sequences start at 1")
	}
	if c.Start.kind == startPosition && (c.History == nil || c.Postgres == nil) {
		bad("History", "FromPosition needs History and Postgres")
	}
	if c.Ordered {
		if c.Group == "" {
			bad("Ordered", "an ordered group needs a Group")
		}
		if c.BatchHandler != nil {
			bad("BatchHandler", "an ordered group hands events one at a time: use Handler")
		}
		if c.Start.kind == startPosition {
			bad("Start", "FromPosition is not supported by ordered groups")
		}
		if c.Partitions < 1 || c.Partitions > 1024 {
			bad("Partitions", "%d is outside 1-1024", c.Partitions)
		}
		if c.PartitionLease < 400*time.Millisecond {
			bad("PartitionLease", "%s is less than 400ms", c.PartitionLease)
		}
	}
	var filters []string
	if err == nil {
		for i, f := range c.Filters {
			s, err := f.subject(scheme)
			if err != nil {
				bad(fmt.Sprintf("Filters[%d]", i), "%v", err)
				continue
			}
			filters = append(filters, s)
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("subscription: invalid config: %w", errors.Join(errs...))
	}
	return filters, nil
}
