package soak

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"

	"github.com/pgjet/pgjet"
)

// write appends until ctx ends or the budget is spent: random streams, random expected
// versions (often stale, so conflicts happen), some appends rolled back on purpose.
func (s *system) write(ctx context.Context, w int, seed uint64, b *budget, h *history) {
	rng := rand.New(rand.NewPCG(seed, uint64(w)))
	for ctx.Err() == nil && b.take() {
		stream := fmt.Sprintf("order-%d", rng.IntN(s.cfg.Streams))
		evs := make([]pgjet.EventData, 1+rng.IntN(3))
		for i := range evs {
			evs[i] = event(stream, w, i)
		}
		var expected pgjet.ExpectedVersion
		switch rng.IntN(10) {
		case 0, 1, 2, 3:
			expected = pgjet.Any
		case 4:
			expected = pgjet.NoStream
		case 5:
			expected = pgjet.StreamExists
		default:
			v, _ := h.known(stream)
			expected = pgjet.Exact(v + int64(rng.IntN(3)) - 1) // often stale or ahead
			if expected < 0 {
				expected = pgjet.NoStream
			}
		}
		rollback := rng.IntN(10) == 0
		outcome, last := s.append(ctx, stream, expected, evs, rollback)
		h.record(stream, expected, evs, outcome, last)
	}
}

// Outcomes of an append attempt.
const (
	outcomeCommitted  = "committed"
	outcomeRolledBack = "rolled back"
	outcomeConflict   = "conflict"
	outcomeUnknown    = "unknown" // error with no answer: resolved from Postgres later
)

// append runs one append, retrying an unknown outcome with the same ids and expectation
// (idempotent append), and returns the outcome and, when committed, the stream's version.
func (s *system) append(ctx context.Context, stream string, expected pgjet.ExpectedVersion, evs []pgjet.EventData, rollback bool) (string, int64) {
	if rollback {
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			return outcomeRolledBack, 0
		}
		_, err = s.store.AppendTx(ctx, tx, stream, expected, evs...)
		_ = tx.Rollback(context.WithoutCancel(ctx))
		if errors.Is(err, pgjet.ErrWrongExpectedVersion) {
			return outcomeConflict, 0
		}
		return outcomeRolledBack, 0
	}
	for attempt := 0; attempt < 5; attempt++ {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		res, err := s.store.Append(actx, stream, expected, evs...)
		cancel()
		switch {
		case err == nil:
			return outcomeCommitted, res.LastVersion
		case errors.Is(err, pgjet.ErrWrongExpectedVersion):
			if attempt == 0 {
				return outcomeConflict, 0
			}
			// A retry conflicting after an unknown outcome: the first try may have committed
			// and a later append moved the stream on. Only Postgres knows.
			return outcomeUnknown, 0
		case errors.Is(err, pgjet.ErrValidation):
			return outcomeConflict, 0
		}
		time.Sleep(time.Duration(50*(attempt+1)) * time.Millisecond) // the session was terminated; back off
	}
	return outcomeUnknown, 0
}

func event(stream string, w, i int) pgjet.EventData {
	return pgjet.EventData{ID: uuid.New(), Type: "pgjet.demo.order.OrderCancelled", Data: json.RawMessage(fmt.Sprintf(
		`{"order_id":"5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10","reason":"%s w%d #%d","cancelled_at":"2026-11-26T10:00:00Z"}`, stream, w, i))}
}
