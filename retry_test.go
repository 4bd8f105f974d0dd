package pgjet_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
)

const paymentCaptured = "pgjet.demo.order.PaymentCaptured"

// setTo is an event that sets a counter to n. Without concurrency control two writers that
// read the same n would both write n+1, and one increment would be lost.
func setTo(n int64) pgjet.EventData {
	return pgjet.EventData{Type: paymentCaptured, Data: map[string]any{
		"order_id": "5f0c7d4e-8a51-4c1e-9d4b-6f1b9a3c2e10", "amount_cents": n, "method": "CARD",
		"captured_at": time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}}
}

// amounts returns the amount_cents of every event of the stream, in version order.
func amounts(t *testing.T, s *pgjet.Store, stream string) []int64 {
	t.Helper()
	ctx := context.Background()
	evs, err := s.ReadStream(ctx, stream, pgjet.Forward, 1, 10_000)
	require.NoError(t, err)
	out := make([]int64, len(evs))
	for i, e := range evs {
		data, err := s.Decode(ctx, e)
		require.NoError(t, err)
		out[i] = data["amount_cents"].(int64)
	}
	return out
}

// increment decides the next counter value from the whole history.
func increment(s *pgjet.Store) func(ctx context.Context, history []pgjet.RecordedEvent) ([]pgjet.EventData, error) {
	return func(ctx context.Context, history []pgjet.RecordedEvent) ([]pgjet.EventData, error) {
		n := int64(0)
		if len(history) > 0 {
			data, err := s.Decode(ctx, history[len(history)-1])
			if err != nil {
				return nil, err
			}
			n = data["amount_cents"].(int64)
		}
		return []pgjet.EventData{setTo(n + 1)}, nil
	}
}

