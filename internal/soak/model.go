package soak

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/projection"
)

// The read model the soak's projector keeps: one row per stream.
const (
	modelName   = "soak-streams"
	modelSchema = "soak_model"
)

// streamRow is a stream as the read model sees it: how many events it has, the last
// version applied, and a hash chain over its event ids in the order they were applied
// (digest = hex(sha256(previous digest + event id)), starting from "").
type streamRow struct {
	events int64
	last   int64
	digest string
}

func (r streamRow) String() string {
	return fmt.Sprintf("{events %d, last v%d, ids digest %.16s}", r.events, r.last, r.digest)
}

// chain extends a digest with the next event id, as applyModelSQL does.
func chain(digest, id string) string {
	sum := sha256.Sum256([]byte(digest + id))
	return hex.EncodeToString(sum[:])
}

const setupModelSQL = `CREATE TABLE IF NOT EXISTS streams (
	stream_id text PRIMARY KEY, events bigint NOT NULL, last_version bigint NOT NULL, digest text NOT NULL)`

// applyModelSQL: $1 stream, $2 version, $3 event id.
const applyModelSQL = `INSERT INTO streams AS s (stream_id, events, last_version, digest)
	VALUES ($1, 1, $2, encode(sha256(convert_to($3::text, 'UTF8')), 'hex'))
	ON CONFLICT (stream_id) DO UPDATE SET events = s.events + 1, last_version = excluded.last_version,
		digest = encode(sha256(convert_to(s.digest || $3::text, 'UTF8')), 'hex')`

// modelProjection is the read model. Its Apply reports to s.projectorBatch after changing
// the row, so a fault can kill the projector with the batch's transaction open. With
// queued, it queues its statement instead (Projection.Queue), and reports as the
// statement's result arrives: the batch's one pipeline is then sent, and may have
// committed by the time the fault cuts it.
func (s *system) modelProjection(queued bool) projection.Projection {
	p := projection.Projection{
		Name: modelName, Schema: modelSchema,
		Setup: func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, setupModelSQL)
			return err
		},
	}
	if queued {
		p.Queue = func(_ context.Context, b *pgx.Batch, ev projection.Event) error {
			b.Queue(applyModelSQL, ev.StreamID, ev.Version, ev.ID).Exec(func(pgconn.CommandTag) error {
				s.projectorBatch.reached(0)
				return nil
			})
			return nil
		}
		return p
	}
	p.Apply = func(ctx context.Context, tx pgx.Tx, ev projection.Event) error {
		if _, err := tx.Exec(ctx, applyModelSQL, ev.StreamID, ev.Version, ev.ID); err != nil {
			return err
		}
		s.projectorBatch.reached(0)
		return nil
	}
	return p
}

// readModel returns the read model's rows.
func readModel(ctx context.Context, db *pgxpool.Pool) (map[string]streamRow, error) {
	rows, err := db.Query(ctx, `SELECT stream_id, events, last_version, digest FROM `+modelSchema+`.streams`)
	if err != nil {
		return nil, fmt.Errorf("soak: reading the read model: %w", err)
	}
	out := map[string]streamRow{}
	var (
		stream string
		r      streamRow
	)
	_, err = pgx.ForEachRow(rows, []any{&stream, &r.events, &r.last, &r.digest}, func() error {
		out[stream] = r
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("soak: reading the read model: %w", err)
	}
	return out, nil
}

// rebuildModel computes the read model from Postgres alone: every event by ReadAll from the
// beginning. A stream's events out of version order are a violation of ReadAll's contract.
// ReadAll stops below the oldest transaction running anywhere in the Postgres cluster (a
// test in another database may hold one for a while), so the rebuild reads on until it has
// every event in the table, for up to a minute.
func (s *system) rebuildModel(ctx context.Context, res *Result) (map[string]streamRow, error) {
	var total int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pgjet.events`).Scan(&total); err != nil {
		return nil, fmt.Errorf("soak: counting events: %w", err)
	}
	out := map[string]streamRow{}
	var after pgjet.AllPosition
	deadline := time.Now().Add(time.Minute)
	for read := 0; read < total; {
		evs, err := s.store.ReadAll(ctx, after, 1000)
		if err != nil {
			return nil, fmt.Errorf("soak: rebuilding the read model: %w", err)
		}
		if len(evs) == 0 {
			if time.Now().After(deadline) {
				res.violate("ReadAll returned %d of the %d events within a minute", read, total)
				return out, nil
			}
			time.Sleep(50 * time.Millisecond) // an open transaction holds the horizon
			continue
		}
		for _, e := range evs {
			r := out[e.StreamID]
			if e.Version != r.last+1 {
				res.violate("ReadAll returned %s v%d (event %s) after v%d", e.StreamID, e.Version, e.ID, r.last)
			}
			out[e.StreamID] = streamRow{events: r.events + 1, last: e.Version, digest: chain(r.digest, e.ID.String())}
		}
		read += len(evs)
		after = evs[len(evs)-1].Next()
	}
	return out, nil
}

// compareModel reports every stream whose read-model row differs from the rebuild.
func compareModel(model, rebuilt map[string]streamRow, res *Result) {
	res.ModelStreams = len(model)
	for _, r := range model {
		res.ModelEvents += int(r.events)
	}
	streams := slices.Sorted(maps.Keys(rebuilt))
	for s := range model {
		if _, ok := rebuilt[s]; !ok {
			streams = append(streams, s)
		}
	}
	for _, s := range streams {
		m, inModel := model[s]
		r, inPG := rebuilt[s]
		switch {
		case !inModel:
			res.violate("read model lacks stream %s: rebuild from Postgres %s", s, r)
		case !inPG:
			res.violate("read model has stream %s with no events in Postgres: model %s", s, m)
		case m != r:
			res.violate("read model row of %s differs from the rebuild: model %s, rebuild from Postgres %s", s, m, r)
		}
	}
}
