package relay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgjet/pgjet/internal/subject"
)

// StreamConfig describes the JetStream stream that holds the events.
type StreamConfig struct {
	// Name of the JetStream stream. Default "PGJET_EVENTS".
	Name string
	// Subjects is the subject scheme; the stream binds Subjects.All(). Default prefix
	// "pgjet.events".
	Subjects subject.Scheme
	// Replicas: 1 for a single server, 3 for a production cluster. Default 1.
	Replicas int
	// DuplicateWindow is how long JetStream remembers message ids to drop re-publishes.
	// Default 2 minutes. Consumers dedupe by (stream, version) beyond it.
	DuplicateWindow time.Duration
	// MaxAge drops events older than this from JetStream (Postgres keeps them). Default 0:
	// keep forever.
	MaxAge time.Duration
	// MaxBytes caps the stream's size; the oldest events go first. Default -1: no cap.
	MaxBytes int64
	// AllowBatchPublish and AllowAtomicPublish let the stream take ordered (fast-ingest)
	// and atomic batch publishes, where the server knows them (2.14 and 2.12); a relay sets
	// them from Config.BatchPublish and AtomicPublish. They raise the JetStream API level
	// the stream needs, and a node of a cluster older than that level stops serving the
	// stream, so they are set only when asked for (a rolling upgrade keeps the stream
	// served until a relay asks). Once set on the stream they stay: EnsureStream never
	// turns them off, so relays of one group with different settings do not undo each
	// other's.
	AllowBatchPublish, AllowAtomicPublish bool
}

func (c *StreamConfig) setDefaults() error {
	if c.Name == "" {
		c.Name = "PGJET_EVENTS"
	}
	if c.Subjects.Prefix == "" {
		s, err := subject.New("pgjet.events")
		if err != nil {
			return err
		}
		c.Subjects = s
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = 2 * time.Minute
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = -1
	}
	return nil
}

// EnsureStream creates the events stream, or updates it to cfg if it exists and differs.
// A stream that already matches is left alone: every relay calls this at its start, and an
// update is a change of the stream (an advisory, and work at every node) for nothing. An
// update changes only the settings cfg and pgjet decide (see matches); what an operator
// set beside them (message limits, placement, metadata, compression) is kept.
//
// EnsureStream reads the stream and then updates it: two callers with different settings
// at once can undo each other's (each updates from what it read before the other's update).
// Relays call it holding a Postgres lock for the stream (see Relay.ensureStream).
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	want := jetstream.StreamConfig{
		Name:        cfg.Name,
		Description: "pgjet events, published from the Postgres outbox",
		Subjects:    []string{cfg.Subjects.All()},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Duplicates:  cfg.DuplicateWindow,
		MaxAge:      cfg.MaxAge,
		MaxBytes:    cfg.MaxBytes,
		AllowDirect: true,
		// Let the relay pipeline a stream's events in order (see publishOrdered) and publish
		// atomic batches (see publishAtomic). Servers before 2.14 and 2.12 do not know
		// the settings and refuse them.
		AllowBatchPublish:  cfg.AllowBatchPublish && serverAtLeast(js.Conn().ConnectedServerVersion(), 2, 14),
		AllowAtomicPublish: cfg.AllowAtomicPublish && serverAtLeast(js.Conn().ConnectedServerVersion(), 2, 12),
	}
	s, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, want)
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			if err != nil {
				return nil, fmt.Errorf("creating JetStream stream %q: %w", cfg.Name, err)
			}
			return s, nil
		}
		// Another relay created it first, with other settings: update it as found, so the
		// settings it asked for stay (an update with ours alone would take them away).
		s, err = js.Stream(ctx, cfg.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("reading JetStream stream %q: %w", cfg.Name, err)
	}
	have := s.CachedInfo().Config
	want.AllowBatchPublish = want.AllowBatchPublish || have.AllowBatchPublish
	// nats-server refuses atomic publishes beside the async persist mode, which an
	// operator may have chosen.
	want.AllowAtomicPublish = (want.AllowAtomicPublish || have.AllowAtomicPublish) && have.PersistMode != jetstream.AsyncPersistMode
	if matches(have, want) {
		return s, nil
	}
	if s, err = js.UpdateStream(ctx, merge(have, want)); err != nil {
		return nil, fmt.Errorf("updating JetStream stream %q: %w", cfg.Name, err)
	}
	return s, nil
}

// matches reports whether the stream config have has every setting EnsureStream sets as
// in want.
func matches(have, want jetstream.StreamConfig) bool {
	return have.Description == want.Description && slices.Equal(have.Subjects, want.Subjects) &&
		have.Storage == want.Storage && have.Replicas == want.Replicas && have.Retention == want.Retention &&
		have.Discard == want.Discard && have.Duplicates == want.Duplicates && have.MaxAge == want.MaxAge &&
		have.MaxBytes == want.MaxBytes && have.AllowDirect == want.AllowDirect &&
		have.AllowBatchPublish == want.AllowBatchPublish && have.AllowAtomicPublish == want.AllowAtomicPublish
}

// merge returns have with the settings EnsureStream sets taken from want; the rest (limits,
// placement, metadata, compression an operator set) stays as it is.
func merge(have, want jetstream.StreamConfig) jetstream.StreamConfig {
	have.Description, have.Subjects, have.Storage, have.Replicas = want.Description, want.Subjects, want.Storage, want.Replicas
	have.Retention, have.Discard, have.Duplicates = want.Retention, want.Discard, want.Duplicates
	have.MaxAge, have.MaxBytes = want.MaxAge, want.MaxBytes
	have.AllowDirect, have.AllowBatchPublish, have.AllowAtomicPublish = want.AllowDirect, want.AllowBatchPublish, want.AllowAtomicPublish
	return have
}

// serverAtLeast reports whether a nats-server version ("2.15.2", "2.14.0-beta.1") is at
// least major.minor.
func serverAtLeast(version string, major, minor int) bool {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}