func TestUpdateConcurrentWritersLoseNoIncrement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	const writers, each = 8, 5
	opts := pgjet.UpdateOptions{MaxAttempts: 1000, MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for range writers {
		wg.Go(func() {
			for range each {
				if _, err := s.Update(ctx, "counter-1", opts, increment(s)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	got := amounts(t, s, "counter-1")
	want := make([]int64, writers*each)
	for i := range want {
		want[i] = int64(i + 1)
	}
	require.Equal(t, want, got, "every event sets the counter one past the one before it")
}

func TestUpdateGivesUpWithTheConflict(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	calls := 0
	_, err := s.Update(ctx, "counter-2", pgjet.UpdateOptions{MaxAttempts: 3, MinBackoff: time.Microsecond},
		func(ctx context.Context, history []pgjet.RecordedEvent) ([]pgjet.EventData, error) {
			calls++
			// Another writer always gets there first.
			_, err := s.Append(ctx, "counter-2", pgjet.Any, setTo(0))
			return []pgjet.EventData{setTo(1)}, err
		})
	require.Equal(t, 3, calls, "decide runs once per attempt")
	require.ErrorIs(t, err, pgjet.ErrWrongExpectedVersion)
	var wev *pgjet.WrongExpectedVersionError
	require.True(t, errors.As(err, &wev))
	require.Equal(t, pgjet.WrongExpectedVersionError{Stream: "counter-2", Expected: pgjet.Exact(2), Actual: 3}, *wev, "the last attempt's conflict")
	require.Equal(t, []int64{0, 0, 0}, amounts(t, s, "counter-2"), "no decision was appended")
}

func TestUpdateDecideErrorsAndNoOps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	boom := errors.New("insufficient funds")
	_, err := s.Update(ctx, "counter-3", pgjet.UpdateOptions{}, func(context.Context, []pgjet.RecordedEvent) ([]pgjet.EventData, error) {
		return nil, boom
	})
	require.ErrorIs(t, err, boom)
	_, err = s.StreamVersion(ctx, "counter-3")
	require.ErrorIs(t, err, pgjet.ErrStreamNotFound, "nothing appended")

	_, err = s.Append(ctx, "counter-3", pgjet.NoStream, setTo(1))
	require.NoError(t, err)
	res, err := s.Update(ctx, "counter-3", pgjet.UpdateOptions{}, func(context.Context, []pgjet.RecordedEvent) ([]pgjet.EventData, error) {
		return nil, nil
	})
	require.NoError(t, err)
	require.Equal(t, pgjet.AppendResult{StreamID: "counter-3", LastVersion: 1}, res)

	_, err = s.Update(ctx, "counter-3", pgjet.UpdateOptions{MaxAttempts: -1}, increment(s))
	require.ErrorIs(t, err, pgjet.ErrInvalidAppend)
	_, err = s.Update(ctx, "-bad", pgjet.UpdateOptions{}, increment(s))
	require.ErrorIs(t, err, pgjet.ErrInvalidStreamID)
}

func TestUpdateWithCommandIDAppliesOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	opts := pgjet.UpdateOptions{CommandID: "pay-7"}
	first, err := s.Update(ctx, "counter-4", opts, increment(s))
	require.NoError(t, err)
	require.False(t, first.Duplicate)
	require.Equal(t, []uuid.UUID{pgjet.CommandEventID("pay-7", 0)}, first.EventIDs)

	// Another command moves the stream on; then the first command is retried.
	_, err = s.Update(ctx, "counter-4", pgjet.UpdateOptions{CommandID: "pay-8"}, increment(s))
	require.NoError(t, err)
	decided := false
	again, err := s.Update(ctx, "counter-4", opts, func(ctx context.Context, h []pgjet.RecordedEvent) ([]pgjet.EventData, error) {
		decided = true
		return increment(s)(ctx, h)
	})
	require.NoError(t, err)
	require.False(t, decided, "an applied command is not decided again")
	require.True(t, again.Duplicate)
	first.Duplicate = true
	require.Equal(t, first, again, "the original result")
	require.Equal(t, []int64{1, 2}, amounts(t, s, "counter-4"))

	// A command of several events returns all of them.
	multi := pgjet.UpdateOptions{CommandID: "pay-9"}
	three := func(context.Context, []pgjet.RecordedEvent) ([]pgjet.EventData, error) {
		return []pgjet.EventData{setTo(3), setTo(4), setTo(5)}, nil
	}
	r1, err := s.Update(ctx, "counter-4", multi, three)
	require.NoError(t, err)
	r2, err := s.Update(ctx, "counter-4", multi, three)
	require.NoError(t, err)
	require.True(t, r2.Duplicate)
	require.Equal(t, r1.Positions, r2.Positions)
	require.Equal(t, r1.EventIDs, r2.EventIDs)
	require.Equal(t, [2]int64{3, 5}, [2]int64{r2.FirstVersion, r2.LastVersion})

	// The same command id on another stream is a mistake, not a retry.
	_, err = s.Update(ctx, "counter-5", opts, increment(s))
	require.ErrorIs(t, err, pgjet.ErrEventIDReused)
	// decide must leave the ids to the command.
	_, err = s.Update(ctx, "counter-5", pgjet.UpdateOptions{CommandID: "pay-10"}, func(context.Context, []pgjet.RecordedEvent) ([]pgjet.EventData, error) {
		return []pgjet.EventData{withID(setTo(1), uuid.New())}, nil
	})
	require.ErrorIs(t, err, pgjet.ErrInvalidAppend)
}

// Concurrent runs of one command (a client retrying while the first request still runs)
// append its events once, and all of them report that one append.
func TestUpdateWithCommandIDConcurrentRetries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	_, err := s.Append(ctx, "counter-6", pgjet.NoStream, setTo(1))
	require.NoError(t, err)
	results := make([]pgjet.AppendResult, 6)
	errs := make([]error, len(results))
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			results[i], errs[i] = s.Update(ctx, "counter-6", pgjet.UpdateOptions{CommandID: "bump", MaxAttempts: 100, MinBackoff: time.Millisecond},
				func(ctx context.Context, h []pgjet.RecordedEvent) ([]pgjet.EventData, error) {
					// Each run decides differently: only the ids make them one command.
					return []pgjet.EventData{setTo(int64(len(h) + 1)), cancelEvent(fmt.Sprint("run ", i))}, nil
				})
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	v, err := s.StreamVersion(ctx, "counter-6")
	require.NoError(t, err)
	require.Equal(t, int64(3), v, "the command appended its two events once")
	for _, r := range results {
		require.Equal(t, results[0].Positions, r.Positions)
		require.Equal(t, int64(3), r.LastVersion)
	}
}
