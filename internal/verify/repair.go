package verify

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgjet/pgjet/internal/relay"
)

// Repair re-publishes the missing events from Postgres, in position order, as the relay
// would have published them, and returns how many JetStream stored. An event whose id
// JetStream still remembers in its duplicate window (the message was deleted, not lost with
// the window) is re-published once more without Nats-Msg-Id, since Check found it absent.
// Run it while no other Repair runs on the same stream.
func Repair(ctx context.Context, cfg Config, missing []Event) (int, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return 0, err
	}
	if len(missing) == 0 {
		return 0, nil
	}
	positions := make([]int64, 0, len(missing))
	for _, e := range missing {
		positions = append(positions, e.Position)
	}
	rows, err := cfg.Pool.Query(ctx, `
		SELECT position, event_id::text, stream_id, version, type, schema_id, data, created_at
		FROM pgjet.events WHERE position = ANY($1) ORDER BY position`, positions)
	if err != nil {
		return 0, fmt.Errorf("verify: reading missing events: %w", err)
	}
	events, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (relay.Event, error) {
		var e relay.Event
		return e, r.Scan(&e.Position, &e.ID, &e.Stream, &e.Version, &e.Type, &e.SchemaID, &e.Data, &e.CreatedAt)
	})
	if err != nil {
		return 0, fmt.Errorf("verify: reading missing events: %w", err)
	}
	opts := relay.MessageOptions{Subjects: cfg.Subjects, Source: cfg.Source, RegistryURL: cfg.RegistryURL}
	stored := 0
	for _, e := range events {
		msg := relay.Message(e, opts)
		ack, err := publish(ctx, cfg, msg)
		if err == nil && ack.Duplicate {
			msg.Header.Del(jetstream.MsgIDHeader)
			ack, err = publish(ctx, cfg, msg)
		}
		if err != nil {
			return stored, fmt.Errorf("verify: re-publishing %s (%s v%d): %w", e.ID, e.Stream, e.Version, err)
		}
		stored++
	}
	return stored, nil
}

func publish(ctx context.Context, cfg Config, msg *nats.Msg) (*jetstream.PubAck, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.PublishTimeout)
	defer cancel()
	return cfg.JetStream.PublishMsg(ctx, msg, jetstream.WithExpectStream(cfg.Stream))
}
