package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgjet/pgjet/internal/relay"
)

// HeaderRepaired marks a message that Repair re-published; its value is the time of the
// repair (RFC 3339). It is how Check tells a repaired event, stored behind later versions
// of its stream on purpose, from one the relay stored out of order.
const HeaderRepaired = "ce-repaired"

// repairPage is how many missing events Repair reads from Postgres at a time.
const repairPage = 500

// Repair re-publishes the missing events from Postgres, in position order (so each
// stream's in version order), as the relay would have published them and marked with
// HeaderRepaired, and returns how many JetStream stored. It stops at the first event JetStream does not store, so it never
// stores a later version of a stream without the earlier ones.
//
// An event JetStream holds after all (missing is stale: the event was repaired since) is
// not published again. An event whose id JetStream still remembers in its duplicate window
// although the message is gone (deleted, not lost with the window) is published with
// Nats-Msg-Id "<event id>/repaired", so that JetStream keeps one copy however often the
// repair runs within the window. Run it while no other Repair runs on the same stream.
func Repair(ctx context.Context, cfg Config, missing []Event) (int, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return 0, err
	}
	if len(missing) == 0 {
		return 0, nil
	}
	s, err := cfg.JetStream.Stream(ctx, cfg.Stream)
	if err != nil {
		return 0, fmt.Errorf("verify: stream %q: %w", cfg.Stream, err)
	}
	positions := make([]int64, 0, len(missing))
	for _, e := range missing {
		positions = append(positions, e.Position)
	}
	slices.Sort(positions)
	opts := relay.MessageOptions{Subjects: cfg.Subjects, Source: cfg.Source, RegistryURL: cfg.RegistryURL}
	stored, now := 0, time.Now().UTC().Format(time.RFC3339)
	for page := range slices.Chunk(slices.Compact(positions), repairPage) {
		events, err := readEvents(ctx, cfg, page)
		if err != nil {
			return stored, err
		}
		for _, e := range events {
			msg := relay.Message(e, opts)
			msg.Header.Set(HeaderRepaired, now)
			ok, err := republish(ctx, cfg, s, msg)
			if err != nil {
				return stored, fmt.Errorf("verify: re-publishing %s (%s v%d): %w", e.ID, e.Stream, e.Version, err)
			}
			if ok {
				stored++
			}
		}
	}
	return stored, nil
}

// readEvents reads the events at positions, in position order.
func readEvents(ctx context.Context, cfg Config, positions []int64) ([]relay.Event, error) {
	rows, err := cfg.Pool.Query(ctx, `
		SELECT position, event_id::text, stream_id, version, type, schema_id, data, created_at
		FROM pgjet.events WHERE position = ANY($1) ORDER BY position`, positions)
	if err != nil {
		return nil, fmt.Errorf("verify: reading missing events: %w", err)
	}
	events, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (relay.Event, error) {
		var e relay.Event
		return e, r.Scan(&e.Position, &e.ID, &e.Stream, &e.Version, &e.Type, &e.SchemaID, &e.Data, &e.CreatedAt)
	})
	if err != nil {
		return nil, fmt.Errorf("verify: reading missing events: %w", err)
	}
	return events, nil
}

// republish publishes msg and reports whether JetStream stored it; false when JetStream
// holds the event already. On a duplicate answer it looks at the message JetStream kept
// under the id: if that is gone, it publishes again under the id "<event id>/repaired".
func republish(ctx context.Context, cfg Config, s jetstream.Stream, msg *nats.Msg) (bool, error) {
	id := msg.Header.Get(jetstream.MsgIDHeader)
	for _, msgID := range []string{id, id + "/repaired"} {
		msg.Header.Set(jetstream.MsgIDHeader, msgID)
		ack, err := publish(ctx, cfg, msg)
		if err != nil {
			return false, err
		}
		if !ack.Duplicate {
			return true, nil
		}
		held, err := holds(ctx, s, ack.Sequence, id)
		if err != nil || held {
			return false, err
		}
	}
	// Both ids are remembered and both messages gone: the window forgets them in time, but
	// JetStream lacks the event now.
	msg.Header.Del(jetstream.MsgIDHeader)
	_, err := publish(ctx, cfg, msg)
	return err == nil, err
}

// holds reports whether the message at seq is the event id.
func holds(ctx context.Context, s jetstream.Stream, seq uint64, id string) (bool, error) {
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading the message at sequence %d: %w", seq, err)
	}
	return m.Header.Get("ce-id") == id, nil
}

func publish(ctx context.Context, cfg Config, msg *nats.Msg) (*jetstream.PubAck, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.PublishTimeout)
	defer cancel()
	return cfg.JetStream.PublishMsg(ctx, msg, jetstream.WithExpectStream(cfg.Stream))
}
